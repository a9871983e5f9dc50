package firewall

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/iptables"
	"github.com/cnikit/cnikit/internal/nft"
)

// isolated reports whether the backend still isolates bridge.
func (e *env) isolated(backend, bridge string) bool {
	if backend == backendIptables {
		return containsSub(e.iptablesRules(iptables.IPv4, isolationStage2), "-o "+bridge+" ")
	}
	var isolating bool
	e.host.Do(func() error {
		conn, err := nft.Open()
		if err != nil {
			return err
		}
		defer conn.Close()
		isolating, _, err = conn.IsolationOf(bridge)
		return err
	})
	return isolating
}

// TestDel: DEL removes exactly the attachment's entries, however it is
// called; the bridge stays isolated while another container uses it, and
// stops being isolated with the last one (found without prevResult too).
func TestDel(t *testing.T) {
	cases := []struct {
		name      string
		prev      bool
		netnsPath func(c *container) string
	}{
		{"with prevResult", true, func(c *container) string { return c.ns.Path() }},
		{"without prevResult", false, func(c *container) string { return c.ns.Path() }},
		{"with empty CNI_NETNS", true, func(*container) string { return "" }},
		{"without prevResult and CNI_NETNS", false, func(*container) string { return "" }},
		{"netns gone", true, func(c *container) string { return filepath.Join(filepath.Dir(c.ns.Path()), "gone") }},
	}
	for _, backend := range []string{backendNftables, backendIptables} {
		for _, tc := range cases {
			t.Run(backend+"/"+tc.name, func(t *testing.T) {
				e := newEnv(t)
				n := dualStack("del", "br-del", 4, map[string]any{"backend": backend, "ingressPolicy": policySameBridge})
				c1, c2 := e.attach(n, "c1"), e.attach(n, "c2")
				e.mustFw("ADD", n, c1)
				e.mustFw("ADD", n, c2)
				e.spawned()

				del := func(c *container, prev bool) {
					t.Helper()
					var prevResult []byte
					if prev {
						prevResult = c.result
					}
					if _, cerr := e.invoke("firewall", "DEL", c.cid, tc.netnsPath(c), e.fwConf(n, prevResult)); cerr != nil {
						t.Fatalf("DEL %s: %v", c.cid, cerr)
					}
				}
				del(c1, tc.prev)
				if e.entries(backend, c1) {
					t.Error("c1's entries are left")
				}
				if !e.entries(backend, c2) {
					t.Error("c2's entries went with c1's")
				}
				if !e.isolated(backend, n.bridge) {
					t.Error("the bridge lost its isolation while c2 uses it")
				}
				if v4, v6 := e.spawned(); backend == backendIptables && (v4 != 1 || v6 != 1) {
					t.Errorf("DEL started %d iptables-restore and %d ip6tables-restore", v4, v6)
				}
				del(c1, tc.prev) // again
				if !e.entries(backend, c2) {
					t.Error("a repeated DEL of c1 removed c2's entries")
				}
				if v4, v6 := e.spawned(); v4+v6 != 0 {
					t.Errorf("a repeated DEL started %d restore processes", v4+v6)
				}
				del(c2, tc.prev)
				if e.entries(backend, c2) {
					t.Error("c2's entries are left")
				}
				if e.isolated(backend, n.bridge) {
					t.Error("the bridge is still isolated after its last container's DEL")
				}
			})
		}
	}
}

// TestGC: GC removes the network's attachments that are not valid any
// more, in every backend, and the isolation of bridges left empty; other
// networks' entries stay.
func TestGC(t *testing.T) {
	for _, backend := range []string{backendNftables, backendIptables} {
		t.Run(backend, func(t *testing.T) {
			e := newEnv(t)
			n1 := dualStack("gc1", "br-gc1", 5, map[string]any{"backend": backend, "ingressPolicy": policyIsolated})
			n2 := dualStack("gc2", "br-gc2", 6, map[string]any{"backend": backend})
			c1, c2, c3 := e.attach(n1, "c1"), e.attach(n1, "c2"), e.attach(n1, "c3")
			other := e.attach(n2, "c4")
			for _, c := range []*container{c1, c2, c3} {
				e.mustFw("ADD", n1, c)
			}
			e.mustFw("ADD", n2, other)

			gc := func(keep ...*container) {
				t.Helper()
				var valid []map[string]string
				for _, c := range keep {
					valid = append(valid, map[string]string{"containerID": c.cid, "ifname": "eth0"})
				}
				var conf map[string]any
				json.Unmarshal(e.fwConf(n1, nil), &conf)
				conf["cni.dev/valid-attachments"] = valid
				if _, cerr := e.invoke("firewall", "GC", "", "", mustJSON(t, conf)); cerr != nil {
					t.Fatalf("GC: %v", cerr)
				}
			}
			gc(c2)
			for _, x := range []struct {
				c    *container
				want bool
			}{{c1, false}, {c2, true}, {c3, false}, {other, true}} {
				if got := e.entries(backend, x.c); got != x.want {
					t.Errorf("after GC keeping c2: entries of %s = %v, want %v", x.c.cid, got, x.want)
				}
			}
			if !e.isolated(backend, n1.bridge) {
				t.Error("GC removed the isolation of a bridge still in use")
			}
			gc()
			if e.entries(backend, c2) || !e.entries(backend, other) {
				t.Error("GC keeping nothing: c2 left, or the other network's container removed")
			}
			if e.isolated(backend, n1.bridge) {
				t.Error("GC left the isolation of an unused bridge")
			}
		})
	}
}

// TestBadConfig: a bad configuration or request fails with the right code,
// names the bad value, and changes nothing.
func TestBadConfig(t *testing.T) {
	e := newEnv(t)
	n := network{name: "bad", bridge: "br-bad", subnets: []string{"10.64.1.0/24"}}
	c := e.attach(n, "c1")
	var res map[string]any
	json.Unmarshal(c.result, &res)
	sandboxFirst := mustJSON(t, map[string]any{"cniVersion": "1.1.0",
		"interfaces": []any{map[string]any{"name": "eth0", "sandbox": c.ns.Path()}},
		"ips":        []any{map[string]any{"address": "10.64.1.9/24", "interface": 0}}})
	noPort := mustJSON(t, map[string]any{"cniVersion": "1.1.0",
		"interfaces": []any{map[string]any{"name": "br-bad"}, map[string]any{"name": "eth0", "sandbox": c.ns.Path()}},
		"ips":        []any{map[string]any{"address": "10.64.1.9/24", "interface": 1}}})

	cases := []struct {
		name     string
		verb     string
		keys     map[string]any
		prev     []byte
		raw      string // the whole stdin, when set
		wantCode cni.Code
		wantMsg  string
	}{
		{"unknown backend", "ADD", map[string]any{"backend": "ufw"}, c.result, "", 7, `backend "ufw"`},
		{"unknown ingressPolicy", "ADD", map[string]any{"ingressPolicy": "strict"}, c.result, "", 7, `ingressPolicy "strict"`},
		{"admin chain with a space", "ADD", map[string]any{"iptablesAdminChainName": "MY ADMIN"}, c.result, "", 7, `"MY ADMIN"`},
		{"admin chain like an option", "ADD", map[string]any{"iptablesAdminChainName": "-X"}, c.result, "", 7, `"-X"`},
		{"admin chain too long", "ADD", map[string]any{"iptablesAdminChainName": strings.Repeat("A", 29)}, c.result, "", 7, "iptablesAdminChainName"},
		{"admin chain is FORWARD", "ADD", map[string]any{"iptablesAdminChainName": "FORWARD"}, c.result, "", 7, `"FORWARD"`},
		{"zone too long", "ADD", map[string]any{"firewalldZone": strings.Repeat("z", 18)}, c.result, "", 7, "firewalldZone"},
		{"zone with a quote", "ADD", map[string]any{"firewalldZone": `a"b`}, c.result, "", 7, "firewalldZone"},
		{"backend not a string", "ADD", map[string]any{"backend": 3}, c.result, "", 6, "decoding"},
		{"malformed JSON", "ADD", nil, nil, `{"cniVersion":"1.1.0","name":"bad","type":"firewall",`, 6, ""},
		{"ADD without prevResult", "ADD", nil, nil, "", 7, "prevResult is missing"},
		{"CHECK without prevResult", "CHECK", nil, nil, "", 7, "prevResult is missing"},
		{"prevResult not a result", "ADD", nil, []byte(`{"ips":"x"}`), "", 6, "prevResult"},
		{"same-bridge without a host interface first", "ADD", map[string]any{"ingressPolicy": policySameBridge}, sandboxFirst, "", 7, `"eth0" is inside`},
		{"isolated without the bridge port", "ADD", map[string]any{"ingressPolicy": policyIsolated}, noPort, "", 7, "port of bridge"},
		{"bad key on DEL", "DEL", map[string]any{"backend": "ufw"}, c.result, "", 7, `backend "ufw"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n.fw = tc.keys
			stdin := []byte(tc.raw)
			if tc.raw == "" {
				stdin = e.fwConf(n, tc.prev)
			}
			_, cerr := e.invoke("firewall", tc.verb, c.cid, c.ns.Path(), stdin)
			if cerr == nil {
				t.Fatal("succeeded")
			}
			if cerr.Code != tc.wantCode || !strings.Contains(cerr.Msg, tc.wantMsg) {
				t.Errorf("got code %d %q, want code %d containing %q", cerr.Code, cerr.Msg, tc.wantCode, tc.wantMsg)
			}
			if len(e.nftElements()) != 0 || len(e.iptablesRules(iptables.IPv4, forwardChain)) != 0 {
				t.Error("a failed request left entries behind")
			}
			if out := e.host.MustRun("nft", "list", "tables"); strings.Contains(out, "cnikit") {
				t.Errorf("a failed request created nftables tables:\n%s", out)
			}
			if entries, _ := os.ReadDir(e.stateDir); len(entries) != 0 {
				t.Errorf("a failed request wrote state: %v", entries)
			}
		})
	}
}
