package netns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("test needs root (network namespaces)")
	}
}

// newNS creates a namespace bound to a file in a temp dir, removed at cleanup.
func newNS(t *testing.T) string {
	t.Helper()
	requireRoot(t)
	path := filepath.Join(t.TempDir(), "ns")
	if err := CreateAt(path); err != nil {
		t.Fatalf("CreateAt: %v", err)
	}
	t.Cleanup(func() {
		if err := RemoveAt(path); err != nil {
			t.Errorf("RemoveAt: %v", err)
		}
	})
	return path
}

// threadNetnsInode identifies the calling thread's network namespace; the
// caller must be locked to its thread.
func threadNetnsInode(t *testing.T) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func inodeOf(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func TestOpen(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	regular := filepath.Join(dir, "regular")
	if err := os.WriteFile(regular, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	created := newNS(t)

	tests := []struct {
		name    string
		path    string
		wantErr string // "" when Open must succeed
		notExis bool
	}{
		{"created namespace", created, "", false},
		{"own process namespace", "/proc/self/ns/net", "", false},
		{"thread namespace", fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), os.Getpid()), "", false},
		{"regular file", regular, "not a network namespace", false},
		{"FIFO", fifo, "not a network namespace", false},
		{"directory", dir, "not a network namespace", false},
		{"UTS namespace", "/proc/self/ns/uts", "not a network namespace (namespace type", false},
		{"mount namespace", "/proc/self/ns/mnt", "not a network namespace (namespace type", false},
		{"procfs file", "/proc/self/status", "not a network namespace", false},
		{"missing", filepath.Join(dir, "missing"), "does not exist", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns, err := Open(tt.path)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				defer ns.Close()
				if ns.Path() != tt.path || ns.Fd() < 0 {
					t.Errorf("Path %q, Fd %d", ns.Path(), ns.Fd())
				}
				return
			}
			if err == nil {
				ns.Close()
				t.Fatal("opened")
			}
			if !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), tt.path) {
				t.Errorf("error %q should contain %q and the path", err, tt.wantErr)
			}
			if errors.Is(err, ErrNotExist) != tt.notExis {
				t.Errorf("errors.Is(err, ErrNotExist) = %v", !tt.notExis)
			}
		})
	}
}

func TestSameAsAndCurrent(t *testing.T) {
	requireRoot(t)
	a, err := Open(newNS(t))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	a2, err := Open(a.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer a2.Close()
	b, err := Open(newNS(t))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if same, err := a.SameAs(a2); err != nil || !same {
		t.Errorf("a and a2: same=%v, %v", same, err)
	}
	if same, _ := a.SameAs(b); same {
		t.Error("a and b are the same")
	}
	err = a.Do(func() error {
		cur, err := Current()
		if err != nil {
			return err
		}
		defer cur.Close()
		if same, _ := cur.SameAs(a); !same {
			return errors.New("Current() inside Do is not the namespace entered")
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

func TestDo(t *testing.T) {
	requireRoot(t)
	path := newNS(t)
	ns, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	target := inodeOf(t, path)

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	before := threadNetnsInode(t)
	if before == target {
		t.Fatal("the test already runs in the target namespace")
	}
	boom := errors.New("boom")

	tests := []struct {
		name      string
		fn        func(seen *uint64) error
		wantErr   error
		wantPanic any
	}{
		{"success", func(seen *uint64) error { *seen = threadNetnsInode(t); return nil }, nil, nil},
		{"fn fails", func(seen *uint64) error { *seen = threadNetnsInode(t); return boom }, boom, nil},
		{"fn panics", func(seen *uint64) error { *seen = threadNetnsInode(t); panic("kaboom") }, nil, "kaboom"},
		{"fn exits its goroutine", func(seen *uint64) error { *seen = threadNetnsInode(t); runtime.Goexit(); return nil }, errors.New("did not return"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var seen uint64
			var err error
			var panicked any
			func() {
				defer func() { panicked = recover() }()
				err = ns.Do(func() error { return tt.fn(&seen) })
			}()
			if seen != target {
				t.Errorf("fn ran in namespace %d, want %d", seen, target)
			}
			if !reflect.DeepEqual(panicked, tt.wantPanic) {
				t.Errorf("panic %v, want %v", panicked, tt.wantPanic)
			}
			switch {
			case tt.wantErr == nil && err != nil:
				t.Errorf("error %v", err)
			case tt.wantErr != nil && (err == nil || !strings.Contains(err.Error(), tt.wantErr.Error())):
				t.Errorf("error %v, want %v", err, tt.wantErr)
			}
			if after := threadNetnsInode(t); after != before {
				t.Errorf("caller's thread moved from namespace %d to %d", before, after)
			}
		})
	}
}

// TestDoLeavesNoThreadBehind checks that after many Do calls, some failing or
// panicking, every thread a goroutine can land on is in the process's own
// namespace: a thread left inside the target would run unrelated code there.
func TestDoLeavesNoThreadBehind(t *testing.T) {
	requireRoot(t)
	path := newNS(t)
	ns, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	// The namespace of a thread that never entered another one. (Not
	// /proc/self/ns/net: that is the main thread's, which need not be.)
	runtime.LockOSThread()
	home := threadNetnsInode(t)
	runtime.UnlockOSThread()
	for i := 0; i < 50; i++ {
		func() {
			defer func() { recover() }()
			ns.Do(func() error {
				switch i % 3 {
				case 0:
					return nil
				case 1:
					return errors.New("fail")
				}
				panic("p")
			})
		}()
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var wrong []uint64
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			var st unix.Stat_t
			if unix.Stat(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), &st) == nil && st.Ino != home {
				mu.Lock()
				wrong = append(wrong, st.Ino)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(wrong) > 0 {
		t.Errorf("%d goroutines ran in another namespace: %v", len(wrong), wrong)
	}
}

func TestDoErrors(t *testing.T) {
	requireRoot(t)
	ns, err := Open(newNS(t))
	if err != nil {
		t.Fatal(err)
	}
	ns.Close()
	called := false
	if err := ns.Do(func() error { called = true; return nil }); err == nil || called {
		t.Errorf("Do on a closed namespace: %v, fn called %v", err, called)
	}
	if err := DoPath("/nonexistent/netns", func() error { called = true; return nil }); !errors.Is(err, ErrNotExist) || called {
		t.Errorf("DoPath on a missing path: %v, fn called %v", err, called)
	}
}

func TestDoPathSeesTheNamespaceLinks(t *testing.T) {
	requireRoot(t)
	path := newNS(t)
	var names []string
	err := DoPath(path, func() error {
		links, err := netlink.LinkList()
		if err != nil {
			return err
		}
		for _, l := range links {
			names = append(names, l.Attrs().Name)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// A fresh namespace has its loopback and nothing else.
	if !reflect.DeepEqual(names, []string{"lo"}) {
		t.Errorf("links %v, want [lo]", names)
	}
}

func TestCreateAtRemoveAt(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "ns")
	if err := CreateAt(path); err != nil {
		t.Fatal(err)
	}
	ns, err := Open(path)
	if err != nil {
		t.Fatalf("the created namespace does not open: %v", err)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	home, err := Current()
	if err != nil {
		t.Fatal(err)
	}
	defer home.Close()
	if same, _ := ns.SameAs(home); same {
		t.Error("CreateAt bound the caller's namespace")
	}
	ns.Close()

	// A netlink handle in the namespace works while it is mounted.
	h, err := vnetns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	h.Close()

	if cur, _ := Current(); cur == nil {
		t.Error("Current failed")
	} else {
		if same, _ := cur.SameAs(home); !same {
			t.Error("CreateAt moved the caller's thread")
		}
		cur.Close()
	}
	if err := CreateAt(path); err == nil {
		t.Error("CreateAt over an existing namespace succeeded")
	} else if _, err := Open(path); err != nil {
		t.Errorf("a failed CreateAt broke the existing namespace: %v", err)
	}
	if err := RemoveAt(path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("file still there after RemoveAt: %v", err)
	}
	if _, err := Open(path); !errors.Is(err, ErrNotExist) {
		t.Errorf("Open after RemoveAt: %v", err)
	}
	if err := RemoveAt(path); err != nil {
		t.Errorf("RemoveAt of a missing path: %v", err)
	}
	if err := CreateAt(filepath.Join(dir, "no", "such", "dir")); err == nil {
		t.Error("CreateAt in a missing directory succeeded")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("leftovers in %s: %v", dir, entries)
	}
}

func TestNamedNamespaces(t *testing.T) {
	requireRoot(t)
	dir := filepath.Join(t.TempDir(), "netns")
	// CreateNamedIn makes dir a mount point; undo it before the temp dir goes.
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			t.Errorf("unmounting %s: %v", dir, err)
		}
	})

	if names, err := ListNamedIn(dir); err != nil || len(names) != 0 {
		t.Errorf("ListNamedIn of a missing dir: %v, %v", names, err)
	}
	var paths []string
	for _, name := range []string{"blue", "red"} {
		path, err := CreateNamedIn(dir, name)
		if err != nil {
			t.Fatalf("CreateNamedIn(%s): %v", name, err)
		}
		paths = append(paths, path)
		if path != filepath.Join(dir, name) {
			t.Errorf("path %q", path)
		}
		ns, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		ns.Close()
	}
	if !isSharedMount(t, dir) {
		t.Errorf("%s is not a shared mount point", dir)
	}
	if _, err := CreateNamedIn(dir, "blue"); err == nil {
		t.Error("creating blue twice succeeded")
	}
	names, err := ListNamedIn(dir)
	if err != nil || !reflect.DeepEqual(names, []string{"blue", "red"}) {
		t.Errorf("ListNamedIn = %v, %v", names, err)
	}
	for _, bad := range []string{"", ".", "..", "a/b", "../escape", "nul\x00"} {
		if _, err := CreateNamedIn(dir, bad); err == nil {
			t.Errorf("CreateNamedIn(%q) succeeded", bad)
		}
		if err := RemoveNamedIn(dir, bad); err == nil {
			t.Errorf("RemoveNamedIn(%q) succeeded", bad)
		}
	}
	if err := RemoveNamedIn(dir, "blue"); err != nil {
		t.Fatal(err)
	}
	if err := RemoveNamedIn(dir, "blue"); err != nil {
		t.Errorf("removing blue again: %v", err)
	}
	names, _ = ListNamedIn(dir)
	if !reflect.DeepEqual(names, []string{"red"}) {
		t.Errorf("after removing blue: %v", names)
	}
	if err := RemoveNamedIn(dir, "red"); err != nil {
		t.Fatal(err)
	}
	if NamedPath("x") != "/run/netns/x" {
		t.Errorf("NamedPath = %q", NamedPath("x"))
	}
}

// isSharedMount reports whether dir is a mount point with shared propagation.
func isSharedMount(t *testing.T, dir string) bool {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 7 || fields[4] != dir {
			continue
		}
		for _, f := range fields[6:] {
			if f == "-" {
				break
			}
			if strings.HasPrefix(f, "shared:") {
				return true
			}
		}
	}
	return false
}

func TestValidateName(t *testing.T) {
	tests := []struct {
		name  string
		valid bool
	}{
		{"blue", true},
		{"cni-1234-abcd", true},
		{".hidden", true},
		{"", false},
		{".", false},
		{"..", false},
		{"a/b", false},
		{"a\x00b", false},
	}
	for _, tt := range tests {
		err := ValidateName(tt.name)
		if (err == nil) != tt.valid {
			t.Errorf("ValidateName(%q) = %v", tt.name, err)
		}
		if err != nil && !strings.Contains(err.Error(), fmt.Sprintf("%q", tt.name)) {
			t.Errorf("error %q does not name %q", err, tt.name)
		}
	}
}
