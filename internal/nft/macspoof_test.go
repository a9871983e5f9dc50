package nft

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cnikit/cnikit/internal/nstest"
)

func TestMacSpoofLifecycle(t *testing.T) {
	ns := nstest.New(t)
	a := Attachment{Network: "net1", ContainerID: "c1", IfName: "eth0"}
	b := Attachment{Network: "net1", ContainerID: "c2", IfName: "eth0"}
	mac, _ := net.ParseMAC("02:00:00:00:00:01")
	withConn(t, ns, func(c *Conn) error {
		for _, x := range []struct {
			a    Attachment
			port string
		}{{a, "vethaaaa"}, {b, "vethbbbb"}} {
			if err := c.queueMacSpoofProgram(false); err != nil {
				return err
			}
			if err := c.queueMacSpoofEntries(x.a, x.port, mac, false); err != nil {
				return err
			}
			if err := c.Flush(); err != nil {
				t.Fatalf("adding %s: %v", x.port, err)
			}
		}
		return nil
	})
	out := ns.MustRun("nft", "list", "table", "bridge", "cnikit")
	for _, want := range []string{`iifname vmap @macspoof`, `"vethaaaa" comment`, "ether saddr 02:00:00:00:00:01 return", "drop", "priority dstnat"} {
		if !strings.Contains(out, want) {
			t.Errorf("ruleset lacks %q:\n%s", want, out)
		}
	}
	withConn(t, ns, func(c *Conn) error {
		if err := c.delMacSpoof(a, "vethaaaa"); err != nil {
			return err
		}
		if err := c.Flush(); err != nil {
			t.Fatalf("delMacSpoof: %v", err)
		}
		if err := c.delMacSpoof(a, "vethaaaa"); err != nil {
			return err
		}
		if err := c.Flush(); !IsNotFound(err) {
			t.Fatalf("second delMacSpoof: got %v, want not found", err)
		}
		if n, err := c.delMacSpoofOf(a); err != nil || n != 0 {
			t.Fatalf("delMacSpoofOf after delete: %d, %v", n, err)
		}
		n, err := c.gcMacSpoof("net1", NewKeepSet("net1", nil))
		if err != nil || n != 1 {
			t.Fatalf("GC: %d, %v; want 1 stale", n, err)
		}
		return c.Flush()
	})
	out = ns.MustRun("nft", "list", "table", "bridge", "cnikit")
	if strings.Contains(out, "veth") || strings.Contains(out, "chain spoof-") {
		t.Errorf("objects left after DEL and GC:\n%s", out)
	}
}

func TestReferenceMasqueradeCleanup(t *testing.T) {
	ns := nstest.New(t)
	a := Attachment{Network: "net1", ContainerID: "c1", IfName: "eth0"}
	b := Attachment{Network: "net1", ContainerID: "c2", IfName: "eth0"}
	other := Attachment{Network: "net2", ContainerID: "c3", IfName: "eth0"}
	ruleset := "add table inet cni_plugins_masquerade\nadd chain inet cni_plugins_masquerade masq_checks\n"
	for i, x := range []Attachment{a, b, other} {
		ruleset += "add rule inet cni_plugins_masquerade masq_checks ip saddr 10.0.0." + string(rune('1'+i)) +
			" ip daddr != 10.0.0.0/24 masquerade comment \"" + x.Comment() + "\"\n"
	}
	file := filepath.Join(t.TempDir(), "ruleset.nft")
	if err := os.WriteFile(file, []byte(ruleset), 0o600); err != nil {
		t.Fatal(err)
	}
	ns.MustRun("nft", "-f", file)
	withConn(t, ns, func(c *Conn) error {
		if n, err := c.DelReferenceMasquerade(a); err != nil || n != 1 {
			t.Fatalf("DelReferenceMasquerade: %d, %v", n, err)
		}
		if err := c.Flush(); err != nil {
			return err
		}
		if n, err := c.GCReferenceMasquerade("net1", NewKeepSet("net1", nil)); err != nil || n != 1 {
			t.Fatalf("GCReferenceMasquerade: %d, %v", n, err)
		}
		return c.Flush()
	})
	out := ns.MustRun("nft", "list", "chain", "inet", "cni_plugins_masquerade", "masq_checks")
	if strings.Contains(out, "10.0.0.1") || strings.Contains(out, "10.0.0.2") || !strings.Contains(out, "10.0.0.3") {
		t.Errorf("want only net2's rule left:\n%s", out)
	}
	// Without the reference table, nothing is found and nothing fails.
	withConn(t, nstest.New(t), func(c *Conn) error {
		if n, err := c.DelReferenceMasquerade(a); err != nil || n != 0 {
			t.Fatalf("without the table: %d, %v", n, err)
		}
		return nil
	})
}
