package firewall

import (
	"testing"

	"github.com/cnikit/cnikit/internal/nstest"
)

// topology is two bridge networks, A (containers a1, a2) and B (b1), each
// chained with the firewall, plus the outside namespace.
type topology struct {
	e          *env
	netA, netB network
	a1, a2, b1 *container
}

func newTopology(t *testing.T, backend, policyA, policyB string) *topology {
	e := newEnv(t)
	tp := &topology{e: e,
		netA: network{name: "net-a", bridge: "br-a", subnets: []string{"10.62.1.0/24"},
			fw: map[string]any{"backend": backend, "ingressPolicy": policyA}},
		netB: network{name: "net-b", bridge: "br-b", subnets: []string{"10.62.2.0/24"},
			fw: map[string]any{"backend": backend, "ingressPolicy": policyB}},
	}
	tp.a1, tp.a2, tp.b1 = e.attach(tp.netA, "a1"), e.attach(tp.netA, "a2"), e.attach(tp.netB, "b1")
	for _, x := range []struct {
		n network
		c *container
	}{{tp.netA, tp.a1}, {tp.netA, tp.a2}, {tp.netB, tp.b1}} {
		e.mustFw("ADD", x.n, x.c)
	}
	return tp
}

// path is one reachability expectation: a ping from one namespace to an
// address.
type path struct {
	name string
	from func(*topology) *nstest.NS
	to   func(*topology) string
	want bool
}

var (
	fromA1      = func(tp *topology) *nstest.NS { return tp.a1.ns }
	fromA2      = func(tp *topology) *nstest.NS { return tp.a2.ns }
	fromB1      = func(tp *topology) *nstest.NS { return tp.b1.ns }
	fromOutside = func(tp *topology) *nstest.NS { return tp.e.outside() }
	toA1        = func(tp *topology) string { return tp.a1.ips[0] }
	toA2        = func(tp *topology) string { return tp.a2.ips[0] }
	toB1        = func(tp *topology) string { return tp.b1.ips[0] }
	toOutside   = func(tp *topology) string { tp.e.outside(); return outside4 }
	toGatewayA  = func(*topology) string { return "10.62.1.1" }
)

func (tp *topology) verify(t *testing.T, paths []path) {
	t.Helper()
	for _, p := range paths {
		from, to := p.from(tp), p.to(tp)
		if got := probe(from, to, p.want); got != p.want {
			t.Errorf("%s (%s): reachable = %v, want %v", p.name, to, got, p.want)
		}
	}
}

// TestIngressPolicy checks, with real traffic and for both backends that
// isolate, who reaches whom under each policy. Isolation is the reference's
// (and Docker's): bridges with an isolating policy do not reach each other;
// the outside world and bridges with policy open are not cut off, and
// replies to a container's own connections come back.
func TestIngressPolicy(t *testing.T) {
	cases := []struct {
		name             string
		policyA, policyB string
		paths            []path
	}{
		{"open", policyOpen, policyOpen, []path{
			{"a1 to b1", fromA1, toB1, true},
			{"b1 to a1", fromB1, toA1, true},
			{"a1 to a2", fromA1, toA2, true},
			{"outside to a1", fromOutside, toA1, true},
		}},
		{"same-bridge on both", policySameBridge, policySameBridge, []path{
			{"a1 to b1", fromA1, toB1, false},
			{"b1 to a1", fromB1, toA1, false},
			{"a1 to a2 on the same bridge", fromA1, toA2, true},
			{"a1 to outside and back", fromA1, toOutside, true},
			{"b1 to outside and back", fromB1, toOutside, true},
			{"outside to a1", fromOutside, toA1, true},
		}},
		{"isolated A, same-bridge B", policyIsolated, policySameBridge, []path{
			{"a1 to a2 on the same bridge", fromA1, toA2, false},
			{"a2 to a1 on the same bridge", fromA2, toA1, false},
			{"a1 to b1", fromA1, toB1, false},
			{"b1 to a1", fromB1, toA1, false},
			{"a1 to its gateway", fromA1, toGatewayA, true},
			{"a1 to outside and back", fromA1, toOutside, true},
		}},
		{"same-bridge A, open B", policySameBridge, policyOpen, []path{
			{"a1 to b1", fromA1, toB1, true},
			{"b1 to a1", fromB1, toA1, true},
		}},
	}
	for _, backend := range []string{backendNftables, backendIptables} {
		for _, tc := range cases {
			t.Run(backend+"/"+tc.name, func(t *testing.T) {
				tp := newTopology(t, backend, tc.policyA, tc.policyB)
				tp.verify(t, tc.paths)
				// Once every container is gone, nothing isolates any more:
				// new containers on the same bridges talk freely.
				for _, x := range []struct {
					n network
					c *container
				}{{tp.netA, tp.a1}, {tp.netA, tp.a2}, {tp.netB, tp.b1}} {
					tp.e.mustFw("DEL", x.n, x.c)
				}
				tp.verify(t, []path{{"a1 to b1 after DEL", fromA1, toB1, true}})
			})
		}
	}
}

// TestAdminChain: the administrator's chain runs first. A drop there wins in
// both backends; in the nftables backend an accept there also overrides the
// isolation (in the iptables backend, as in the reference, the isolation
// chains come before CNI-FORWARD and its admin jump).
func TestAdminChain(t *testing.T) {
	t.Run("nftables", func(t *testing.T) {
		tp := newTopology(t, backendNftables, policySameBridge, policySameBridge)
		tp.e.host.MustRun("nft", "add", "rule", "inet", "cnikit", "forward-admin", "ip", "saddr", tp.a1.ips[0], "ip", "daddr", outside4, "drop")
		tp.e.host.MustRun("nft", "add", "rule", "inet", "cnikit", "forward-admin", "ip", "saddr", tp.a1.ips[0], "ip", "daddr", tp.b1.ips[0], "accept")
		tp.verify(t, []path{
			{"a1 to outside, dropped by the admin", fromA1, toOutside, false},
			{"a2 to outside", fromA2, toOutside, true},
			{"a1 to b1, accepted by the admin; the reply passes", fromA1, toB1, true},
			{"b1 to a1, still isolated", fromB1, toA1, false},
		})
	})
	t.Run("iptables", func(t *testing.T) {
		tp := newTopology(t, backendIptables, policyOpen, policyOpen)
		tp.e.host.MustRun("iptables", "-A", "CNI-ADMIN", "-s", tp.a1.ips[0], "-d", outside4, "-j", "DROP")
		tp.verify(t, []path{
			{"a1 to outside, dropped by the admin", fromA1, toOutside, false},
			{"a2 to outside", fromA2, toOutside, true},
		})
		// ADD again and DEL leave the administrator's rule alone.
		tp.e.mustFw("ADD", tp.netA, tp.a2)
		tp.e.mustFw("DEL", tp.netA, tp.a2)
		if rules := tp.e.iptablesRules(4, "CNI-ADMIN"); len(rules) != 1 {
			t.Errorf("CNI-ADMIN after ADD and DEL: %v", rules)
		}
	})
}
