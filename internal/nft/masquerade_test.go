package nft

import (
	"net"
	"strings"
	"testing"

	"github.com/cnikit/cnikit/internal/nstest"
)

func mustCIDR(t *testing.T, s string) net.IPNet {
	t.Helper()
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	return net.IPNet{IP: ip, Mask: n.Mask}
}

// inNS runs fn with a Conn opened inside a fresh namespace.
func withConn(t *testing.T, ns *nstest.NS, fn func(c *Conn) error) {
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

func TestMasqueradeLifecycle(t *testing.T) {
	ns := nstest.New(t)
	a := Attachment{Network: "net1", ContainerID: "c1", IfName: "eth0"}
	b := Attachment{Network: "net1", ContainerID: "c2", IfName: "eth0"}
	addrsA := []net.IPNet{mustCIDR(t, "10.1.0.5/24"), mustCIDR(t, "fd00:1::5/64")}
	addrsB := []net.IPNet{mustCIDR(t, "10.1.0.6/24")}

	withConn(t, ns, func(c *Conn) error {
		for _, step := range []struct {
			name string
			a    Attachment
			ips  []net.IPNet
		}{{"add A", a, addrsA}, {"add A again", a, addrsA}, {"add B", b, addrsB}} {
			if err := c.AddMasquerade(step.a, step.ips); err != nil {
				t.Fatalf("%s: %v", step.name, err)
			}
			if err := c.Flush(); err != nil {
				t.Fatalf("%s: %v", step.name, err)
			}
		}
		got, err := c.FindMasquerade(a)
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
		if err := c.AddMasquerade(a, addrsB); err != nil {
			return err
		}
		if err := c.Flush(); err != nil {
			t.Fatalf("re-adding a leaked element: %v", err)
		}
		if got, _ := c.FindMasquerade(b); len(got) != 0 {
			t.Errorf("B still owns %+v", got)
		}
		// Same IP in another subnet chain: a clash, solved by eviction.
		other := []net.IPNet{mustCIDR(t, "10.1.0.6/16")}
		if err := c.AddMasquerade(b, other); err != nil {
			return err
		}
		err := c.Flush()
		if !IsClash(err) {
			t.Fatalf("adding with another verdict: got %v, want a clash", err)
		}
		if err := c.EvictMasquerade(other); err != nil {
			return err
		}
		if err := c.AddMasquerade(b, other); err != nil {
			return err
		}
		if err := c.Flush(); err != nil {
			t.Fatalf("after eviction: %v", err)
		}
		// Delete by IP; a second delete reports not-found.
		if err := c.DelMasqueradeIPs([]net.IP{addrsA[0].IP}); err != nil {
			return err
		}
		if err := c.Flush(); err != nil {
			t.Fatalf("delete by IP: %v", err)
		}
		if err := c.DelMasqueradeIPs([]net.IP{addrsA[0].IP}); err != nil {
			return err
		}
		if err := c.Flush(); !IsNotFound(err) {
			t.Fatalf("second delete by IP: got %v, want not found", err)
		}
		n, err := c.DelMasqueradeOf(a)
		if err != nil {
			return err
		}
		if n != 1 {
			t.Errorf("DelMasqueradeOf(A) found %d, want 1 (the v6 one)", n)
		}
		if err := c.Flush(); err != nil {
			return err
		}
		n, err = c.GCMasquerade("net1", NewKeepSet("net1", nil))
		if err != nil {
			return err
		}
		if n != 1 {
			t.Errorf("GC found %d stale, want 1 (B's)", n)
		}
		if err := c.Flush(); err != nil {
			return err
		}
		all, err := c.ListMasquerade()
		if err != nil {
			return err
		}
		if len(all) != 0 {
			t.Errorf("elements left: %+v", all)
		}
		return nil
	})
}
