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
	if owners := checkStoreConsistent(t, dataDir); len(owners) != n {
		t.Errorf("%d containers in the store, want %d", len(owners), n)
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
}
