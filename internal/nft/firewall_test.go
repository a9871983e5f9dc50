package nft

import (
	"net"
	"strings"
	"testing"

	"github.com/cnikit/cnikit/internal/nstest"
)

func TestFirewallLifecycle(t *testing.T) {
	ns := nstest.New(t)
	a := Attachment{Network: "net1", ContainerID: "c1", IfName: "eth0"}
	b := Attachment{Network: "net1", ContainerID: "c2", IfName: "eth0"}
	open := Attachment{Network: "net2", ContainerID: "c3", IfName: "eth0"}
	ipsA := []net.IP{net.ParseIP("10.1.0.5"), net.ParseIP("fd00:1::5")}
	ipsB := []net.IP{net.ParseIP("10.1.0.6")}
	iso := &Isolation{Bridge: "br-iso", SameBridge: true}

	withConn(t, ns, func(c *Conn) error {
		for _, step := range []struct {
			name string
			a    Attachment
			ips  []net.IP
			iso  *Isolation
		}{
			{"add A", a, ipsA, iso}, {"add A again", a, ipsA, iso}, {"add B", b, ipsB, iso},
			{"add open", open, []net.IP{net.ParseIP("10.2.0.5")}, nil},
		} {
			if err := c.AddFirewall(step.a, step.ips, step.iso); err != nil {
				t.Fatalf("%s: %v", step.name, err)
			}
			if err := c.Flush(); err != nil {
				t.Fatalf("%s: %v", step.name, err)
			}
		}
		got, err := c.FindFirewall(a)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || got[0].Bridge() != "br-iso" {
			t.Fatalf("elements of A: %+v, want 2 jumping to isolation-br-iso", got)
		}
		isolating, same, err := c.IsolationOf("br-iso")
		if err != nil || !isolating || !same {
			t.Fatalf("IsolationOf(br-iso) = %v, %v, %v; want isolating, same-bridge", isolating, same, err)
		}
		return nil
	})

	out := ns.MustRun("nft", "list", "table", "inet", "cnikit")
	for _, want := range []string{
		"jump forward-admin",
		`iifname . oifname @same-bridge accept`,
		"iifname @isolating oifname @isolating drop",
		"ip saddr vmap @firewall4",
		"ip6 daddr vmap @firewall6",
		`10.1.0.5 comment "` + a.Key(),
		"jump isolation-br-iso",
		`"br-iso" . "br-iso"`,
		"10.2.0.5 comment",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("ruleset lacks %q:\n%s", want, out)
		}
	}

	withConn(t, ns, func(c *Conn) error {
		// A's element goes; B still uses the bridge, so the release fails
		// busy and changes nothing.
		if err := c.DelFirewallIPs(ipsA); err != nil {
			return err
		}
		if err := c.Flush(); err != nil {
			t.Fatalf("deleting A: %v", err)
		}
		if refs, ok, err := c.IsolationReferences("br-iso"); refs != 1 || !ok || err != nil {
			t.Fatalf("IsolationReferences with B left = %d, %v, %v; want 1", refs, ok, err)
		}
		if err := c.ReleaseIsolation("br-iso"); err != nil {
			return err
		}
		if err := c.Flush(); !IsBusy(err) {
			t.Fatalf("release with B left: got %v, want busy", err)
		}
		if isolating, _, _ := c.IsolationOf("br-iso"); !isolating {
			t.Fatal("a failed release removed the isolation")
		}
		// A second delete by key fails not-found; by comment finds nothing.
		if err := c.DelFirewallIPs(ipsA[:1]); err != nil {
			return err
		}
		if err := c.Flush(); !IsNotFound(err) {
			t.Fatalf("second delete: got %v, want not found", err)
		}
		if elems, err := c.DelFirewallOf(a); err != nil || len(elems) != 0 {
			t.Fatalf("DelFirewallOf after delete: %v, %v", elems, err)
		}
		// GC of net1 keeping nothing removes B; the open element of net2
		// stays; then the release goes through.
		stale, err := c.GCFirewall("net1", NewKeepSet("net1", nil))
		if err != nil || len(stale) != 1 || !stale[0].IP.Equal(ipsB[0]) {
			t.Fatalf("GC: %+v, %v; want B's element", stale, err)
		}
		if err := c.Flush(); err != nil {
			return err
		}
		bridges, err := c.IsolatedBridges()
		if err != nil || len(bridges) != 1 || bridges[0] != "br-iso" {
			t.Fatalf("IsolatedBridges = %v, %v", bridges, err)
		}
		if refs, ok, err := c.IsolationReferences("br-iso"); refs != 0 || !ok || err != nil {
			t.Fatalf("IsolationReferences of an unused bridge = %d, %v, %v; want 0", refs, ok, err)
		}
		if err := c.ReleaseIsolation("br-iso"); err != nil {
			return err
		}
		if err := c.Flush(); err != nil {
			t.Fatalf("release of an unused bridge: %v", err)
		}
		if _, ok, err := c.IsolationReferences("br-iso"); ok || err != nil {
			t.Fatalf("IsolationReferences after release: exists %v, %v", ok, err)
		}
		// Releasing a bridge that has nothing is a no-op success.
		if err := c.ReleaseIsolation("br-none"); err != nil {
			return err
		}
		return c.Flush()
	})
	out = ns.MustRun("nft", "list", "table", "inet", "cnikit")
	if strings.Contains(out, "br-iso") || strings.Contains(out, "10.1.0.") || !strings.Contains(out, "10.2.0.5") {
		t.Errorf("want only net2's element left:\n%s", out)
	}
}

// TestFirewallEntriesNeedTheProgram: entries alone fail, not found, until
// the program exists; GC's restore brings a changed base chain back.
func TestFirewallEntriesNeedTheProgram(t *testing.T) {
	ns := nstest.New(t)
	a := Attachment{Network: "net1", ContainerID: "c1", IfName: "eth0"}
	ips, isoIPs := []net.IP{net.ParseIP("10.1.0.5")}, []net.IP{net.ParseIP("10.1.0.6")}
	iso := &Isolation{Bridge: "br0", SameBridge: true}
	withConn(t, ns, func(c *Conn) error {
		for _, step := range []struct {
			name    string
			queue   func() error
			wantErr bool
		}{
			{"entries without the program", func() error { return c.AddFirewallEntries(a, ips, nil) }, true},
			{"program and entries", func() error { return c.AddFirewall(a, ips, nil) }, false},
			{"entries", func() error { return c.AddFirewallEntries(a, ips, nil) }, false},
			{"entries of a new isolating bridge", func() error { return c.AddFirewallEntries(a, isoIPs, iso) }, true},
			{"program with the bridge", func() error { return c.AddFirewall(a, isoIPs, iso) }, false},
			{"entries of the known bridge", func() error { return c.AddFirewallEntries(a, isoIPs, iso) }, false},
		} {
			if err := step.queue(); err != nil {
				return err
			}
			err := c.Flush()
			if step.wantErr && !IsNotFound(err) {
				t.Fatalf("%s: got %v, want not found", step.name, err)
			}
			if !step.wantErr && err != nil {
				t.Fatalf("%s: %v", step.name, err)
			}
		}
		if ok, err := c.FirewallProgramIntact(); !ok || err != nil {
			t.Fatalf("program intact = %v, %v", ok, err)
		}
		return nil
	})
	ns.MustRun("nft", "flush", "chain", "inet", "cnikit", "forward")
	withConn(t, ns, func(c *Conn) error {
		if ok, _ := c.FirewallProgramIntact(); ok {
			t.Error("a flushed base chain reads as intact")
		}
		if err := c.RestoreFirewallProgram(); err != nil {
			return err
		}
		if err := c.Flush(); err != nil {
			return err
		}
		if ok, err := c.FirewallProgramIntact(); !ok || err != nil {
			t.Errorf("after RestoreFirewallProgram: intact = %v, %v", ok, err)
		}
		return nil
	})
}

func TestFirewallIsolatedReplacesSameBridge(t *testing.T) {
	ns := nstest.New(t)
	a := Attachment{Network: "net1", ContainerID: "c1", IfName: "eth0"}
	withConn(t, ns, func(c *Conn) error {
		for _, sameBridge := range []bool{true, false} {
			if err := c.AddFirewall(a, []net.IP{net.ParseIP("10.1.0.5")}, &Isolation{Bridge: "br0", SameBridge: sameBridge}); err != nil {
				return err
			}
			if err := c.Flush(); err != nil {
				t.Fatalf("same-bridge %v: %v", sameBridge, err)
			}
			isolating, same, err := c.IsolationOf("br0")
			if err != nil || !isolating || same != sameBridge {
				t.Fatalf("after ADD with same-bridge %v: isolating %v, same-bridge %v, %v", sameBridge, isolating, same, err)
			}
		}
		return nil
	})
}

func TestFirewallAdminChainSurvivesADD(t *testing.T) {
	ns := nstest.New(t)
	a := Attachment{Network: "net1", ContainerID: "c1", IfName: "eth0"}
	add := func() {
		withConn(t, ns, func(c *Conn) error {
			if err := c.AddFirewall(a, []net.IP{net.ParseIP("10.1.0.5")}, nil); err != nil {
				return err
			}
			return c.Flush()
		})
	}
	add()
	ns.MustRun("nft", "add", "rule", "inet", "cnikit", "forward-admin", "ip", "daddr", "192.0.2.1", "drop")
	add()
	if out := ns.MustRun("nft", "list", "chain", "inet", "cnikit", "forward-admin"); !strings.Contains(out, "192.0.2.1 drop") {
		t.Errorf("the administrator's rule is gone after ADD:\n%s", out)
	}
}
