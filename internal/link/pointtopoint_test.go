package link

import (
	"net"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/cnikit/cnikit/internal/nstest"
)

func mustCIDR(t *testing.T, s string) *net.IPNet {
	t.Helper()
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	n.IP = ip
	if v4 := ip.To4(); v4 != nil {
		n.IP = v4
	}
	return n
}

// TestPointToPoint builds a ptp attachment by hand from the package's parts:
// a veth whose container end has its addresses without prefix routes, a
// link route to the gateway and the subnet via it, and a host end carrying
// the gateways; the host and the container then reach each other.
func TestPointToPoint(t *testing.T) {
	host, cont := nstest.New(t), nstest.New(t)
	addrs := []*net.IPNet{mustCIDR(t, "10.30.0.5/24"), mustCIDR(t, "fd30::5/64")}
	gws := []net.IP{net.ParseIP("10.30.0.1").To4(), net.ParseIP("fd30::1")}
	scopeLink := int(netlink.SCOPE_LINK)
	routes := []Route{
		{Dst: *SingleAddress(gws[0]), Scope: &scopeLink, Src: addrs[0].IP},
		{Dst: *mustCIDR(t, "10.30.0.0/24"), GW: gws[0], Src: addrs[0].IP},
		{Dst: *SingleAddress(gws[1]), Scope: &scopeLink, Src: addrs[1].IP},
		{Dst: *mustCIDR(t, "fd30::/64"), GW: gws[1], Src: addrs[1].IP},
		{Dst: *mustCIDR(t, "0.0.0.0/0"), GW: gws[0]},
	}
	var hostName string
	host.Do(func() error {
		h, err := netlink.NewHandle()
		if err != nil {
			return err
		}
		defer h.Close()
		veth, err := CreateVeth(h, func(string) bool { return false }, VethOptions{ContainerNS: cont.Fd(), ContainerName: "eth0"})
		if err != nil {
			return err
		}
		hostName = veth.Name
		const alt = "cnikit-test-0123456789abcdef-0123456789abcdef"
		if err := AddAltName(h, veth, alt); err != nil {
			return err
		}
		if l, err := h.LinkByName(alt); err != nil || l.Attrs().Index != veth.Index {
			t.Errorf("lookup by alternative name: %v, %v", l, err)
		}
		if _, err := h.LinkByName("cnikit-test-missing-missing-missing"); !IsNotFound(err) {
			t.Errorf("lookup of a missing alternative name: %v, want not found", err)
		}
		found, err := ListByAltNamePrefix(h, "cnikit-test-")
		if err != nil || len(found) != 1 || found[alt] == nil {
			t.Errorf("ListByAltNamePrefix: %v, %v", found, err)
		}
		ips := []net.IP{addrs[0].IP, addrs[1].IP}
		for range 2 { // twice: the second run finds everything in place
			if err := ConfigurePointToPointHost(h, veth, gws, ips); err != nil {
				return err
			}
		}
		got, _ := h.AddrList(veth, netlink.FAMILY_ALL)
		for _, a := range got {
			if a.IP.IsGlobalUnicast() && a.Flags&unix.IFA_F_NOPREFIXROUTE == 0 {
				t.Errorf("host gateway %v has a prefix route", a.IPNet)
			}
		}
		if err := VerifyAddresses(h, veth, []net.IPNet{*SingleAddress(gws[0]), *SingleAddress(gws[1])}); err != nil {
			t.Error(err)
		}
		return VerifyRoutes(h, veth, []Route{{Dst: *SingleAddress(ips[0])}, {Dst: *SingleAddress(ips[1])}})
	})
	for _, setting := range []string{"accept_ra", "accept_dad"} {
		if v, _ := host.Run("cat", "/proc/sys/net/ipv6/conf/"+hostName+"/"+setting); strings.TrimSpace(v) != "0" {
			t.Errorf("host end %s = %q", setting, v)
		}
	}
	cont.Do(func() error {
		l, err := ConfigureInterface(InterfaceConfig{Name: "eth0", Addresses: addrs, Routes: routes, Up: true, NoPrefixRoute: true})
		if err != nil {
			return err
		}
		h := &netlink.Handle{}
		if err := VerifyAddresses(h, l, []net.IPNet{*addrs[0], *addrs[1]}); err != nil {
			t.Error(err)
		}
		if err := VerifyRoutes(h, l, routes); err != nil {
			t.Error(err)
		}
		if err := VerifyRoutes(h, l, []Route{{Dst: *mustCIDR(t, "10.99.0.0/16")}}); err == nil {
			t.Error("VerifyRoutes found a route that is not there")
		}
		if err := VerifyRoutes(h, l, []Route{{Dst: *mustCIDR(t, "0.0.0.0/0"), GW: net.ParseIP("10.30.0.9")}}); err == nil {
			t.Error("VerifyRoutes accepted a default route via another gateway")
		}
		if err := VerifyAddresses(h, l, []net.IPNet{*mustCIDR(t, "10.30.0.5/16")}); err == nil {
			t.Error("VerifyAddresses accepted another prefix length")
		}
		// The kernel's subnet route is not there: the subnet is via the gateway.
		rs, _ := netlink.RouteList(l, netlink.FAMILY_V4)
		for _, r := range rs {
			if r.Dst != nil && r.Dst.String() == "10.30.0.0/24" && r.Gw == nil {
				t.Errorf("kernel prefix route present: %v", r)
			}
		}
		return nil
	})
	for _, p := range []struct {
		from *nstest.NS
		to   string
	}{{cont, "10.30.0.1"}, {cont, "fd30::1"}, {host, "10.30.0.5"}, {host, "fd30::5"}} {
		if err := p.from.Ping(p.to); err != nil {
			t.Error(err)
		}
	}
}
