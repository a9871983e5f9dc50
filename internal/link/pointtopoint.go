package link

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// HostRoutePrefix is the prefix length of a single address of ip's family
// (32 or 128).
func HostRoutePrefix(ip net.IP) int {
	if ip.To4() != nil {
		return 32
	}
	return 128
}

// SingleAddress returns ip as a /32 or /128 network.
func SingleAddress(ip net.IP) *net.IPNet {
	bits := HostRoutePrefix(ip)
	if v4 := ip.To4(); v4 != nil {
		ip = v4
	}
	return &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)}
}

// ConfigurePointToPointHost sets up the host end of a point-to-point veth:
// it ignores router advertisements (a container can send them,
// CVE-2020-10749), does no duplicate address detection (its link-local
// address would otherwise stay tentative for a second or two, and until then
// the host cannot solicit a container's neighbour entry for forwarded
// traffic), carries each gateway as a /32 or /128 address (without DAD
// either: the same gateway sits on every such link, and it is ours by
// configuration), is up, and is the route to each container address.
//
// A route to a container address that already exists through another link (a
// leaked attachment) is replaced: the address now belongs to this container.
func ConfigurePointToPointHost(h *netlink.Handle, host netlink.Link, gateways, containerIPs []net.IP) error {
	name := host.Attrs().Name
	// Written before the link is up, so that no advertisement gets in first
	// and the link-local address is usable at once. Without IPv6 on the
	// link the settings do not exist, and are not needed.
	_ = SetSysctl("net/ipv6/conf/"+name+"/accept_ra", "0")
	_ = SetSysctl("net/ipv6/conf/"+name+"/accept_dad", "0")
	for _, gw := range gateways {
		// No prefix route: a /128 would otherwise get one on every link.
		addr := &netlink.Addr{IPNet: SingleAddress(gw), Flags: unix.IFA_F_NOPREFIXROUTE}
		if gw.To4() == nil {
			addr.Flags |= unix.IFA_F_NODAD
		}
		if err := h.AddrAdd(host, addr); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("adding gateway %s to %q: %w", gw, name, err)
		}
	}
	if err := h.LinkSetUp(host); err != nil {
		return fmt.Errorf("setting %q up: %w", name, err)
	}
	for _, ip := range containerIPs {
		route := &netlink.Route{LinkIndex: host.Attrs().Index, Dst: SingleAddress(ip), Scope: netlink.SCOPE_LINK}
		if err := h.RouteReplace(route); err != nil {
			return fmt.Errorf("adding route to %s via %q: %w", ip, name, err)
		}
	}
	return nil
}

// AddAltName gives link the alternative name name (at most 127 bytes;
// kernel 5.5 or later). Lookups by a name longer than 15 bytes (LinkByName)
// find a link by its alternative name in one request, so a long name derived
// from what identifies an attachment finds its link without a listing.
func AddAltName(h *netlink.Handle, link netlink.Link, name string) error {
	if err := h.LinkAddAltName(link, name); err != nil {
		return fmt.Errorf("naming %q %q: %w", link.Attrs().Name, name, err)
	}
	return nil
}

// IsNotFound reports whether err says a link does not exist.
func IsNotFound(err error) bool {
	var notFound netlink.LinkNotFoundError
	return errors.As(err, &notFound) || errors.Is(err, unix.ENODEV)
}

// ListByAltNamePrefix returns the links of h's namespace that have an
// alternative name starting with prefix, with that name. It lists every
// link, so it is meant for garbage collection, not for the hot path.
func ListByAltNamePrefix(h *netlink.Handle, prefix string) (map[string]netlink.Link, error) {
	links, err := h.LinkList()
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, fmt.Errorf("listing links: %w", err)
	}
	found := map[string]netlink.Link{}
	for _, l := range links {
		for _, alt := range l.Attrs().AltNames {
			if strings.HasPrefix(alt, prefix) {
				found[alt] = l
			}
		}
	}
	return found, nil
}
