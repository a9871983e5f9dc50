package link

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/cnikit/cnikit/internal/nstest"
)

func TestSysctlPath(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"slashes", "net/ipv6/conf/eth0.100/accept_ra", "/proc/sys/net/ipv6/conf/eth0.100/accept_ra"},
		{"dots", "net.ipv4.ip_forward", "/proc/sys/net/ipv4/ip_forward"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := sysctlPath(tc.in); got != tc.want {
				t.Errorf("sysctlPath(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestBridgeVethAndAddresses(t *testing.T) {
	host, cont := nstest.New(t), nstest.New(t)
	host.Do(func() error {
		h, err := netlink.NewHandle()
		if err != nil {
			return err
		}
		defer h.Close()
		br, created, err := EnsureBridge(h, BridgeOptions{Name: "br0", MTU: 1450})
		if err != nil || !created {
			t.Fatalf("EnsureBridge: created %v, %v", created, err)
		}
		if br.MTU != 1450 || br.Flags&net.FlagUp == 0 {
			t.Errorf("bridge MTU %d flags %v", br.MTU, br.Flags)
		}
		if again, createdAgain, err := EnsureBridge(h, BridgeOptions{Name: "br0", MTU: 9000}); err != nil || again.MTU != 1450 || createdAgain {
			t.Errorf("second EnsureBridge: %v, MTU %d, created %v (an existing bridge keeps its MTU and is not re-created)", err, again.MTU, createdAgain)
		}

		opts := VethOptions{ContainerNS: cont.Fd(), ContainerName: "eth0", MTU: 1450}
		has := func(string) bool { return true }
		veth, err := CreateVeth(h, has, opts)
		if err != nil {
			t.Fatalf("CreateVeth: %v", err)
		}
		if !strings.HasPrefix(veth.Name, "veth") || len(veth.Name) != 12 || veth.MTU != 1450 {
			t.Errorf("host end %q MTU %d", veth.Name, veth.MTU)
		}
		if _, err := CreateVeth(h, has, opts); !errors.Is(err, ErrExists) {
			t.Errorf("second CreateVeth with the same container name: %v, want ErrExists", err)
		}
		if _, _, err := EnsureBridge(h, BridgeOptions{Name: veth.Name}); !errors.Is(err, ErrNotBridge) {
			t.Errorf("EnsureBridge on a veth: %v, want ErrNotBridge", err)
		}
		if err := AttachPort(veth.Index, br.Index); err != nil {
			t.Fatal(err)
		}
		// The container end is down: the host end cannot be up.
		if _, err := WaitOperUp(h, veth.Index, 20*time.Millisecond); err == nil || !strings.Contains(err.Error(), "not up") {
			t.Errorf("WaitOperUp with the peer down: %v", err)
		}

		gw := &net.IPNet{IP: net.ParseIP("10.20.0.1").To4(), Mask: net.CIDRMask(24, 32)}
		other := &net.IPNet{IP: net.ParseIP("10.21.0.1").To4(), Mask: net.CIDRMask(24, 32)}
		v6a := &net.IPNet{IP: net.ParseIP("fd20::1"), Mask: net.CIDRMask(64, 128)}
		v6b := &net.IPNet{IP: net.ParseIP("fd21::1"), Mask: net.CIDRMask(64, 128)}
		steps := []struct {
			name    string
			addr    *net.IPNet
			force   bool
			wantErr error
		}{
			{"first", gw, false, nil},
			{"same again", gw, false, nil},
			{"other IPv4", other, false, ErrAddressConflict},
			{"other IPv4 forced", other, true, nil},
			{"IPv6", v6a, false, nil},
			{"distinct IPv6 subnet", v6b, false, nil},
		}
		for _, s := range steps {
			if err := EnsureGatewayAddress(h, br, s.addr, s.force); !errors.Is(err, s.wantErr) {
				t.Errorf("%s: %v, want %v", s.name, err, s.wantErr)
			}
		}
		addrs, _ := h.AddrList(br, netlink.FAMILY_V4)
		if len(addrs) != 1 || addrs[0].IPNet.String() != other.String() {
			t.Errorf("IPv4 addresses %v, want only %v", addrs, other)
		}
		return nil
	})
	cont.Do(func() error {
		l, err := ConfigureInterface(InterfaceConfig{
			Name:      "eth0",
			Addresses: []*net.IPNet{{IP: net.ParseIP("10.20.0.2").To4(), Mask: net.CIDRMask(24, 32)}},
			Gateways:  []net.IP{net.ParseIP("10.20.0.1").To4()},
			Routes:    []Route{{Dst: net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}}},
			Up:        true,
		})
		if err != nil {
			t.Fatalf("ConfigureInterface: %v", err)
		}
		routes, _ := netlink.RouteList(l, netlink.FAMILY_V4)
		found := false
		for _, r := range routes {
			if r.Gw.Equal(net.ParseIP("10.20.0.1")) {
				found = true
			}
		}
		if !found {
			t.Errorf("no route via the gateway: %v", routes)
		}
		return nil
	})
}

func TestGatewayVeth(t *testing.T) {
	host := nstest.New(t)
	on := true
	probe := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "vlanprobe"}, VlanFiltering: &on}
	if err := host.Handle().LinkAdd(probe); err != nil {
		t.Skipf("kernel lacks bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING): %v; scripts/guest-test.sh runs this in a QEMU guest", err)
	}
	// fn runs on another goroutine: it reports with t.Errorf and returns
	// what must stop the test.
	host.Do(func() error {
		h, err := netlink.NewHandle()
		if err != nil {
			return err
		}
		defer h.Close()
		br, _, err := EnsureBridge(h, BridgeOptions{Name: "br0", VlanFiltering: true})
		if err != nil {
			return err
		}
		port := PortOptions{PVID: 100, DropDefaultPVID: 1}
		gw, err := EnsureGatewayVeth(h, "br0.100", br.Index, 1400, port)
		if err != nil {
			return fmt.Errorf("EnsureGatewayVeth: %w", err)
		}
		if gw.Type() != "veth" || gw.Attrs().MTU != 1400 {
			t.Errorf("gateway %s: type %s MTU %d", gw.Attrs().Name, gw.Type(), gw.Attrs().MTU)
		}
		if gw, err = h.LinkByName("br0.100"); err != nil || gw.Attrs().Flags&net.FlagUp == 0 {
			t.Errorf("gateway is not up: %v", err)
		}
		peer, err := h.LinkByIndex(gw.Attrs().ParentIndex)
		if err != nil {
			return err
		}
		if peer.Attrs().MasterIndex != br.Index || peer.Attrs().Flags&net.FlagUp == 0 {
			t.Errorf("peer %s: master %d (bridge %d), flags %v", peer.Attrs().Name, peer.Attrs().MasterIndex, br.Index, peer.Attrs().Flags)
		}
		vlans, err := h.BridgeVlanList()
		if err != nil {
			return err
		}
		got := vlans[int32(peer.Attrs().Index)]
		if len(got) != 1 || got[0].Vid != 100 || !got[0].PortVID() || !got[0].EngressUntag() {
			t.Errorf("peer VLANs %v, want only 100 as PVID, untagged", got)
		}
		for _, name := range []string{"br0.100", peer.Attrs().Name} {
			if v, _ := Sysctl("net/ipv6/conf/" + name + "/accept_ra"); v != "0" {
				t.Errorf("%s accept_ra=%q, want 0", name, v)
			}
		}

		again, err := EnsureGatewayVeth(h, "br0.100", br.Index, 1400, port)
		if err != nil {
			t.Errorf("second EnsureGatewayVeth: %v", err)
		} else if again.Attrs().Index != gw.Attrs().Index {
			t.Errorf("second EnsureGatewayVeth returned link %d, want the existing %d", again.Attrs().Index, gw.Attrs().Index)
		}

		// A master that is no bridge: the pair must not stay behind, cut off.
		if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "notabridge"}, PeerName: "notabridgep"}); err != nil {
			return err
		}
		notBridge, err := h.LinkByName("notabridge")
		if err != nil {
			return err
		}
		if _, err := EnsureGatewayVeth(h, "bad.100", notBridge.Attrs().Index, 0, port); err == nil {
			t.Error("EnsureGatewayVeth with a veth as master succeeded")
		}
		if _, err := h.LinkByName("bad.100"); err == nil {
			t.Error("a gateway interface that could not be attached was left behind")
		}
		return nil
	})
}
