package firewall

import (
	"encoding/json"
	"testing"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/iptables"
	"github.com/cnikit/cnikit/internal/nft"
)

// entries reports whether the backend holds entries for container c.
func (e *env) entries(backend string, c *container) bool {
	switch backend {
	case backendNftables:
		for _, el := range e.nftElements() {
			for _, ip := range c.ips {
				if el.IP.String() == ip {
					return true
				}
			}
		}
		return false
	default:
		for _, f := range []iptables.Family{iptables.IPv4, iptables.IPv6} {
			for _, ip := range c.ips {
				if containsSub(e.iptablesRules(f, forwardChain), ip+"/") {
					return true
				}
			}
		}
		return false
	}
}

func TestLifecycle(t *testing.T) {
	for _, backend := range []string{backendNftables, backendIptables} {
		for _, policy := range []string{policyOpen, policySameBridge, policyIsolated} {
			t.Run(backend+"/"+policy, func(t *testing.T) {
				e := newEnv(t)
				n := network{name: "lc", bridge: "br-lc", subnets: []string{"10.61.1.0/24", "fd61:1::/64"},
					fw: map[string]any{"backend": backend, "ingressPolicy": policy}}
				c := e.attach(n, "ctr1")
				e.spawned()

				out, cerr := e.invoke("firewall", "ADD", c.cid, c.ns.Path(), e.fwConf(n, c.result))
				if cerr != nil {
					t.Fatalf("ADD: %v", cerr)
				}
				// The result is prevResult, unchanged.
				got, _ := cni.ParseResult(out, "1.1.0")
				want, _ := cni.ParseResult(c.result, "1.1.0")
				gotJSON, _ := got.Marshal("1.1.0")
				wantJSON, _ := want.Marshal("1.1.0")
				if string(gotJSON) != string(wantJSON) {
					t.Errorf("ADD result\n%s\nis not prevResult\n%s", gotJSON, wantJSON)
				}
				if !e.entries(backend, c) {
					t.Fatal("no entries after ADD")
				}
				v4, v6 := e.spawned()
				if backend == backendIptables && (v4 != 1 || v6 != 1) {
					t.Errorf("ADD of a dual-stack container started %d iptables-restore and %d ip6tables-restore, want 1 and 1", v4, v6)
				}
				if backend == backendNftables && v4+v6 != 0 {
					t.Errorf("the nftables backend started %d iptables-restore processes", v4+v6)
				}
				e.mustFw("ADD", n, c) // again: nothing new, nothing fails
				e.spawned()
				e.mustFw("CHECK", n, c)

				e.mustFw("DEL", n, c)
				if e.entries(backend, c) {
					t.Error("entries left after DEL")
				}
				v4, v6 = e.spawned()
				if backend == backendIptables && (v4 != 1 || v6 != 1) {
					t.Errorf("DEL started %d iptables-restore and %d ip6tables-restore, want 1 and 1", v4, v6)
				}
				if cerr := e.fw("CHECK", n, c, true); cerr == nil {
					t.Error("CHECK passed after DEL")
				}
				e.mustFw("DEL", n, c)
				if v4, v6 := e.spawned(); v4+v6 != 0 {
					t.Errorf("a DEL with nothing left started %d processes", v4+v6)
				}
				if policy != policyOpen {
					// The bridge's last container is gone: so is its isolation.
					if backend == backendNftables {
						var isolating bool
						e.host.Do(func() error {
							conn, err := nft.Open()
							if err != nil {
								return err
							}
							defer conn.Close()
							isolating, _, err = conn.IsolationOf(n.bridge)
							return err
						})
						if isolating {
							t.Error("the bridge is still isolating after its last container's DEL")
						}
					} else if rules := e.iptablesRules(iptables.IPv4, isolationStage1); containsSub(rules, n.bridge) {
						t.Errorf("isolation rules left after the last DEL: %v", rules)
					}
				}
			})
		}
	}
}

// TestResultPassesThroughOldVersions: a 0.4.0 chain (what podman writes)
// gets its prevResult back in 0.4.0 form.
func TestResultPassesThroughOldVersions(t *testing.T) {
	e := newEnv(t)
	n := network{name: "old", bridge: "br-old", subnets: []string{"10.61.2.0/24"}, fw: map[string]any{"backend": backendNftables}}
	c := e.attach(n, "ctr1")
	res, _ := cni.ParseResult(c.result, "1.1.0")
	prev040, err := res.Marshal("0.4.0")
	if err != nil {
		t.Fatal(err)
	}
	var conf map[string]any
	json.Unmarshal(e.fwConf(n, prev040), &conf)
	conf["cniVersion"] = "0.4.0"
	out, cerr := e.invoke("firewall", "ADD", c.cid, c.ns.Path(), mustJSON(t, conf))
	if cerr != nil {
		t.Fatalf("ADD 0.4.0: %v", cerr)
	}
	var printed map[string]any
	json.Unmarshal(out, &printed)
	if printed["cniVersion"] != "0.4.0" || len(printed["ips"].([]any)) != 1 {
		t.Errorf("ADD 0.4.0 printed %s", out)
	}
}
