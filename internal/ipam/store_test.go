package ipam

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// snapshot describes a store directory as text: one line per entry with its
// mode and quoted content (a symbolic link's target), in name order.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	lines := []string{fmt.Sprintf("./ %v", st.Mode())}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, e.Name())
		if info.Mode()&fs.ModeSymlink != 0 {
			target, err := os.Readlink(path)
			if err != nil {
				t.Fatal(err)
			}
			lines = append(lines, fmt.Sprintf("%s -> %s", e.Name(), target))
			continue
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		links := info.Sys().(*syscall.Stat_t).Nlink
		lines = append(lines, fmt.Sprintf("%s %v links=%d %q", e.Name(), info.Mode(), links, data))
	}
	sort.Strings(lines[1:])
	return strings.Join(lines, "\n") + "\n"
}

func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs:\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

func openLocked(t *testing.T, dataDir string) *Store {
	t.Helper()
	s, err := Open(dataDir, "net1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Lock(); err != nil {
		t.Fatal(err)
	}
	return s
}

func reserve(t *testing.T, s *Store, addr string, att Attachment) {
	t.Helper()
	ok, err := s.Reserve(netip.MustParseAddr(addr), att)
	if err != nil || !ok {
		t.Fatalf("Reserve(%s) = %v, %v", addr, ok, err)
	}
}

// TestStoreFormat pins the files a store writes: names, modes and bytes, as
// the reference plugin writes and reads them, and cnikit's index entries.
func TestStoreFormat(t *testing.T) {
	al := newAllocator(t, "10.1.2.0/24", "fd00::1:0/112")
	if _, err := al.Allocate(Attachment{"c1", "eth0"}, addrs("10.1.2.3", "fd00::1:3")); err != nil {
		t.Fatal(err)
	}
	// The reference trims the container ID.
	if _, err := al.Allocate(Attachment{" c2 ", "net1"}, addrs("10.1.2.4")); err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "store.golden", snapshot(t, al.Store.Dir()))
}

func TestReserveExisting(t *testing.T) {
	s := openLocked(t, t.TempDir())
	reserve(t, s, "10.1.2.3", Attachment{"c1", "eth0"})
	ok, err := s.Reserve(netip.MustParseAddr("10.1.2.3"), Attachment{"c2", "eth0"})
	if err != nil || ok {
		t.Fatalf("second Reserve = %v, %v; want false, nil", ok, err)
	}
	owner, err := s.Owner(netip.MustParseAddr("10.1.2.3"))
	if err != nil || owner != (Attachment{"c1", "eth0"}) {
		t.Errorf("owner %v, %v; the first reservation must stay", owner, err)
	}
	if _, err := s.Owner(netip.MustParseAddr("10.1.2.9")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("owner of a free address: %v, want ErrNotExist", err)
	}
}

func TestParseOwner(t *testing.T) {
	tests := []struct {
		name, content string
		want          Attachment
	}{
		{"current format", "abc\r\neth0", Attachment{"abc", "eth0"}},
		{"trailing newline", "abc\r\neth0\n", Attachment{"abc", "eth0"}},
		{"old format", "abc", Attachment{"abc", ""}},
		{"old format with newline", "abc\n", Attachment{"abc", ""}},
		{"empty file", "", Attachment{}},
		{"only a line feed between", "abc\neth0", Attachment{"abc\neth0", ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parseOwner([]byte(tt.content)); got != tt.want {
				t.Errorf("parseOwner(%q) = %#v, want %#v", tt.content, got, tt.want)
			}
		})
	}
}

func TestListSkipsAndCleansTemporaryFiles(t *testing.T) {
	dataDir := t.TempDir()
	dir := filepath.Join(dataDir, "net1")
	s := openLocked(t, dataDir)
	reserve(t, s, "10.1.2.3", Attachment{"c1", "eth0"})
	// What a writer that crashed before its rename leaves behind.
	for _, name := range []string{tempPrefix + "10.1.2.4", tempPrefix + "last_reserved_ip.0"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("c9\r\neth0"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "last_reserved_ip.0"), []byte("10.1.2.3"), 0o600); err != nil {
		t.Fatal(err)
	}
	allocs, err := s.List(func(netip.Addr) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	if len(allocs) != 1 || allocs[0].Addr.String() != "10.1.2.3" || allocs[0].Owner != (Attachment{"c1", "eth0"}) {
		t.Errorf("List = %+v, want only 10.1.2.3 of c1/eth0", allocs)
	}
	names, _ := filepath.Glob(filepath.Join(dir, tempPrefix+"*"))
	if len(names) != 0 {
		t.Errorf("temporary files left: %v", names)
	}
	// A leftover under the very name the next reservation uses is replaced.
	if err := os.WriteFile(filepath.Join(dir, tempPrefix+"10.1.2.5"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	reserve(t, s, "10.1.2.5", Attachment{"c5", "eth0"})
	if owner, _ := s.Owner(netip.MustParseAddr("10.1.2.5")); owner != (Attachment{"c5", "eth0"}) {
		t.Errorf("owner %v", owner)
	}
}

func TestLastReserved(t *testing.T) {
	dataDir := t.TempDir()
	s := openLocked(t, dataDir)
	if a := s.LastReserved(0); a.IsValid() {
		t.Errorf("no file: got %s", a)
	}
	// Written by the reference: no newline; garbage reads as none.
	for content, want := range map[string]string{"10.0.0.7": "10.0.0.7", "fd00::7\n": "fd00::7", "": "invalid IP", "junk": "invalid IP"} {
		if err := os.WriteFile(filepath.Join(dataDir, "net1", "last_reserved_ip.3"), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if got := s.LastReserved(3).String(); got != want {
			t.Errorf("content %q: got %s, want %s", content, got, want)
		}
	}
}

func TestGC(t *testing.T) {
	dataDir := t.TempDir()
	dir := filepath.Join(dataDir, "net1")
	s := openLocked(t, dataDir)
	reserve(t, s, "10.0.0.2", Attachment{"keep", "eth0"})
	reserve(t, s, "10.0.0.3", Attachment{"keep", "eth1"}) // same container, other interface: stale
	reserve(t, s, "10.0.0.4", Attachment{"gone", "eth0"})
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("10.0.0.5", "old-keep") // old format, container still valid
	write("10.0.0.6", "old-gone") // old format, stale
	write("10.0.0.7", "")         // empty: names nobody
	if err := s.SetLastReserved(0, netip.MustParseAddr("10.0.0.7")); err != nil {
		t.Fatal(err)
	}
	released, err := s.GC([]Attachment{{"keep", "eth0"}, {"old-keep", "eth9"}})
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(released, func(i, j int) bool { return released[i].Less(released[j]) })
	if fmt.Sprint(released) != "[10.0.0.3 10.0.0.4 10.0.0.6 10.0.0.7]" {
		t.Errorf("released %v", released)
	}
	for _, name := range []string{"10.0.0.2", "10.0.0.5", "lock", "last_reserved_ip.0"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("%s must stay: %v", name, err)
		}
	}
}

func TestOpenExisting(t *testing.T) {
	dataDir := t.TempDir()
	if _, err := OpenExisting(dataDir, "net1"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing store: %v, want ErrNotExist", err)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "net1")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("OpenExisting created the directory")
	}
}

func TestOpenCreatesParents(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "a", "b")
	s, err := Open(dataDir, "net1")
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	st, err := os.Stat(filepath.Join(dataDir, "net1"))
	if err != nil || st.Mode() != fs.ModeDir|0o755 {
		t.Errorf("store dir: %v %v, want drwxr-xr-x", st.Mode(), err)
	}
}

func TestCheckWritable(t *testing.T) {
	base := t.TempDir()
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := CheckWritable(filepath.Join(base, "x", "y"), "net1"); err != nil {
		t.Errorf("creatable data dir: %v", err)
	}
	err := CheckWritable(filepath.Join(file, "x"), "net1")
	if err == nil || !strings.Contains(err.Error(), "is not a directory") {
		t.Errorf("data dir under a file: %v", err)
	}
}
