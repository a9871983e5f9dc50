package hostlocal

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/plugintest"
)

// execPlugin runs a plugin binary as a runtime would. host-local never enters
// CNI_NETNS, so the test's own namespace is given with the override.
func execPlugin(bin, verb, containerID, stdin string) ([]byte, error) {
	cmd := exec.Command(bin)
	cmd.Env = []string{
		"CNI_COMMAND=" + verb, "CNI_CONTAINERID=" + containerID, "CNI_NETNS=/proc/self/ns/net",
		"CNI_NETNS_OVERRIDE=1", "CNI_IFNAME=eth0", "CNI_PATH=" + filepath.Dir(bin), "PATH=/usr/bin:/bin",
	}
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("%s %s %s: %v\nstdout: %s\nstderr: %s", filepath.Base(bin), verb, containerID, err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.Bytes(), nil
}

func ourBinary(t *testing.T) string {
	t.Helper()
	return filepath.Join(plugintest.BinDir(t), "host-local")
}

// runConcurrently runs fn(i) for i in [0, n) at once and reports every error.
func runConcurrently(t *testing.T, n int, fn func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn(i)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// checkStoreConsistent verifies that every reservation has a well-formed owner,
// that no owner holds two addresses of one family, that every index entry
// lists exactly its attachment's reservations, and that no temporary file is
// left; it returns the reservations by container, and the containers that
// have an index entry.
func checkStoreConsistent(t *testing.T, dataDir string) (byOwner map[string][]string, indexed map[string]bool) {
	t.Helper()
	dir := filepath.Join(dataDir, "testnet")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	byOwner = map[string][]string{}
	targets := map[string]string{}
	for _, e := range entries {
		name := e.Name()
		if name == "lock" || strings.HasPrefix(name, "last_reserved_ip.") {
			continue
		}
		if id, ok := strings.CutPrefix(name, ".cnikit-attachment:"); ok {
			target, err := os.Readlink(filepath.Join(dir, name))
			if err != nil {
				t.Errorf("index entry %s: %v", name, err)
			}
			targets[strings.TrimSuffix(id, ":eth0")] = target
			continue
		}
		if strings.HasPrefix(name, ".") {
			t.Errorf("temporary file left: %s", name)
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		id, ifname, ok := strings.Cut(string(data), "\r\n")
		if !ok || id == "" || ifname != "eth0" {
			t.Errorf("reservation %s has content %q", name, data)
		}
		byOwner[id] = append(byOwner[id], name)
	}
	for id, ips := range byOwner {
		if len(ips) != 2 || strings.Contains(ips[0], ":") == strings.Contains(ips[1], ":") {
			t.Errorf("%s holds %v, want one IPv4 and one IPv6 address", id, ips)
		}
	}
	indexed = map[string]bool{}
	for id, target := range targets {
		listed := strings.Split(target, ",")
		sort.Strings(listed)
		held := append([]string(nil), byOwner[id]...)
		sort.Strings(held)
		if strings.Join(listed, " ") != strings.Join(held, " ") {
			t.Errorf("the index entry of %s lists %s, it holds %v", id, target, held)
		}
		indexed[id] = true
	}
	return byOwner, indexed
}

func TestConcurrentAddProcesses(t *testing.T) {
	bin := ourBinary(t)
	dataDir := t.TempDir()
	stdin := conf(t, "1.0.0", map[string]any{"dataDir": dataDir, "ranges": ranges("10.7.0.0/24", "fd07::/120")}, nil)
	const n = 50
	results := make([]*cni.Result, n)
	runConcurrently(t, n, func(i int) error {
		out, err := execPlugin(bin, "ADD", fmt.Sprintf("c%d", i), stdin)
		if err != nil {
			return err
		}
		results[i], err = cni.ParseResult(out, "")
		return err
	})
	if t.Failed() {
		return
	}
	seen := map[string]int{}
	for i, r := range results {
		for _, ip := range r.IPs {
			a := ip.Address.IP.String()
			if j, dup := seen[a]; dup {
				t.Errorf("%s handed to c%d and c%d", a, j, i)
			}
			seen[a] = i
		}
	}
	if len(seen) != 2*n {
		t.Errorf("%d distinct addresses, want %d", len(seen), 2*n)
	}
	if owners, indexed := checkStoreConsistent(t, dataDir); len(owners) != n || len(indexed) != n {
		t.Errorf("%d containers in the store, %d indexed; want %d", len(owners), len(indexed), n)
	}
}

// TestConcurrentAddDelProcesses: each worker adds, deletes and adds again, so
// ADDs and DELs of different containers interleave; at the end the store
// holds exactly one IPv4 and one IPv6 address per container.
func TestConcurrentAddDelProcesses(t *testing.T) {
	bin := ourBinary(t)
	dataDir := t.TempDir()
	stdin := conf(t, "1.0.0", map[string]any{"dataDir": dataDir, "ranges": ranges("10.7.0.0/27", "fd07::/123")}, nil)
	const n = 20
	runConcurrently(t, n, func(i int) error {
		id := fmt.Sprintf("c%d", i)
		out, err := execPlugin(bin, "ADD", id, stdin)
		if err != nil {
			return err
		}
		prev, err := cni.ParseResult(out, "")
		if err != nil {
			return err
		}
		del := stdin
		if i%2 == 0 { // half of the DELs take the O(1) path
			del = withPrev(t, stdin, prev, "1.0.0")
		}
		if _, err := execPlugin(bin, "DEL", id, del); err != nil {
			return err
		}
		_, err = execPlugin(bin, "ADD", id, stdin)
		return err
	})
	if owners, indexed := checkStoreConsistent(t, dataDir); len(owners) != n || len(indexed) != n {
		t.Errorf("%d containers in the store, %d indexed; want %d", len(owners), len(indexed), n)
	}
}
