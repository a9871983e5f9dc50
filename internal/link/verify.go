package link

import (
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
)

// VerifyAddresses checks that link carries every address of want, each with
// its prefix length. h may be a zero Handle, which works in the calling
// thread's namespace.
func VerifyAddresses(h *netlink.Handle, link netlink.Link, want []net.IPNet) error {
	addrs, err := h.AddrList(link, netlink.FAMILY_ALL)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return fmt.Errorf("listing addresses of %q: %w", link.Attrs().Name, err)
	}
	for _, w := range want {
		found := false
		for _, a := range addrs {
			if a.IPNet.IP.Equal(w.IP) && a.IPNet.Mask.String() == maskOf(w).String() {
				found = true
				break
			}
		}
		if !found {
			return fmt.Errorf("%q lacks address %s", link.Attrs().Name, w.String())
		}
	}
	return nil
}

// maskOf returns n's mask in the length of its address's family, so that
// IPv4 masks compare equal whatever their byte length.
func maskOf(n net.IPNet) net.IPMask {
	ones, bits := n.Mask.Size()
	if n.IP.To4() != nil && bits == 128 {
		return net.CIDRMask(ones-96, 32)
	}
	return n.Mask
}

// VerifyRoutes checks that link has a route of the main table for every
// route of want: same destination and, when the wanted route names one, the
// same gateway. Routes with a Table are skipped.
func VerifyRoutes(h *netlink.Handle, link netlink.Link, want []Route) error {
	have, err := h.RouteList(link, netlink.FAMILY_ALL)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return fmt.Errorf("listing routes of %q: %w", link.Attrs().Name, err)
	}
	for _, w := range want {
		if w.Table != nil {
			continue
		}
		found := false
		for _, r := range have {
			if sameDestination(r, &w.Dst) && (w.GW == nil || w.GW.Equal(r.Gw)) {
				found = true
				break
			}
		}
		if !found {
			if w.GW != nil {
				return fmt.Errorf("%q lacks route to %s via %s", link.Attrs().Name, w.Dst.String(), w.GW)
			}
			return fmt.Errorf("%q lacks route to %s", link.Attrs().Name, w.Dst.String())
		}
	}
	return nil
}

// sameDestination compares a listed route's destination with dst; the kernel
// reports a default route with no destination.
func sameDestination(r netlink.Route, dst *net.IPNet) bool {
	if r.Dst == nil {
		ones, _ := dst.Mask.Size()
		return ones == 0 && (dst.IP.To4() != nil) == (r.Family == netlink.FAMILY_V4)
	}
	return r.Dst.IP.Equal(dst.IP.Mask(dst.Mask)) && r.Dst.Mask.String() == maskOf(*dst).String()
}
