package e2e

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/cnikit/cnikit/cni"
)

// 50 containers attached at once to one network: every ADD succeeds, no two get
// the same address, and deleting them all leaves nothing behind.
func TestConcurrentAdds(t *testing.T) {
	const n = 50
	h := newHarness(t)
	h.writeConf("10-conc.conflist", masqConf("concnet", "brconc", "10.93.0.0/24"))
	paths := make([]string, n)
	for i := range paths {
		paths[i] = h.newContainerNetns(fmt.Sprintf("conc%d", i))
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = h.start(h.command(nil, append(h.globalArgs(), "add", "concnet", paths[i],
				"--container-id", fmt.Sprintf("conc%d", i))...)).wait()
		}()
	}
	wg.Wait()
	seen := map[string]int{}
	for i, r := range results {
		if r.code != 0 {
			t.Errorf("ADD %d failed: %s", i, r)
			continue
		}
		res, err := cni.ParseResult([]byte(r.stdout), "1.1.0")
		if err != nil || len(res.IPs) != 1 {
			t.Errorf("ADD %d: bad result %v: %s", i, err, r.stdout)
			continue
		}
		ip := res.IPs[0].Address.IP.String()
		if prev, dup := seen[ip]; dup {
			t.Errorf("containers %d and %d both got %s", prev, i, ip)
		}
		seen[ip] = i
	}
	if got := len(h.attachments()); got != n {
		t.Errorf("%d attachments cached, want %d", got, n)
	}
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := h.start(h.command(nil, append(h.globalArgs(), "del", "concnet", paths[i],
				"--container-id", fmt.Sprintf("conc%d", i))...)).wait()
			if r.code != 0 {
				t.Errorf("DEL %d failed: %s", i, r)
			}
		}()
	}
	wg.Wait()
	h.assertNothingLeft("concnet")
}

// assertNothingLeft checks that no attachment, veth, IPAM allocation or
// nftables element (masquerade, port mapping, firewall) remains.
func (h *harness) assertNothingLeft(network string) {
	h.t.Helper()
	if n := len(h.attachments()); n != 0 {
		h.t.Errorf("%d attachments left in the cache", n)
	}
	if n := h.vethCount(); n != 0 {
		h.t.Errorf("%d veths left in the host namespace: %v", n, h.hostLinks())
	}
	if files := h.ipamFiles(network); len(files) != 0 {
		h.t.Errorf("IPAM allocations left: %v", files)
	}
	if out, _ := h.host.Run("nft", "list", "ruleset"); strings.Contains(out, "elements = ") {
		h.t.Errorf("nftables elements (masquerade, port mappings, firewall) left:\n%s", out)
	}
}

// DEL is idempotent, and succeeds when the namespace is already gone (the
// runtime deleted it first) — also with CNI_NETNS empty, as containerd sends.
func TestDelIsIdempotent(t *testing.T) {
	cases := []struct {
		name     string
		deleteNS bool
		del      func(h *harness, path string) result
	}{
		{name: "twice", del: func(h *harness, path string) result {
			return h.cnikit("del", "delnet", path, "--container-id", "c1")
		}},
		{name: "after the netns is deleted", deleteNS: true, del: func(h *harness, path string) result {
			return h.cnikit("del", "delnet", path, "--container-id", "c1")
		}},
		{name: "netns deleted, CNI_NETNS empty", deleteNS: true, del: func(h *harness, path string) result {
			// detach finds the namespace gone and runs the chain's DEL with CNI_NETNS empty.
			if len(h.attachments()) == 0 {
				return h.cnikit("del", "delnet", path, "--container-id", "c1")
			}
			return h.cnikit("detach", "--id", "c1")
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.writeConf("10-del.conflist", masqConf("delnet", "brdel", "10.94.0.0/24"))
			path := h.newContainerNetns("c1")
			h.mustSucceed(h.cnikit("add", "delnet", path, "--container-id", "c1"), "add")
			if tc.deleteNS {
				h.mustSucceed(h.cnikit("netns", "del", "c1"), "netns del")
			}
			for i := 0; i < 2; i++ {
				if r := tc.del(h, path); r.code != 0 {
					t.Fatalf("DEL %d: %s", i+1, r)
				}
			}
			h.assertNothingLeft("delnet")
		})
	}
}
