package link

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ErrAddressConflict is returned (wrapped) when a bridge already has another
// address of the gateway's family (IPv4) or subnet (IPv6).
var ErrAddressConflict = errors.New("address conflict")

// EnsureGatewayAddress puts gw (the gateway with its prefix length) on link.
// Another IPv4 address, or an IPv6 address of an overlapping subnet, is an
// ErrAddressConflict unless force is set, in which case it is replaced.
// Distinct IPv6 subnets coexist. A concurrent creator's EEXIST is fine. When
// the address is added, the link's MAC is written back to itself: a bridge
// otherwise takes the lowest MAC of its ports and changes it as ports churn.
func EnsureGatewayAddress(h *netlink.Handle, link netlink.Link, gw *net.IPNet, force bool) error {
	family := netlink.FAMILY_V4
	if gw.IP.To4() == nil {
		family = netlink.FAMILY_V6
	}
	addrs, err := h.AddrList(link, family)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return fmt.Errorf("listing addresses of %q: %w", link.Attrs().Name, err)
	}
	for _, a := range addrs {
		if a.IP.IsLinkLocalUnicast() {
			continue
		}
		if a.IPNet.String() == gw.String() {
			return nil
		}
		if family == netlink.FAMILY_V6 && !a.IPNet.Contains(gw.IP) && !gw.Contains(a.IP) {
			continue
		}
		if !force {
			return fmt.Errorf("%q already has an IP address different from %v (%v): %w", link.Attrs().Name, gw, a.IPNet, ErrAddressConflict)
		}
		if err := h.AddrDel(link, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return fmt.Errorf("removing address %v from %q: %w", a.IPNet, link.Attrs().Name, err)
		}
	}
	addr := &netlink.Addr{IPNet: gw}
	if family == netlink.FAMILY_V6 {
		// The gateway is ours by configuration; DAD would only keep it
		// unusable for a second after the first ADD.
		addr.Flags = unix.IFA_F_NODAD
	}
	if err := h.AddrAdd(link, addr); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("adding address %v to %q: %w", gw, link.Attrs().Name, err)
	}
	if mac := link.Attrs().HardwareAddr; len(mac) > 0 {
		if err := h.LinkSetHardwareAddr(link, mac); err != nil {
			return fmt.Errorf("pinning the MAC of %q: %w", link.Attrs().Name, err)
		}
	}
	return nil
}

// Route is a route to add on an interface.
type Route struct {
	Dst      net.IPNet
	GW       net.IP
	Priority int
	Table    *int
	Scope    *int
	// Src, when set, is the preferred source address of the route.
	Src net.IP
}

// InterfaceConfig is what ConfigureInterface applies inside a container.
type InterfaceConfig struct {
	Name      string
	Addresses []*net.IPNet
	// Gateways are used for routes without a gateway of their own: the first
	// of the route's family.
	Gateways []net.IP
	Routes   []Route
	// EnableDAD keeps IPv6 duplicate address detection on (enhanced_dad=1,
	// accept_dad=1) and waits for it; by default it is off, which saves
	// about a second per ADD.
	EnableDAD bool
	// Up brings the link up.
	Up bool
	// NoPrefixRoute adds the addresses without the kernel's route to their
	// subnet (IFA_F_NOPREFIXROUTE), for links that reach the subnet through
	// a gateway in Routes instead (ptp).
	NoPrefixRoute bool
}

// settleTimeout bounds the wait for IPv6 DAD when EnableDAD is set.
const settleTimeout = 5 * time.Second

// ConfigureInterface applies cfg to the interface in the calling thread's
// namespace and returns the link.
func ConfigureInterface(cfg InterfaceConfig) (netlink.Link, error) {
	link, err := netlink.LinkByName(cfg.Name)
	if err != nil {
		return nil, fmt.Errorf("looking up %q: %w", cfg.Name, err)
	}
	hasV6 := false
	for _, a := range cfg.Addresses {
		if a.IP.To4() == nil {
			hasV6 = true
		}
	}
	// Settings go through netlink where the kernel allows it (arp_notify) and
	// through /proc/sys only where it does not (IPv6's): the first open of a
	// new interface's /proc/sys entry costs about a millisecond per thousand
	// namespaces on the machine, since every namespace's "eth0" shares one
	// dentry hash chain.
	if err := setInet4Conf(link.Attrs().Index, map[uint16]uint32{ipv4DevconfArpNotify: 1}); err != nil {
		return nil, fmt.Errorf("setting arp_notify on %q: %w", cfg.Name, err)
	}
	v6conf := "net/ipv6/conf/" + cfg.Name + "/"
	// Without IPv6 in the namespace these settings do not exist; that is fine
	// unless an IPv6 address is wanted, which AddrAdd will report.
	if cfg.EnableDAD {
		_ = SetSysctl(v6conf+"enhanced_dad", "1")
		_ = SetSysctl(v6conf+"accept_dad", "1")
	} else {
		// The addresses below carry IFA_F_NODAD already; this also spares the
		// kernel's own link-local address its DAD, as the reference does.
		_ = SetSysctl(v6conf+"accept_dad", "0")
	}
	if hasV6 {
		for _, dev := range []string{"lo", cfg.Name} {
			_ = EnsureSysctl("net/ipv6/conf/"+dev+"/disable_ipv6", "0")
		}
		_ = SetSysctl(v6conf+"keep_addr_on_down", "1")
	}
	for _, a := range cfg.Addresses {
		addr := &netlink.Addr{IPNet: a}
		if a.IP.To4() == nil && !cfg.EnableDAD {
			addr.Flags = unix.IFA_F_NODAD
		}
		if cfg.NoPrefixRoute {
			addr.Flags |= unix.IFA_F_NOPREFIXROUTE
		}
		if err := netlink.AddrAdd(link, addr); err != nil {
			return nil, fmt.Errorf("adding address %v to %q: %w", a, cfg.Name, err)
		}
	}
	if cfg.Up {
		if err := netlink.LinkSetUp(link); err != nil {
			return nil, fmt.Errorf("setting %q up: %w", cfg.Name, err)
		}
	}
	if hasV6 && cfg.EnableDAD && cfg.Up {
		if err := settleAddresses(link, settleTimeout); err != nil {
			return nil, err
		}
	}
	for _, r := range cfg.Routes {
		route := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: &r.Dst, Gw: r.GW, Priority: r.Priority, Src: r.Src}
		if route.Gw == nil {
			route.Gw = firstOfFamily(cfg.Gateways, r.Dst.IP.To4() != nil)
		}
		if r.Table != nil {
			route.Table = *r.Table
		}
		if r.Scope != nil {
			route.Scope = netlink.Scope(*r.Scope)
		}
		// Appended, not added: a second attachment of the same container (eth1
		// on another network) brings its own default route, which the kernel
		// keeps behind the first one instead of refusing it, as the reference
		// plugins do.
		if err := netlink.RouteAppend(route); err != nil {
			return nil, fmt.Errorf("adding route %v via %v on %q: %w", r.Dst.String(), route.Gw, cfg.Name, err)
		}
	}
	return link, nil
}

func firstOfFamily(ips []net.IP, v4 bool) net.IP {
	for _, ip := range ips {
		if ip != nil && (ip.To4() != nil) == v4 {
			return ip
		}
	}
	return nil
}

// settleAddresses waits until no IPv6 address of link is tentative.
func settleAddresses(link netlink.Link, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	interval := time.Millisecond
	for {
		addrs, err := netlink.AddrList(link, netlink.FAMILY_V6)
		if err != nil {
			return fmt.Errorf("listing addresses of %q: %w", link.Attrs().Name, err)
		}
		tentative := false
		for _, a := range addrs {
			if a.Flags&unix.IFA_F_DADFAILED != 0 {
				return fmt.Errorf("duplicate address detection failed for %v on %q", a.IPNet, link.Attrs().Name)
			}
			if a.Flags&unix.IFA_F_TENTATIVE != 0 {
				tentative = true
			}
		}
		if !tentative {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("IPv6 addresses of %q still tentative after %v", link.Attrs().Name, timeout)
		}
		time.Sleep(interval)
		if interval < 50*time.Millisecond {
			interval *= 2
		}
	}
}
