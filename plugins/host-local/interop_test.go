package hostlocal

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/plugintest"
)

// The reference plugins installed here accept cniVersion up to 1.0.0.
const referenceVersion = "1.0.0"

func referenceBinary(t *testing.T) string {
	t.Helper()
	plugintest.RequireReference(t)
	return filepath.Join(plugintest.ReferenceDir, "host-local")
}

func mustExec(t *testing.T, bin, verb, containerID, stdin string) *cni.Result {
	t.Helper()
	out, err := execPlugin(bin, verb, containerID, stdin)
	if err != nil {
		t.Fatal(err)
	}
	if verb != "ADD" {
		return nil
	}
	res, perr := cni.ParseResult(out, "")
	if perr != nil {
		t.Fatal(perr)
	}
	return res
}

// TestReferenceStateServedByUs: the reference allocates; we CHECK, DEL and GC
// what it wrote.
func TestReferenceStateServedByUs(t *testing.T) {
	ref := referenceBinary(t)
	ours := ourBinary(t)
	dataDir := t.TempDir()
	ipamConf := map[string]any{"dataDir": dataDir, "ranges": ranges("10.7.0.0/24", "fd07::/120")}
	stdin := conf(t, referenceVersion, ipamConf, nil)
	r1 := mustExec(t, ref, "ADD", "c1", stdin)
	r2 := mustExec(t, ref, "ADD", "c2", stdin)
	mustExec(t, ref, "ADD", "c3", stdin)

	mustExec(t, ours, "CHECK", "c1", withPrev(t, stdin, r1, referenceVersion))
	mustExec(t, ours, "CHECK", "c2", stdin)
	mustExec(t, ours, "DEL", "c1", withPrev(t, stdin, r1, referenceVersion))
	mustExec(t, ours, "DEL", "c2", stdin)
	if got := storeFiles(t, dataDir); got != "10.7.0.4=c3/eth0 fd07::4=c3/eth0" {
		t.Errorf("after our DELs: %s", got)
	}
	if _, err := execPlugin(ours, "CHECK", "c2", withPrev(t, stdin, r2, referenceVersion)); err == nil {
		t.Errorf("CHECK of a deleted attachment passed")
	}
	gc := conf(t, "1.1.0", ipamConf, map[string]any{"cni.dev/valid-attachments": []any{}})
	mustExec(t, ours, "GC", "", gc)
	if got := storeFiles(t, dataDir); got != "" {
		t.Errorf("after our GC: %s", got)
	}
}

// TestOurStateServedByReference: we allocate; the reference CHECKs and DELs.
func TestOurStateServedByReference(t *testing.T) {
	ref := referenceBinary(t)
	ours := ourBinary(t)
	dataDir := t.TempDir()
	stdin := conf(t, referenceVersion, map[string]any{"dataDir": dataDir, "ranges": ranges("10.7.0.0/24", "fd07::/120")}, nil)
	r1 := mustExec(t, ours, "ADD", "c1", stdin)
	mustExec(t, ours, "ADD", "c2", stdin)
	mustExec(t, ref, "CHECK", "c1", withPrev(t, stdin, r1, referenceVersion))
	mustExec(t, ref, "DEL", "c1", withPrev(t, stdin, r1, referenceVersion))
	if got := storeFiles(t, dataDir); got != "10.7.0.3=c2/eth0 fd07::3=c2/eth0" {
		t.Errorf("after the reference DEL: %s", got)
	}
	// The reference continues round-robin from our last_reserved_ip too.
	if r := mustExec(t, ref, "ADD", "c3", stdin); addresses(r) != "10.7.0.4/24 fd07::4/120" {
		t.Errorf("reference ADD after ours got %s", addresses(r))
	}
	// Its DEL left our index entry of c1 (with two addresses it resolves to
	// no file); it is stale, so c1 can be added again, and the new entry
	// replaces it.
	if got := indexEntries(t, dataDir); got != "c1:eth0->10.7.0.2,fd07::2 c2:eth0->10.7.0.3,fd07::3" {
		t.Errorf("index entries: %s", got)
	}
	if r := mustExec(t, ours, "ADD", "c1", stdin); addresses(r) != "10.7.0.5/24 fd07::5/120" {
		t.Errorf("our ADD of c1 again got %s", addresses(r))
	}
	if got := indexEntries(t, dataDir); got != "c1:eth0->10.7.0.5,fd07::5 c2:eth0->10.7.0.3,fd07::3" {
		t.Errorf("index entries: %s", got)
	}
	mustExec(t, ours, "DEL", "c1", stdin)
	mustExec(t, ref, "DEL", "c3", stdin)
	if got := storeFiles(t, dataDir); got != "10.7.0.3=c2/eth0 fd07::3=c2/eth0" {
		t.Errorf("after the last DELs: %s", got)
	}
}

// TestReferenceDelRemovesSingleSetIndex: with one range set our index entry
// resolves to the address file, so the reference's DEL, which removes every
// file holding the attachment's content, leaves nothing of ours behind; its
// duplicate check and CHECK skip the entry, whose name is no address.
func TestReferenceDelRemovesSingleSetIndex(t *testing.T) {
	ref := referenceBinary(t)
	ours := ourBinary(t)
	dataDir := t.TempDir()
	stdin := conf(t, referenceVersion, map[string]any{"dataDir": dataDir, "ranges": ranges("10.7.0.0/24")}, nil)
	r1 := mustExec(t, ours, "ADD", "c1", stdin)
	if got := indexEntries(t, dataDir); got != "c1:eth0->10.7.0.2" {
		t.Fatalf("index entries: %s", got)
	}
	if _, err := execPlugin(ref, "ADD", "c1", stdin); err == nil || !strings.Contains(err.Error(), "duplicate allocation") {
		t.Errorf("reference duplicate ADD: %v", err)
	}
	mustExec(t, ref, "CHECK", "c1", withPrev(t, stdin, r1, referenceVersion))
	mustExec(t, ref, "DEL", "c1", stdin)
	entries, err := os.ReadDir(filepath.Join(dataDir, "testnet"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if got := strings.Join(names, " "); got != "last_reserved_ip.0 lock" {
		t.Errorf("left after the reference DEL: %s", got)
	}
}

// TestRoundRobinFromReference: round-robin continues from the
// last_reserved_ip the reference wrote, even after it released that address.
func TestRoundRobinFromReference(t *testing.T) {
	ref := referenceBinary(t)
	ours := ourBinary(t)
	dataDir := t.TempDir()
	stdin := conf(t, referenceVersion, map[string]any{"dataDir": dataDir, "ranges": ranges("10.7.0.0/24")}, nil)
	for i := 1; i <= 3; i++ {
		mustExec(t, ref, "ADD", fmt.Sprintf("c%d", i), stdin)
	}
	mustExec(t, ref, "DEL", "c3", stdin)
	if r := mustExec(t, ours, "ADD", "c4", stdin); addresses(r) != "10.7.0.5/24" {
		t.Errorf("our ADD after the reference got %s, want 10.7.0.5/24", addresses(r))
	}
}

// TestInterleavedNeverShareAnAddress: reference and cnikit processes adding at
// the same time, on one store, never hand out the same address: both take the
// same flock.
func TestInterleavedNeverShareAnAddress(t *testing.T) {
	ref := referenceBinary(t)
	ours := ourBinary(t)
	dataDir := t.TempDir()
	stdin := conf(t, referenceVersion, map[string]any{"dataDir": dataDir, "ranges": ranges("10.7.0.0/24", "fd07::/120")}, nil)
	const n = 30
	got := make([]string, n)
	runConcurrently(t, n, func(i int) error {
		bin := ours
		if i%2 == 1 {
			bin = ref
		}
		out, err := execPlugin(bin, "ADD", fmt.Sprintf("c%d", i), stdin)
		if err != nil {
			return err
		}
		res, err := cni.ParseResult(out, "")
		if err != nil {
			return err
		}
		got[i] = addresses(res)
		return nil
	})
	if t.Failed() {
		return
	}
	var all []string
	for _, a := range got {
		all = append(all, strings.Fields(a)...)
	}
	sort.Strings(all)
	for i := 1; i < len(all); i++ {
		if all[i] == all[i-1] {
			t.Errorf("%s handed out twice", all[i])
		}
	}
	if owners, indexed := checkStoreConsistent(t, dataDir); len(owners) != n || len(indexed) != n/2 {
		t.Errorf("%d containers in the store, %d indexed; want %d and %d (ours)", len(owners), len(indexed), n, n/2)
	}
	// Everyone's DEL, by whichever plugin, empties the store.
	runConcurrently(t, n, func(i int) error {
		bin := ref
		if i%2 == 1 {
			bin = ours
		}
		_, err := execPlugin(bin, "DEL", fmt.Sprintf("c%d", i), stdin)
		return err
	})
	if left := storeFiles(t, dataDir); left != "" {
		t.Errorf("left after every DEL: %s", left)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "testnet", "lock")); err != nil {
		t.Errorf("lock file: %v", err)
	}
	// The reference's DELs of our dual-stack allocations leave their index
	// entries (they resolve to no file); nothing believes them, and our GC
	// removes them.
	var want []string
	for i := 0; i < n; i += 2 {
		want = append(want, fmt.Sprintf("c%d:eth0", i))
	}
	sort.Strings(want)
	var left []string
	for _, e := range strings.Fields(indexEntries(t, dataDir)) {
		name, _, _ := strings.Cut(e, "->")
		left = append(left, name)
	}
	if strings.Join(left, " ") != strings.Join(want, " ") {
		t.Errorf("index entries left: %v, want %v", left, want)
	}
	gc := conf(t, "1.1.0", map[string]any{"dataDir": dataDir}, map[string]any{"cni.dev/valid-attachments": []any{}})
	mustExec(t, ours, "GC", "", gc)
	if left := indexEntries(t, dataDir); left != "" {
		t.Errorf("index entries left after our GC: %s", left)
	}
}
