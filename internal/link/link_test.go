package link

import (
	"errors"
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
