package nft

import (
	"net"
	"testing"

	"github.com/cnikit/cnikit/internal/nstest"
)

func TestMasqueradeAttachmentLifecycle(t *testing.T) {
	ns := nstest.New(t)
	a := Attachment{Network: "net1", ContainerID: "c1", IfName: "eth0"}
	b := Attachment{Network: "net1", ContainerID: "c2", IfName: "eth0"}
	other := Attachment{Network: "net2", ContainerID: "c3", IfName: "eth0"}
	count := func(c *Conn, att Attachment) int {
		t.Helper()
		elems, err := c.FindMasquerade(att)
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
				return c.SetMasquerade(a, []net.IPNet{mustCIDR(t, "10.1.0.5/24"), mustCIDR(t, "fd00:1::5/64")})
			}, map[Attachment]int{a: 2}},
			{"set A again", func() error {
				return c.SetMasquerade(a, []net.IPNet{mustCIDR(t, "10.1.0.5/24"), mustCIDR(t, "fd00:1::5/64")})
			}, map[Attachment]int{a: 2}},
			{"set B on A's address in another subnet (a clash)", func() error {
				return c.SetMasquerade(b, []net.IPNet{mustCIDR(t, "10.1.0.5/16")})
			}, map[Attachment]int{a: 1, b: 1}},
			{"set other network", func() error {
				return c.SetMasquerade(other, []net.IPNet{mustCIDR(t, "10.2.0.5/24")})
			}, map[Attachment]int{a: 1, b: 1, other: 1}},
			{"clear A by key, one key already gone", func() error {
				return c.ClearMasquerade(a, []net.IP{net.ParseIP("10.1.0.99"), net.ParseIP("fd00:1::5")})
			}, map[Attachment]int{a: 0, b: 1, other: 1}},
			{"clear A again without keys", func() error { return c.ClearMasquerade(a, nil) }, map[Attachment]int{a: 0, b: 1, other: 1}},
			{"clear B by key", func() error { return c.ClearMasquerade(b, []net.IP{net.ParseIP("10.1.0.5")}) }, map[Attachment]int{b: 0, other: 1}},
			{"set A and B", func() error {
				if err := c.SetMasquerade(a, []net.IPNet{mustCIDR(t, "10.1.0.5/24")}); err != nil {
					return err
				}
				return c.SetMasquerade(b, []net.IPNet{mustCIDR(t, "10.1.0.6/24")})
			}, map[Attachment]int{a: 1, b: 1, other: 1}},
			{"collect net1 keeping B", func() error {
				return c.CollectMasquerade("net1", NewKeepSet("net1", []Attachment{{ContainerID: "c2", IfName: "eth0"}}))
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
