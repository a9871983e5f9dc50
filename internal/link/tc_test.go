package link

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/cnikit/cnikit/internal/nstest"
)

func TestNewTBF(t *testing.T) {
	tick := netlink.TickInUsec()
	cases := []struct {
		name              string
		rateBits, burst   uint64
		wantRate          uint64
		wantLimit         uint32
		wantBufferUsec    float64
		wantErrContaining string
	}{
		// 1 Mbit/s = 125000 B/s; 80000 bits = 10000 B take 80 ms; limit
		// is 25 ms of rate (3125 B) plus the burst.
		{name: "1 Mbit", rateBits: 1_000_000, burst: 80_000, wantRate: 125000, wantLimit: 13125, wantBufferUsec: 80000},
		{name: "bits truncated to bytes", rateBits: 1_000_007, burst: 80_007, wantRate: 125000, wantLimit: 13125, wantBufferUsec: 80000},
		{name: "rate below a byte", rateBits: 7, burst: 800, wantErrContaining: "rate 7 bit/s"},
		{name: "burst below a byte", rateBits: 800, burst: 7, wantErrContaining: "burst 7 bits"},
		{name: "burst of 4 GiB", rateBits: 1 << 40, burst: 8 * math.MaxUint32, wantErrContaining: "4 GiB"},
		{name: "burst too slow to drain", rateBits: 8000, burst: 8 * 1_000_000, wantErrContaining: "takes 1000 s"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := NewTBF(tc.rateBits, tc.burst)
			if tc.wantErrContaining != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErrContaining) {
					t.Fatalf("NewTBF: %v, want an error containing %q", err, tc.wantErrContaining)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := TBF{Rate: tc.wantRate, Limit: tc.wantLimit, Buffer: uint32(tc.wantBufferUsec * tick)}
			if got != want {
				t.Errorf("NewTBF = %+v, want %+v", got, want)
			}
		})
	}
}

// TestTrafficControl sets up what the bandwidth plugin does on a veth in a
// throw-away namespace and reads it back through the targeted queries.
func TestTrafficControl(t *testing.T) {
	ns := nstest.New(t)
	ns.MustRun("ip", "link", "add", "veth0", "type", "veth", "peer", "name", "veth1")
	ns.Do(func() error {
		veth, err := netlink.LinkByName("veth0")
		if err != nil {
			return err
		}
		index := veth.Attrs().Index
		if _, err := RootTBF(index); !errors.Is(err, ErrNoTBF) {
			t.Errorf("RootTBF of a fresh veth: %v, want ErrNoTBF", err)
		}
		tbf, err := NewTBF(16_000_000, 1_000_000)
		if err != nil {
			return err
		}
		for i := 0; i < 2; i++ { // the second call changes it in place
			if err := SetRootTBF(index, tbf); err != nil {
				t.Fatal(err)
			}
		}
		if got, err := RootTBF(index); err != nil || got != tbf {
			t.Errorf("RootTBF = %+v, %v, want %+v", got, err, tbf)
		}
		big, _ := NewTBF(80_000_000_000, 8_000_000)
		if err := SetRootTBF(index, big); err != nil {
			t.Fatal(err)
		}
		if got, err := RootTBF(index); err != nil || got != big {
			t.Errorf("RootTBF with a 64-bit rate = %+v, %v, want %+v", got, err, big)
		}

		ifb, err := CreateIFB("ifbtest", 1400, "cnikit test alias")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := CreateIFB("ifbtest", 1400, ""); !errors.Is(err, ErrExists) {
			t.Errorf("second CreateIFB: %v, want ErrExists", err)
		}
		if _, ok := ifb.(*netlink.Ifb); !ok || len(ifb.Attrs().HardwareAddr) != 6 {
			t.Errorf("CreateIFB returned %#v", ifb)
		}
		l, err := netlink.LinkByIndex(ifb.Attrs().Index)
		if err != nil {
			return err
		}
		if a := l.Attrs(); a.Name != "ifbtest" || a.MTU != 1400 || a.Alias != "cnikit test alias" || a.Flags&1 == 0 || a.TxQLen == 0 {
			t.Errorf("ifb: name %q MTU %d alias %q flags %v txqlen %d", a.Name, a.MTU, a.Alias, a.Flags, a.TxQLen)
		}
		for i := 0; i < 2; i++ { // a repeated call leaves one filter
			if err := RedirectIngress(index, ifb.Attrs().Index); err != nil {
				t.Fatal(err)
			}
		}
		if target, err := IngressRedirectTarget(index); err != nil || target != ifb.Attrs().Index {
			t.Errorf("IngressRedirectTarget = %d, %v, want %d", target, err, ifb.Attrs().Index)
		}
		out := ns.MustRun("tc", "filter", "show", "dev", "veth0", "ingress")
		if n := strings.Count(out, "mirred"); n != 1 || !strings.Contains(out, "Redirect to device ifbtest") {
			t.Errorf("%d mirred actions in\n%s", n, out)
		}
		ifbs, err := IFBs()
		if err != nil || len(ifbs) != 1 || ifbs[0].Name != "ifbtest" {
			t.Errorf("IFBs = %v, %v", ifbs, err)
		}

		for i := 0; i < 2; i++ { // deleting what is gone is fine
			if err := DeleteIngress(index); err != nil {
				t.Error(err)
			}
			if err := DeleteRootTBF(index); err != nil {
				t.Error(err)
			}
			if err := DeleteNamed("ifbtest"); err != nil {
				t.Error(err)
			}
		}
		if _, err := RootTBF(index); !errors.Is(err, ErrNoTBF) {
			t.Errorf("RootTBF after delete: %v", err)
		}
		if target, err := IngressRedirectTarget(index); err == nil && target != 0 {
			t.Errorf("IngressRedirectTarget after delete = %d", target)
		}
		if _, err := netlink.LinkByName("ifbtest"); err == nil {
			t.Error("ifb still exists")
		}
		return nil
	})
	if out := ns.MustRun("tc", "qdisc", "show", "dev", "veth0"); strings.Contains(out, "tbf") || strings.Contains(out, "ingress") {
		t.Errorf("qdiscs left:\n%s", out)
	}
}

func TestDeleteRootTBFLeavesOtherQdiscs(t *testing.T) {
	ns := nstest.New(t)
	ns.MustRun("ip", "link", "add", "veth0", "type", "veth", "peer", "name", "veth1")
	ns.MustRun("tc", "qdisc", "add", "dev", "veth0", "root", "handle", "1:", "htb")
	ns.Do(func() error {
		l, err := netlink.LinkByName("veth0")
		if err != nil {
			return err
		}
		if _, err := RootTBF(l.Attrs().Index); !errors.Is(err, ErrNoTBF) {
			t.Errorf("RootTBF on htb: %v, want ErrNoTBF", err)
		}
		return DeleteRootTBF(l.Attrs().Index)
	})
	if out := ns.MustRun("tc", "qdisc", "show", "dev", "veth0"); !strings.Contains(out, "htb 1:") {
		t.Errorf("htb root qdisc was removed:\n%s", out)
	}
}

func TestSetAttributes(t *testing.T) {
	ns := nstest.New(t)
	ns.MustRun("ip", "link", "add", "veth0", "type", "veth", "peer", "name", "veth1")
	ns.Do(func() error {
		l, err := netlink.LinkByName("veth0")
		if err != nil {
			return err
		}
		before := AttributesOf(l)
		on, txq, alias := true, 77, "hello"
		want := Attributes{MAC: []byte{0x02, 0, 0, 0, 0, 0x42}, MTU: 1280, TxQLen: &txq, Promisc: &on, Allmulti: &on, Alias: &alias}
		if err := SetAttributes(l.Attrs().Index, want); err != nil {
			t.Fatal(err)
		}
		l, _ = netlink.LinkByIndex(l.Attrs().Index)
		got := AttributesOf(l)
		if got.MAC.String() != want.MAC.String() || got.MTU != 1280 || *got.TxQLen != 77 || !*got.Promisc || !*got.Allmulti || *got.Alias != "hello" {
			t.Errorf("after SetAttributes: %+v", got)
		}
		if err := SetAttributes(l.Attrs().Index, before); err != nil {
			t.Fatal(err)
		}
		l, _ = netlink.LinkByIndex(l.Attrs().Index)
		got = AttributesOf(l)
		if got.MAC.String() != before.MAC.String() || got.MTU != before.MTU || *got.TxQLen != *before.TxQLen ||
			*got.Promisc || *got.Allmulti || *got.Alias != "" {
			t.Errorf("after restoring: %+v, want %+v", got, before)
		}
		if err := SetAttributes(l.Attrs().Index, Attributes{MTU: 100000}); err == nil {
			t.Error("an MTU of 100000 was accepted")
		}
		return nil
	})
}
