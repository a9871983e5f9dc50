package nft

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cnikit/cnikit/internal/nstest"
)

func tcpPort(t *testing.T, hostIP string, port uint16, container string, cport uint16) HostPort {
	t.Helper()
	p := HostPort{Protocol: unix.IPPROTO_TCP, Port: port, Container: mustCIDR(t, container), ContainerPort: cport, SNAT: SNATHairpin}
	if hostIP != "" {
		p.HostIP = net.ParseIP(hostIP)
	}
	return p
}

// flushed queues with fn and flushes, returning the Flush error.
func flushed(t *testing.T, c *Conn, fn func() error) error {
	t.Helper()
	if err := fn(); err != nil {
		t.Fatalf("queueing: %v", err)
	}
	return c.Flush()
}

func countOf(elems []HostPortElement, a Attachment) int {
	n := 0
	for _, e := range elems {
		if strings.HasPrefix(e.Comment, a.Key()) {
			n++
		}
	}
	return n
}

func TestHostPortsLifecycle(t *testing.T) {
	ns := nstest.New(t)
	a := Attachment{Network: "net1", ContainerID: "a", IfName: "eth0"}
	b := Attachment{Network: "net1", ContainerID: "b", IfName: "eth0"}
	other := Attachment{Network: "net2", ContainerID: "c", IfName: "eth0"}
	portsA := []HostPort{
		tcpPort(t, "", 8080, "10.1.0.5/24", 80),
		tcpPort(t, "192.0.2.1", 8443, "10.1.0.5/24", 443),
		{Protocol: unix.IPPROTO_UDP, Port: 5353, Container: mustCIDR(t, "fd00:1::5/64"), ContainerPort: 53, SNAT: SNATAll,
			Sources: []IPRange{{netip.MustParseAddr("fd00::"), netip.MustParseAddr("fd00::ffff")}}},
	}
	portsB := []HostPort{tcpPort(t, "", 9090, "10.1.0.6/24", 80)}
	portsOther := []HostPort{{Protocol: unix.IPPROTO_SCTP, Port: 7000, Container: mustCIDR(t, "10.2.0.5/24"), ContainerPort: 70}}

	withConn(t, ns, func(c *Conn) error {
		for _, step := range []struct {
			name  string
			a     Attachment
			ports []HostPort
		}{{"add A", a, portsA}, {"add A again", a, portsA}, {"add B", b, portsB}, {"add other network", other, portsOther}} {
			if err := flushed(t, c, func() error { return c.AddHostPorts(step.a, step.ports) }); err != nil {
				t.Fatalf("%s: %v", step.name, err)
			}
		}
		// A: 3 dnat + 3 masquerade elements, and the third mapping's
		// conditions: 1 cond + 1 allow; other: no SNAT.
		elems, err := c.ListHostPorts()
		if err != nil {
			t.Fatal(err)
		}
		if n := countOf(elems, a); n != 8 {
			t.Errorf("A has %d elements, want 8: %+v", n, elems)
		}
		if n := countOf(elems, other); n != 1 {
			t.Errorf("other has %d elements, want 1", n)
		}
		if err := c.CheckHostPorts(a, portsA); err != nil {
			t.Errorf("CHECK of A: %v", err)
		}
		if err := c.CheckHostPorts(b, portsA); err == nil {
			t.Error("CHECK of B against A's mappings passed")
		}

		// B asking for A's port clashes, and the clash names A.
		steal := []HostPort{tcpPort(t, "", 8080, "10.1.0.6/24", 80)}
		err = flushed(t, c, func() error { return c.AddHostPorts(b, steal) })
		if !IsClash(err) {
			t.Fatalf("B taking A's port: got %v, want a clash", err)
		}
		clashes, err := c.ResolveHostPortClashes(b, steal)
		if err != nil {
			t.Fatal(err)
		}
		if len(clashes) != 1 || !strings.Contains(clashes[0].Holder, "id: a") {
			t.Errorf("clashes = %+v, want one held by a", clashes)
		}
		if err := c.CheckHostPorts(a, portsA); err != nil {
			t.Errorf("A after the refused clash: %v", err)
		}

		// A re-added with another address (its record lost): its own stale
		// elements are evicted, not reported.
		moved := []HostPort{tcpPort(t, "", 8080, "10.1.0.9/24", 80)}
		err = flushed(t, c, func() error { return c.AddHostPorts(a, moved) })
		if !IsClash(err) {
			t.Fatalf("A moving: got %v, want a clash", err)
		}
		clashes, err = c.ResolveHostPortClashes(a, moved)
		if err != nil || len(clashes) != 0 {
			t.Fatalf("A moving: clashes %+v, %v", clashes, err)
		}
		if err := flushed(t, c, func() error { return c.AddHostPorts(a, moved) }); err != nil {
			t.Fatalf("A moving after eviction: %v", err)
		}
		if err := c.CheckHostPorts(a, moved); err != nil {
			t.Error(err)
		}
		if err := flushed(t, c, func() error { return c.AddHostPorts(a, portsA) }); !IsClash(err) {
			t.Fatalf("A moving back: %v", err)
		}
		if _, err := c.ResolveHostPortClashes(a, portsA); err != nil {
			t.Fatal(err)
		}
		if err := flushed(t, c, func() error { return c.AddHostPorts(a, portsA) }); err != nil {
			t.Fatalf("A moving back after eviction: %v", err)
		}
		// A's old record is stale now: deleting by it clashes, changing nothing.
		if err := flushed(t, c, func() error { return c.DelHostPorts(a, moved) }); !IsClash(err) {
			t.Fatalf("deleting by A's stale record: got %v, want a clash", err)
		}
		if err := c.CheckHostPorts(a, portsA); err != nil {
			t.Error(err)
		}
		return nil
	})

	out := ns.MustRun("nft", "list", "table", "inet", "cnikit")
	for _, want := range []string{
		"tcp . 8080 comment", ": 10.1.0.5 . 80",
		"192.0.2.1 . tcp . 8443 comment", "fd00::/112 . ::/0 . udp . 5353 comment",
		"fib daddr type local jump hostports-dnat", "priority dstnat + 10",
		"ip6 daddr ::1 return",
		"meta l4proto . th dport @hostports-any6-cond ip6 saddr . ip6 daddr . meta l4proto . th dport != @hostports-any6-allow return",
		"dnat ip to ip daddr . meta l4proto . th dport map @hostports-ip4",
		"ct status dnat ip daddr . meta l4proto . tcp dport . ct original proto-dst vmap @hostports-masq4",
		"ip saddr 10.1.0.0/24 masquerade", "ip saddr 127.0.0.0/8 masquerade", "jump hostports-masq-all",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("ruleset lacks %q:\n%s", want, out)
		}
	}

	withConn(t, ns, func(c *Conn) error {
		// DEL by record, twice: the second finds nothing and succeeds.
		for i := 0; i < 2; i++ {
			if err := flushed(t, c, func() error { return c.DelHostPorts(a, portsA) }); err != nil {
				t.Fatalf("DEL %d of A: %v", i+1, err)
			}
		}
		// A record whose key B now holds with other data: a clash, B intact.
		if err := flushed(t, c, func() error { return c.DelHostPorts(a, []HostPort{tcpPort(t, "", 9090, "10.1.0.5/24", 80)}) }); !IsClash(err) {
			t.Errorf("DEL of a key held by B: got %v, want a clash", err)
		}
		elems, _ := c.ListHostPorts()
		if countOf(elems, a) != 0 || countOf(elems, b) != 2 {
			t.Fatalf("after DEL of A: %d elements of A, %d of B", countOf(elems, a), countOf(elems, b))
		}
		// DEL by comment.
		if err := c.AddHostPorts(a, portsA); err != nil {
			t.Fatal(err)
		}
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
		found, err := c.DelHostPortsOf(a)
		if err != nil || len(found) != 8 {
			t.Fatalf("DelHostPortsOf(A) found %d, %v", len(found), err)
		}
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
		// GC of net1 keeping nothing removes B and leaves net2 alone.
		stale, err := c.GCHostPorts("net1", NewKeepSet("net1", nil))
		if err != nil || len(stale) != 2 {
			t.Fatalf("GC found %d, %v", len(stale), err)
		}
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
		elems, _ = c.ListHostPorts()
		if len(elems) != 1 || countOf(elems, other) != 1 {
			t.Errorf("after GC: %+v", elems)
		}
		return c.ProbeHostPorts()
	})
}

func TestDelHostPortsWithoutProgram(t *testing.T) {
	ns := nstest.New(t)
	a := Attachment{Network: "net1", ContainerID: "a", IfName: "eth0"}
	withConn(t, ns, func(c *Conn) error {
		err := flushed(t, c, func() error { return c.DelHostPorts(a, []HostPort{tcpPort(t, "", 80, "10.1.0.5/24", 80)}) })
		if !IsNotFound(err) {
			t.Errorf("DEL with no table: got %v, want not found", err)
		}
		found, err := c.DelHostPortsOf(a)
		if err != nil || len(found) != 0 {
			t.Errorf("DelHostPortsOf with no table: %v, %v", found, err)
		}
		if err := c.ProbeHostPorts(); err != nil {
			t.Errorf("probe with no table: %v", err)
		}
		return nil
	})
}

func TestLocalnetGuard(t *testing.T) {
	ns := nstest.New(t)
	for i := 0; i < 2; i++ { // the second finds it there
		withConn(t, ns, func(c *Conn) error {
			if err := c.AddLocalnetGuard(); err != nil {
				return err
			}
			if i == 1 && c.Pending() != 0 {
				t.Errorf("the guard was queued again")
			}
			return c.Flush()
		})
	}
	out := ns.MustRun("nft", "list", "table", "inet", "cnikit")
	for _, want := range []string{
		`iif != "lo" ip daddr 127.0.0.0/8 drop`, `iif != "lo" ip saddr 127.0.0.0/8 drop`,
		`oif != "lo" ip saddr 127.0.0.0/8 drop`, "type filter hook prerouting priority raw",
	} {
		if strings.Count(out, want) != 1 {
			t.Errorf("ruleset should have %q once:\n%s", want, out)
		}
	}
	// Loopback traffic still flows.
	if err := ns.Ping("127.0.0.1"); err != nil {
		t.Error(err)
	}
}

func TestHostPortElements(t *testing.T) {
	r := func(first, last string) IPRange {
		return IPRange{First: netip.MustParseAddr(first), Last: netip.MustParseAddr(last)}
	}
	notLoopback := []IPRange{r("0.0.0.0", "126.255.255.255"), r("128.0.0.0", "255.255.255.255")}
	for _, tc := range []struct {
		name  string
		port  HostPort
		allow int // elements in the allow set
		masq  bool
	}{
		{"any address, any source", tcpPort(t, "", 80, "10.1.0.5/24", 80), 0, true},
		{"destinations split in two", HostPort{Protocol: unix.IPPROTO_TCP, Port: 80, Container: mustCIDR(t, "10.1.0.5/24"), ContainerPort: 80,
			Destinations: notLoopback}, 2, false},
		{"sources times destinations", HostPort{Protocol: unix.IPPROTO_UDP, Port: 53, Container: mustCIDR(t, "10.1.0.5/24"), ContainerPort: 53,
			Sources: []IPRange{r("10.0.0.0", "10.0.0.255"), r("10.0.2.0", "10.0.2.255")}, Destinations: notLoopback, SNAT: SNATAll}, 4, true},
		{"host IP allowed by the destinations", HostPort{HostIP: net.ParseIP("192.0.2.1"), Protocol: unix.IPPROTO_TCP, Port: 80,
			Container: mustCIDR(t, "10.1.0.5/24"), ContainerPort: 80, Destinations: notLoopback}, 1, false},
		{"host IP excluded by the destinations", HostPort{HostIP: net.ParseIP("127.0.0.1"), Protocol: unix.IPPROTO_TCP, Port: 80,
			Container: mustCIDR(t, "10.1.0.5/24"), ContainerPort: 80, Destinations: notLoopback}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			elems, err := hostPortElements([]HostPort{tc.port, tc.port}, "c") // duplicates collapse
			if err != nil {
				t.Fatal(err)
			}
			var dnat, cond, allow, masq int
			for _, e := range elems {
				switch {
				case strings.HasSuffix(e.set.Name, "-cond"):
					cond++
				case strings.HasSuffix(e.set.Name, "-allow"):
					allow++
				case strings.HasPrefix(e.set.Name, "hostports-masq"):
					masq++
				default:
					dnat++
				}
				if e.elem.Comment != "c" {
					t.Errorf("element of %s has comment %q", e.set.Name, e.elem.Comment)
				}
			}
			conditioned := tc.port.Sources != nil || tc.port.Destinations != nil
			if dnat != 1 || (cond == 1) != conditioned || allow != tc.allow || (masq == 1) != tc.masq {
				t.Errorf("got %d dnat, %d cond, %d allow, %d masquerade elements; want 1, conditioned %v, %d, masquerade %v",
					dnat, cond, allow, masq, conditioned, tc.allow, tc.masq)
			}
		})
	}
	if _, err := hostPortElements([]HostPort{tcpPort(t, "fd00::1", 80, "10.1.0.5/24", 80)}, ""); err == nil {
		t.Error("a v6 host IP for a v4 container was accepted")
	}
}
