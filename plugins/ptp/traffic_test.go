package ptp

import (
	"fmt"
	"net"
	"testing"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/nstest"
	"github.com/cnikit/cnikit/internal/plugintest"
)

// connectOutside gives the host an uplink to an "outside" namespace
// (198.51.100.0/24, 2001:db8:100::/64) that has no route back to the
// containers, and makes it the host's default route: only masqueraded
// traffic gets answers.
func connectOutside(t *testing.T, e *env) *nstest.NS {
	t.Helper()
	outside := nstest.New(t)
	e.host.MustRun("ip", "link", "add", "uplink", "type", "veth", "peer", "name", "downlink", "netns", outside.Path())
	e.host.MustRun("ip", "addr", "add", "198.51.100.1/24", "dev", "uplink")
	e.host.MustRun("ip", "addr", "add", "2001:db8:100::1/64", "dev", "uplink", "nodad")
	e.host.MustRun("ip", "link", "set", "uplink", "up")
	outside.MustRun("ip", "addr", "add", "198.51.100.2/24", "dev", "downlink")
	outside.MustRun("ip", "addr", "add", "2001:db8:100::2/64", "dev", "downlink", "nodad")
	outside.MustRun("ip", "link", "set", "downlink", "up")
	return outside
}

// TestTraffic: two dual-stack containers on one ptp network reach each other
// through the host, the host reaches both, and with ipMasq their connections
// to the outside arrive from the host's address, in both families.
func TestTraffic(t *testing.T) {
	e := newEnv(t)
	c1, c2 := nstest.New(t), nstest.New(t)
	ipam := e.hostLocal("10.21.0.0/24", "fd21::/64")
	ipam["routes"] = []map[string]string{{"dst": "0.0.0.0/0"}, {"dst": "::/0"}}
	c := netConf(t, "traffic", ipam, map[string]any{"ipMasq": true})
	r1, _ := e.host.MustAdd(plugintest.Call{Conf: c, Netns: c1.Path(), ContainerID: "c1"})
	r2, _ := e.host.MustAdd(plugintest.Call{Conf: c, Netns: c2.Path(), ContainerID: "c2"})
	for _, p := range []struct {
		name string
		from *nstest.NS
		to   net.IP
	}{
		{"c1 to c2 (IPv4)", c1, r2.IPs[0].Address.IP},
		{"c1 to c2 (IPv6)", c1, r2.IPs[1].Address.IP},
		{"c2 to c1 (IPv4)", c2, r1.IPs[0].Address.IP},
		{"c2 to c1 (IPv6)", c2, r1.IPs[1].Address.IP},
		{"host to c1", e.host.NS, r1.IPs[0].Address.IP},
		{"host to c2 (IPv6)", e.host.NS, r2.IPs[1].Address.IP},
	} {
		if err := p.from.Ping(p.to.String()); err != nil {
			t.Errorf("%s: %v", p.name, err)
		}
	}

	// Within the subnet nothing is masqueraded: c2 sees c1's own address.
	peer := c2.AcceptPeer("tcp4", net.JoinHostPort(r2.IPs[0].Address.IP.String(), "8080"))
	c1.MustDial("tcp4", net.JoinHostPort(r2.IPs[0].Address.IP.String(), "8080"))
	if got := <-peer; got != r1.IPs[0].Address.IP.String() {
		t.Errorf("c2 saw c1's connection from %s, want %s", got, r1.IPs[0].Address.IP)
	}

	outside := connectOutside(t, e)
	for _, tc := range []struct{ network, listen, want string }{
		{"tcp4", "198.51.100.2:8080", "198.51.100.1"},
		{"tcp6", "[2001:db8:100::2]:8080", "2001:db8:100::1"},
	} {
		peer := outside.AcceptPeer(tc.network, tc.listen)
		c1.MustDial(tc.network, tc.listen)
		if got := <-peer; got != tc.want {
			t.Errorf("outside saw the %s connection from %s, want the host's %s", tc.network, got, tc.want)
		}
	}
}

// TestNoMasqueradeWithoutIPMasq: without ipMasq the outside sees the
// container's own address (it routes the answer back through the host).
func TestNoMasqueradeWithoutIPMasq(t *testing.T) {
	e := newEnv(t)
	cont := nstest.New(t)
	ipam := e.hostLocal("10.22.0.0/24")
	ipam["routes"] = []map[string]string{{"dst": "0.0.0.0/0"}}
	res, _ := e.host.MustAdd(plugintest.Call{Conf: netConf(t, "nomasq", ipam, nil), Netns: cont.Path()})
	outside := connectOutside(t, e)
	outside.MustRun("ip", "route", "add", "10.22.0.0/24", "via", "198.51.100.1")
	peer := outside.AcceptPeer("tcp4", "198.51.100.2:8080")
	cont.MustDial("tcp4", "198.51.100.2:8080")
	if got := <-peer; got != res.IPs[0].Address.IP.String() {
		t.Errorf("outside saw the connection from %s, want the container's %s", got, res.IPs[0].Address.IP)
	}
}

// TestConcurrentAdds: containers added and deleted at the same time on one
// network all get distinct addresses, their own host end and masquerade
// element, reach the host, and leave nothing behind.
func TestConcurrentAdds(t *testing.T) {
	e := newEnv(t)
	const n = 12
	c := netConf(t, "busy", e.hostLocal("10.35.0.0/24", "fd35::/64"), map[string]any{"ipMasq": true})
	conts := make([]*nstest.NS, n)
	for i := range conts {
		conts[i] = nstest.New(t)
	}
	results := make([][]byte, n)
	errs := make(chan error, n)
	for i := range n {
		go func() {
			out, cerr := e.host.Invoke(plugintest.Call{Verb: "ADD", Conf: c, Netns: conts[i].Path(), ContainerID: fmt.Sprintf("c%d", i)})
			results[i] = out
			if cerr != nil {
				errs <- cerr
				return
			}
			errs <- nil
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("ADD: %v", err)
		}
	}
	seen := map[string]bool{}
	for i, out := range results {
		res, err := cni.ParseResult(out, "1.1.0")
		if err != nil {
			t.Fatal(err)
		}
		for _, ip := range res.IPs {
			mustf(t, !seen[ip.Address.IP.String()], "address %s handed out twice", ip.Address.IP)
			seen[ip.Address.IP.String()] = true
		}
		mustf(t, e.host.Ping(res.IPs[0].Address.IP.String()) == nil, "container %d unreachable", i)
	}
	mustf(t, len(e.masqueraded()) == 2*n, "masqueraded %d addresses, want %d", len(e.masqueraded()), 2*n)
	before := len(e.host.LinkNames())
	for i := range n {
		go func() {
			_, cerr := e.host.Invoke(plugintest.Call{Verb: "DEL", Conf: plugintest.WithPrevResult(t, c, results[i]), Netns: conts[i].Path(), ContainerID: fmt.Sprintf("c%d", i)})
			if cerr != nil {
				errs <- cerr
				return
			}
			errs <- nil
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("DEL: %v", err)
		}
	}
	mustf(t, len(e.host.LinkNames()) == before-n, "host links %v", e.host.LinkNames())
	mustf(t, len(e.masqueraded()) == 0, "masquerade left: %v", e.masqueraded())
}
