package nft

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/nstest"
)

func masqOnly(a Attachment, addrs ...net.IPNet) AttachmentRules {
	return AttachmentRules{Attachment: a, Features: Features{Masquerade: true}, Addrs: addrs}
}

func TestMasqueradeAttachmentLifecycle(t *testing.T) {
	ns := nstest.New(t)
	a := Attachment{Network: "net1", ContainerID: "c1", IfName: "eth0"}
	b := Attachment{Network: "net1", ContainerID: "c2", IfName: "eth0"}
	other := Attachment{Network: "net2", ContainerID: "c3", IfName: "eth0"}
	count := func(c *Conn, att Attachment) int {
		t.Helper()
		elems, err := c.findMasquerade(att)
		if err != nil {
			t.Fatal(err)
		}
		return len(elems)
	}
	withConn(t, ns, func(c *Conn) error {
		steps := []struct {
			name string
			run  func() error
			want map[Attachment]int
		}{
			{"set A", func() error {
				return c.SetAttachmentRules(masqOnly(a, mustCIDR(t, "10.1.0.5/24"), mustCIDR(t, "fd00:1::5/64")))
			}, map[Attachment]int{a: 2}},
			{"set A again", func() error {
				return c.SetAttachmentRules(masqOnly(a, mustCIDR(t, "10.1.0.5/24"), mustCIDR(t, "fd00:1::5/64")))
			}, map[Attachment]int{a: 2}},
			{"set B on A's address in another subnet (a leaked A)", func() error {
				return c.SetAttachmentRules(masqOnly(b, mustCIDR(t, "10.1.0.5/16")))
			}, map[Attachment]int{a: 1, b: 1}},
			{"set other network", func() error {
				return c.SetAttachmentRules(masqOnly(other, mustCIDR(t, "10.2.0.5/24")))
			}, map[Attachment]int{a: 1, b: 1, other: 1}},
			{"clear A by key, one key already gone", func() error {
				return c.ClearAttachmentRules(masqOnly(a, mustCIDR(t, "10.1.0.99/24"), mustCIDR(t, "fd00:1::5/64")))
			}, map[Attachment]int{a: 0, b: 1, other: 1}},
			{"clear A again without keys", func() error { return c.ClearAttachmentRules(masqOnly(a)) }, map[Attachment]int{a: 0, b: 1, other: 1}},
			{"clear B by key", func() error {
				return c.ClearAttachmentRules(masqOnly(b, mustCIDR(t, "10.1.0.5/16")))
			}, map[Attachment]int{b: 0, other: 1}},
			{"set A and B", func() error {
				if err := c.SetAttachmentRules(masqOnly(a, mustCIDR(t, "10.1.0.5/24"))); err != nil {
					return err
				}
				return c.SetAttachmentRules(masqOnly(b, mustCIDR(t, "10.1.0.6/24")))
			}, map[Attachment]int{a: 1, b: 1, other: 1}},
			{"collect net1 keeping B", func() error {
				return c.CollectAttachmentRules("net1", NewKeepSet("net1", []Attachment{{ContainerID: "c2", IfName: "eth0"}}), Features{Masquerade: true})
			}, map[Attachment]int{a: 0, b: 1, other: 1}},
		}
		for _, s := range steps {
			if err := s.run(); err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
			for att, want := range s.want {
				if got := count(c, att); got != want {
					t.Errorf("%s: %s has %d elements, want %d", s.name, att.ContainerID, got, want)
				}
			}
		}
		return nil
	})
}

// bothRules is an attachment with masquerade and a MAC spoof check.
func bothRules(t testing.TB, id, port, mac string, addrs ...string) AttachmentRules {
	t.Helper()
	r := AttachmentRules{Attachment: Attachment{Network: "net1", ContainerID: id, IfName: "eth0"},
		Features: Features{Masquerade: true, MacSpoof: true}, Port: port}
	for _, a := range addrs {
		r.Addrs = append(r.Addrs, mustCIDR(t, a))
	}
	var err error
	if r.MAC, err = net.ParseMAC(mac); err != nil {
		t.Fatal(err)
	}
	return r
}

// handles lists a chain's rules with their handles: the same output means
// the rules were not rewritten.
func handles(t *testing.T, ns *nstest.NS, family, chain string) string {
	t.Helper()
	return ns.MustRun("nft", "-a", "list", "chain", family, TableName, chain)
}

// TestSetAttachmentRulesSendsEntries: once the programs are in place, an
// ADD leaves the base chains and an existing subnet chain as they are, and
// brings a missing subnet chain.
func TestSetAttachmentRulesSendsEntries(t *testing.T) {
	ns := nstest.New(t)
	first := bothRules(t, "c1", "vethaaaa", "02:00:00:00:00:01", "10.1.0.5/24", "fd00:1::5/64")
	second := bothRules(t, "c2", "vethbbbb", "02:00:00:00:00:02", "10.1.0.6/24", "fd00:1::6/64")
	third := bothRules(t, "c3", "vethcccc", "02:00:00:00:00:03", "10.3.0.6/24")
	set := func(r AttachmentRules) {
		t.Helper()
		withConn(t, ns, func(c *Conn) error { return c.SetAttachmentRules(r) })
	}
	set(first)
	subnet := SubnetChain("net1", &net.IPNet{IP: net.IPv4(10, 1, 0, 0).To4(), Mask: net.CIDRMask(24, 32)})
	before := []string{handles(t, ns, "inet", MasqueradeChain), handles(t, ns, "inet", subnet), handles(t, ns, "bridge", MacSpoofChain)}
	set(second)
	set(third)
	after := []string{handles(t, ns, "inet", MasqueradeChain), handles(t, ns, "inet", subnet), handles(t, ns, "bridge", MacSpoofChain)}
	for i := range before {
		if before[i] != after[i] {
			t.Errorf("rewritten by a later ADD:\n%s\nnow:\n%s", before[i], after[i])
		}
	}
	out := ns.MustRun("nft", "list", "ruleset")
	for _, want := range []string{"ip daddr != 10.3.0.0/24 masquerade", `"vethcccc" comment`, "ether saddr 02:00:00:00:00:03 return"} {
		if !strings.Contains(out, want) {
			t.Errorf("ruleset lacks %q:\n%s", want, out)
		}
	}
	withConn(t, ns, func(c *Conn) error {
		for _, r := range []AttachmentRules{first, second, third} {
			if err := c.CheckAttachmentRules(r); err != nil {
				t.Errorf("CHECK %s: %v", r.ContainerID, err)
			}
		}
		return nil
	})
}

// TestSetAttachmentRulesRecovers: an ADD succeeds whatever part of the
// programs is missing, and a MAC spoof element of a leaked attachment with
// the same host port name is taken over.
func TestSetAttachmentRulesRecovers(t *testing.T) {
	r := bothRules(t, "c1", "vethaaaa", "02:00:00:00:00:01", "10.1.0.5/24")
	leaked := bothRules(t, "leaked", "vethaaaa", "02:00:00:00:00:09", "10.1.0.9/24")
	for _, tc := range []struct {
		name    string
		prepare func(t *testing.T, ns *nstest.NS, c *Conn) error
	}{
		{"nothing there", func(t *testing.T, ns *nstest.NS, c *Conn) error { return nil }},
		{"other tables only", func(t *testing.T, ns *nstest.NS, c *Conn) error {
			ns.MustRun("nft", "add table inet cnikit; add table bridge cnikit")
			return nil
		}},
		{"masquerade program only", func(t *testing.T, ns *nstest.NS, c *Conn) error {
			return c.SetAttachmentRules(masqOnly(Attachment{Network: "net1", ContainerID: "x", IfName: "eth0"}, mustCIDR(t, "10.2.0.2/24")))
		}},
		{"leaked MAC spoof element on the same port", func(t *testing.T, ns *nstest.NS, c *Conn) error {
			return c.SetAttachmentRules(leaked)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := nstest.New(t)
			withConn(t, ns, func(c *Conn) error {
				if err := tc.prepare(t, ns, c); err != nil {
					return err
				}
				if err := c.SetAttachmentRules(r); err != nil {
					t.Fatalf("ADD: %v", err)
				}
				if err := c.CheckAttachmentRules(r); err != nil {
					t.Errorf("CHECK: %v", err)
				}
				return nil
			})
		})
	}
}

// TestCheckAndCollectAttachmentRules: CHECK names each kind of damage, and
// GC repairs the programs so that CHECK passes again.
func TestCheckAndCollectAttachmentRules(t *testing.T) {
	r := bothRules(t, "c1", "vethaaaa", "02:00:00:00:00:01", "10.1.0.5/24", "fd00:1::5/64")
	subnet := SubnetChain("net1", &net.IPNet{IP: net.IPv4(10, 1, 0, 0).To4(), Mask: net.CIDRMask(24, 32)})
	spoofChain := MacSpoofChainName(r.Attachment)
	keep := NewKeepSet("net1", []Attachment{r.Attachment})
	cases := []struct {
		name     string
		damage   string // nft commands
		msg      string
		repaired bool // by GC
	}{
		{"base chain flushed", "flush chain inet cnikit postrouting", "inet cnikit postrouting is missing or was changed (GC restores it)", true},
		{"base chain deleted", "delete chain inet cnikit postrouting", "inet cnikit postrouting is missing or was changed", true},
		{"subnet chain flushed", "flush chain inet cnikit " + subnet, "does not masquerade what leaves 10.1.0.0/24", true},
		{"table flushed", "flush table inet cnikit", "inet cnikit postrouting is missing or was changed", true},
		{"masquerade element deleted", "delete element inet cnikit masq6 { fd00:1::5 }", "no masquerade for fd00:1::5 in nftables map inet cnikit masq6", false},
		{"masquerade element of another attachment", `delete element inet cnikit masq4 { 10.1.0.5 }; add element inet cnikit masq4 { 10.1.0.5 comment "someone else" : jump ` + subnet + " }",
			`belongs to another attachment ("someone else")`, false},
		{"MAC spoof base chain flushed", "flush chain bridge cnikit prerouting", "bridge cnikit prerouting is missing or was changed (GC restores it)", true},
		{"MAC spoof element deleted", `delete element bridge cnikit macspoof { "vethaaaa" }`, "no MAC spoof check for c1/eth0", false},
		{"MAC spoof chain changed", "flush chain bridge cnikit " + spoofChain + "; add rule bridge cnikit " + spoofChain + " ether saddr 02:00:00:00:00:66 return; add rule bridge cnikit " + spoofChain + " drop",
			"does not let exactly MAC 02:00:00:00:00:01 through", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ns := nstest.New(t)
			withConn(t, ns, func(c *Conn) error { return c.SetAttachmentRules(r) })
			ns.MustRun("nft", tc.damage)
			withConn(t, ns, func(c *Conn) error {
				err := c.CheckAttachmentRules(r)
				if err == nil || !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("CHECK after damage: %v, want an error containing %q", err, tc.msg)
				}
				if err := c.CollectAttachmentRules("net1", keep, r.Features); err != nil {
					t.Fatalf("GC: %v", err)
				}
				err = c.CheckAttachmentRules(r)
				if tc.repaired && err != nil {
					t.Errorf("CHECK after GC: %v", err)
				}
				if !tc.repaired && err == nil {
					t.Errorf("CHECK after GC passes: GC cannot have restored that")
				}
				return nil
			})
		})
	}
}

// TestClearAttachmentRules: DEL removes everything of the attachment, by key
// or by comment, whatever is already gone, and nothing of another.
func TestClearAttachmentRules(t *testing.T) {
	r := bothRules(t, "c1", "vethaaaa", "02:00:00:00:00:01", "10.1.0.5/24", "fd00:1::5/64")
	other := bothRules(t, "c2", "vethbbbb", "02:00:00:00:00:02", "10.1.0.6/24")
	withoutKeys := r
	withoutKeys.Addrs, withoutKeys.Port, withoutKeys.MAC = nil, "", nil
	for _, tc := range []struct {
		name   string
		damage string
		clear  AttachmentRules
	}{
		{"by key", "", r},
		{"by comment", "", withoutKeys},
		{"by key, an address gone", "delete element inet cnikit masq4 { 10.1.0.5 }", r},
		{"by key, the MAC spoof element gone", `delete element bridge cnikit macspoof { "vethaaaa" }`, r},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := nstest.New(t)
			withConn(t, ns, func(c *Conn) error {
				if err := c.SetAttachmentRules(r); err != nil {
					return err
				}
				return c.SetAttachmentRules(other)
			})
			if tc.damage != "" {
				ns.MustRun("nft", tc.damage)
			}
			withConn(t, ns, func(c *Conn) error {
				for i := range 2 {
					if err := c.ClearAttachmentRules(tc.clear); err != nil {
						t.Fatalf("DEL %d: %v", i+1, err)
					}
				}
				return c.CheckAttachmentRules(other)
			})
			out := ns.MustRun("nft", "list", "ruleset")
			if strings.Contains(out, "id: c1") || strings.Contains(out, MacSpoofChainName(r.Attachment)) {
				t.Errorf("objects of c1 left:\n%s", out)
			}
		})
	}
}

// TestConcurrentAttachmentRules runs ADD, CHECK and DEL of many attachments
// at once in one namespace, each on its own thread as plugins run
// in-process, from an empty ruleset so that several create the programs at
// the same time. Under -race it catches shared state written per call.
func TestConcurrentAttachmentRules(t *testing.T) {
	ns := nstest.New(t)
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		r := bothRules(t, fmt.Sprint("c", i), fmt.Sprintf("veth%04d", i), fmt.Sprintf("02:00:00:00:00:%02x", i+1),
			fmt.Sprintf("10.%d.0.%d/24", i%2+1, i+2), fmt.Sprintf("fd00:%d::5/64", i+1))
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- ns.NS.Do(func() error {
				c, err := Open()
				if err != nil {
					return err
				}
				defer c.Close()
				for _, step := range []func(AttachmentRules) error{c.SetAttachmentRules, c.CheckAttachmentRules, c.ClearAttachmentRules} {
					if err := step(r); err != nil {
						return fmt.Errorf("%s: %w", r.ContainerID, err)
					}
				}
				return c.SetAttachmentRules(r)
			})
		}()
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	if err := errors.Join(all...); err != nil {
		t.Fatal(err)
	}
	out := ns.MustRun("nft", "list", "ruleset")
	if got := len(regexp.MustCompile(`chain spoof-`).FindAllString(out, -1)); got != n {
		t.Errorf("%d MAC spoof chains, want %d:\n%s", got, n, out)
	}
	withConn(t, ns, func(c *Conn) error {
		masq, err := c.ListMasquerade()
		if len(masq) != 2*n {
			t.Errorf("%d masquerade elements, want %d", len(masq), 2*n)
		}
		return err
	})
}

func TestKeepSetStale(t *testing.T) {
	keep := NewKeepSet("net1", []Attachment{{ContainerID: "c1", IfName: "eth0"}})
	kept := Attachment{Network: "net1", ContainerID: "c1", IfName: "eth0"}
	gone := Attachment{Network: "net1", ContainerID: "c2", IfName: "eth0"}
	otherNet := Attachment{Network: "net2", ContainerID: "c2", IfName: "eth0"}
	for _, tc := range []struct {
		name string
		key  string
		want bool
	}{
		{"kept key", kept.Key(), false},
		{"kept comment", kept.Comment(), false},
		{"gone key", gone.Key(), true},
		{"gone comment", gone.Comment(), true},
		{"other network", otherNet.Key(), false},
		{"too short", NetworkKey("net1") + "-abc", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := keep.Stale("net1", tc.key); got != tc.want {
				t.Errorf("Stale(%q) = %v, want %v", tc.key, got, tc.want)
			}
		})
	}
}

// TestKeepValid: a GC request keeps the attachments it lists, under either
// name of the list, in its own network only.
func TestKeepValid(t *testing.T) {
	listed := []cni.GCAttachment{{ContainerID: "c1", IfName: "eth0"}}
	kept := Attachment{Network: "net1", ContainerID: "c1", IfName: "eth0"}
	gone := Attachment{Network: "net1", ContainerID: "c1", IfName: "eth1"}
	for _, tc := range []struct {
		name string
		conf cni.PluginConf
	}{
		{"cni.dev/valid-attachments", cni.PluginConf{Name: "net1", ValidAttachments: listed}},
		{"cni.dev/attachments", cni.PluginConf{Name: "net1", LegacyAttachments: listed}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keep := KeepValid(&tc.conf)
			if keep.Stale("net1", kept.Key()) || !keep.Stale("net1", gone.Key()) || len(keep) != 1 {
				t.Errorf("KeepValid = %v: keeps %s %v, keeps %s %v", keep, kept.Key(), !keep.Stale("net1", kept.Key()), gone.Key(), !keep.Stale("net1", gone.Key()))
			}
		})
	}
}

// BenchmarkAttachmentRules measures the nftables work of an ADD (set) and
// of a DEL by key (clear), with the programs in place, next to a number of
// existing attachments: the masquerade of one address (ptp), and that of an
// IPv4 and an IPv6 address with the MAC spoof check (a dual-stack bridge).
func BenchmarkAttachmentRules(b *testing.B) {
	for _, existing := range []int{0, 1000} {
		ns := nstest.New(b)
		withConn(b, ns, func(c *Conn) error {
			for i := range existing {
				r := bothRules(b, fmt.Sprint("e", i), fmt.Sprintf("veth%05d", i), "02:00:00:00:00:01",
					fmt.Sprintf("10.1.%d.%d/16", i/250, i%250+2), fmt.Sprintf("fd00:1::1:%x/64", i))
				if err := c.SetAttachmentRules(r); err != nil {
					return err
				}
			}
			return nil
		})
		for _, bc := range []struct {
			name  string
			rules AttachmentRules
		}{
			{"ipMasq", masqOnly(Attachment{Network: "net1", ContainerID: "bench", IfName: "eth0"}, mustCIDR(b, "10.1.200.1/16"))},
			{"dual-stack+ipMasq+macspoofchk", bothRules(b, "bench", "vethbench", "02:00:00:00:00:02", "10.1.200.1/16", "fd00:1::200:1/64")},
		} {
			// A first set brings the subnet chains, as earlier containers of
			// the subnet did.
			withConn(b, ns, func(c *Conn) error {
				if err := c.SetAttachmentRules(bc.rules); err != nil {
					return err
				}
				return c.ClearAttachmentRules(bc.rules)
			})
			for _, verb := range []string{"set", "clear"} {
				b.Run(fmt.Sprintf("%s/%s/existing=%d", verb, bc.name, existing), func(b *testing.B) {
					withConn(b, ns, func(c *Conn) error {
						set, clear := c.SetAttachmentRules, c.ClearAttachmentRules
						for b.Loop() {
							if verb == "clear" {
								b.StopTimer()
							}
							if err := set(bc.rules); err != nil {
								return err
							}
							b.StopTimer()
							if verb == "clear" {
								b.StartTimer()
							}
							if err := clear(bc.rules); err != nil {
								return err
							}
							b.StartTimer()
						}
						return nil
					})
				})
			}
		}
	}
}
