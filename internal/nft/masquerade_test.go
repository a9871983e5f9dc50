package nft

import (
	"net"
	"strings"
	"testing"

	"github.com/cnikit/cnikit/internal/nstest"
)

func mustCIDR(t testing.TB, s string) net.IPNet {
	t.Helper()
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	return net.IPNet{IP: ip, Mask: n.Mask}
}

// withConn runs fn with a Conn opened inside ns.
func withConn(t testing.TB, ns *nstest.NS, fn func(c *Conn) error) {
	t.Helper()
	ns.Do(func() error {
		c, err := Open()
		if err != nil {
			return err
		}
		defer c.Close()
		return fn(c)
	})
}

// queueMasquerade queues the attachment's elements and, with program, the
// parts of the program they need that are missing.
func queueMasquerade(t *testing.T, c *Conn, a Attachment, addrs []net.IPNet, program bool) {
	t.Helper()
	targets := masqTargets(a.Network, addrs)
	if program {
		if err := c.queueMasqueradeProgram(a.Network, targets, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.queueMasqueradeEntries(a, targets); err != nil {
		t.Fatal(err)
	}
}

func TestMasqueradeLifecycle(t *testing.T) {
	ns := nstest.New(t)
	a := Attachment{Network: "net1", ContainerID: "c1", IfName: "eth0"}
	b := Attachment{Network: "net1", ContainerID: "c2", IfName: "eth0"}
	addrsA := []net.IPNet{mustCIDR(t, "10.1.0.5/24"), mustCIDR(t, "fd00:1::5/64")}
	addrsB := []net.IPNet{mustCIDR(t, "10.1.0.6/24")}

	withConn(t, ns, func(c *Conn) error {
		if err := c.queueMasqueradeEntries(a, masqTargets(a.Network, addrsA)); err != nil {
			return err
		}
		if err := c.Flush(); !IsNotFound(err) {
			t.Fatalf("elements without the program: got %v, want not found", err)
		}
		for _, step := range []struct {
			name    string
			a       Attachment
			ips     []net.IPNet
			program bool
		}{{"add A with the program", a, addrsA, true}, {"add A again", a, addrsA, false}, {"add B", b, addrsB, false}} {
			queueMasquerade(t, c, step.a, step.ips, step.program)
			if err := c.Flush(); err != nil {
				t.Fatalf("%s: %v", step.name, err)
			}
		}
		got, err := c.findMasquerade(a)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 {
			t.Fatalf("found %d elements of A, want 2: %+v", len(got), got)
		}
		for _, e := range got {
			if !strings.HasPrefix(e.Chain, masqSubnetPrefix) {
				t.Errorf("element %s jumps to %q", e.IP, e.Chain)
			}
		}
		// A again with everything in place: nothing to send.
		queueMasquerade(t, c, a, addrsA, true)
		if n := c.Pending(); n != 0 {
			t.Errorf("adding A again queued %d changes, want none", n)
		}
		return nil
	})
	out := ns.MustRun("nft", "list", "table", "inet", "cnikit")
	for _, want := range []string{"10.1.0.5 comment", "fd00:1::5 comment", "ip daddr != 10.1.0.0/24 masquerade", "ip6 daddr != fd00:1::/64 masquerade", "ip saddr vmap @masq4", "net: net1, if: eth0, id: c2"} {
		if !strings.Contains(out, want) {
			t.Errorf("ruleset lacks %q:\n%s", want, out)
		}
	}

	withConn(t, ns, func(c *Conn) error {
		// B's address reused by A (a leaked B): the element takes A's comment.
		queueMasquerade(t, c, a, addrsB, false)
		if err := c.Flush(); err != nil {
			t.Fatalf("re-adding a leaked element: %v", err)
		}
		if got, _ := c.findMasquerade(b); len(got) != 0 {
			t.Errorf("B still owns %+v", got)
		}
		// Same IP in another subnet: its chain comes with the program parts,
		// and the element changes verdict.
		other := []net.IPNet{mustCIDR(t, "10.1.0.6/16")}
		queueMasquerade(t, c, b, other, true)
		if err := c.Flush(); err != nil {
			t.Fatalf("taking an element over with another verdict: %v", err)
		}
		if got, _ := c.findMasquerade(b); len(got) != 1 || got[0].Chain != SubnetChain("net1", &net.IPNet{IP: net.IPv4(10, 1, 0, 0).To4(), Mask: net.CIDRMask(16, 32)}) {
			t.Errorf("B's elements: %+v", got)
		}
		// Delete by IP; a second delete reports not-found.
		if err := c.delMasqueradeIPs([]net.IP{addrsA[0].IP}); err != nil {
			return err
		}
		if err := c.Flush(); err != nil {
			t.Fatalf("delete by IP: %v", err)
		}
		if err := c.delMasqueradeIPs([]net.IP{addrsA[0].IP}); err != nil {
			return err
		}
		if err := c.Flush(); !IsNotFound(err) {
			t.Fatalf("second delete by IP: got %v, want not found", err)
		}
		n, err := c.delMasqueradeOf(a)
		if err != nil {
			return err
		}
		if n != 1 {
			t.Errorf("delMasqueradeOf(A) found %d, want 1 (the v6 one)", n)
		}
		if err := c.Flush(); err != nil {
			return err
		}
		all, err := c.ListMasquerade()
		if err != nil {
			return err
		}
		n, err = c.gcMasquerade(all, "net1", NewKeepSet("net1", nil))
		if err != nil {
			return err
		}
		if n != 1 {
			t.Errorf("GC found %d stale, want 1 (B's)", n)
		}
		if err := c.Flush(); err != nil {
			return err
		}
		if all, err = c.ListMasquerade(); err != nil {
			return err
		}
		if len(all) != 0 {
			t.Errorf("elements left: %+v", all)
		}
		return nil
	})
}

func TestSubnetOfChain(t *testing.T) {
	for _, tc := range []struct {
		name, ip, subnet string
	}{
		{"IPv4 /24", "10.1.0.5", "10.1.0.0/24"},
		{"IPv4 /32", "10.1.0.5", "10.1.0.5/32"},
		{"IPv4 /0", "10.1.0.5", "0.0.0.0/0"},
		{"IPv6 /64", "fd00:1::5", "fd00:1::/64"},
		{"IPv6 /127", "fd00:1::5", "fd00:1::4/127"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, subnet, _ := net.ParseCIDR(tc.subnet)
			got := subnetOfChain("net1", net.ParseIP(tc.ip), SubnetChain("net1", subnet))
			if got == nil || got.String() != tc.subnet {
				t.Errorf("got %v, want %s", got, tc.subnet)
			}
			if got := subnetOfChain("net2", net.ParseIP(tc.ip), SubnetChain("net1", subnet)); got != nil {
				t.Errorf("another network's chain: got %v", got)
			}
		})
	}
}
