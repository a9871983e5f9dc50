// Package ipam is the address-management core of the host-local plugin: ranges
// and range sets (parsing, validation, round-robin iteration), the on-disk store
// in the reference plugin's format with its flock, and the allocator that ties
// them together. Every function that touches the store expects its caller to
// hold the store's lock.
package ipam

import (
	"fmt"
	"math"
	"net/netip"

	"github.com/cnikit/cnikit/cni"
)

// RangeSpec is one range as written in a configuration (ipam.ranges,
// runtimeConfig.ipRanges, or the legacy ipam keys): strings, not yet checked.
type RangeSpec struct {
	Subnet     string `json:"subnet"`
	RangeStart string `json:"rangeStart,omitempty"`
	RangeEnd   string `json:"rangeEnd,omitempty"`
	Gateway    string `json:"gateway,omitempty"`
}

// IsZero reports whether no key of the range was given.
func (s RangeSpec) IsZero() bool { return s == RangeSpec{} }

// Range is a checked range: addresses Start..End (inclusive) of Subnet, with the
// gateway that is never handed out.
type Range struct {
	Subnet  netip.Prefix // masked: the network address and prefix length
	Start   netip.Addr
	End     netip.Addr
	Gateway netip.Addr // may lie outside Subnet, as in the reference plugin
}

// ParseRange checks spec and fills in the defaults: the gateway and rangeStart
// default to the subnet's first address after the network address, rangeEnd to
// the last address (the one before the broadcast address for IPv4). Errors are
// code 7, prefixed with where (the spec's place in the configuration).
func ParseRange(where string, spec RangeSpec) (Range, error) {
	fail := func(format string, args ...any) (Range, error) {
		return Range{}, cni.Errorf(cni.CodeInvalidNetworkConfig, "%s: %s", where, fmt.Sprintf(format, args...))
	}
	if spec.Subnet == "" {
		return fail("subnet is missing")
	}
	subnet, err := netip.ParsePrefix(spec.Subnet)
	if err != nil || subnet.Addr().Zone() != "" {
		return fail("subnet %q is not a CIDR", spec.Subnet)
	}
	if subnet.Addr().Is4In6() {
		return fail("subnet %s is an IPv4-mapped IPv6 prefix; write it as IPv4", spec.Subnet)
	}
	if subnet.Bits() > subnet.Addr().BitLen()-2 {
		return fail("subnet %s is too small to allocate from (at most /%d)", spec.Subnet, subnet.Addr().BitLen()-2)
	}
	if masked := subnet.Masked(); masked != subnet {
		return fail("subnet %s has host bits set (the network is %s)", spec.Subnet, masked)
	}
	r := Range{Subnet: subnet}
	first := subnet.Addr().Next()

	parseIn := func(key, value string, def netip.Addr) (netip.Addr, error) {
		if value == "" {
			return def, nil
		}
		a, err := parseAddr(value)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("%s %q is not an IP address", key, value)
		}
		if a.Is4() != subnet.Addr().Is4() {
			return netip.Addr{}, fmt.Errorf("%s %s is %s but subnet %s is %s", key, a, familyName(a), subnet, familyName(subnet.Addr()))
		}
		return a, nil
	}
	if r.Gateway, err = parseIn("gateway", spec.Gateway, first); err != nil {
		return fail("%v", err)
	}
	if r.Start, err = parseIn("rangeStart", spec.RangeStart, first); err != nil {
		return fail("%v", err)
	}
	if !subnet.Contains(r.Start) {
		return fail("rangeStart %s is not in subnet %s", r.Start, subnet)
	}
	if r.End, err = parseIn("rangeEnd", spec.RangeEnd, defaultEnd(subnet)); err != nil {
		return fail("%v", err)
	}
	if !subnet.Contains(r.End) {
		return fail("rangeEnd %s is not in subnet %s", r.End, subnet)
	}
	if r.Start.Compare(r.End) > 0 {
		return fail("rangeStart %s is after rangeEnd %s", r.Start, r.End)
	}
	return r, nil
}

// parseAddr parses a plain IP address, unmapping IPv4-mapped IPv6 addresses
// (the reference treats them as IPv4) and refusing zones.
func parseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, err
	}
	if a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("IP address %q has a zone", s)
	}
	return a.Unmap(), nil
}

// ParseRequestedIP parses a requested address, "<ip>" or "<ip>/<prefix>"; the
// prefix is ignored, as in the reference plugin.
func ParseRequestedIP(s string) (netip.Addr, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		if p.Addr().Zone() != "" {
			return netip.Addr{}, fmt.Errorf("%q is not an IP address", s)
		}
		return p.Addr().Unmap(), nil
	}
	a, err := parseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address", s)
	}
	return a, nil
}

func familyName(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// lastAddr returns the highest address of p (the broadcast address for IPv4).
func lastAddr(p netip.Prefix) netip.Addr {
	if p.Addr().Is4() {
		b := p.Addr().As4()
		for i := p.Bits(); i < 32; i++ {
			b[i/8] |= 0x80 >> (i % 8)
		}
		return netip.AddrFrom4(b)
	}
	b := p.Addr().As16()
	for i := p.Bits(); i < 128; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return netip.AddrFrom16(b)
}

func defaultEnd(p netip.Prefix) netip.Addr {
	last := lastAddr(p)
	if p.Addr().Is4() {
		return last.Prev()
	}
	return last
}

// Is4 reports whether the range holds IPv4 addresses.
func (r *Range) Is4() bool { return r.Subnet.Addr().Is4() }

// Contains reports whether a lies within Start..End.
func (r *Range) Contains(a netip.Addr) bool {
	a = a.Unmap()
	return a.Is4() == r.Is4() && r.Start.Compare(a) <= 0 && a.Compare(r.End) <= 0
}

// Allocatable reports whether a may be handed out: it is in the range and is
// neither the gateway nor, for IPv4, the subnet's network or broadcast address.
func (r *Range) Allocatable(a netip.Addr) bool {
	a = a.Unmap()
	if !r.Contains(a) || a == r.Gateway {
		return false
	}
	if r.Is4() && (a == r.Subnet.Addr() || a == lastAddr(r.Subnet)) {
		return false
	}
	return true
}

// reason explains why a, which is in the range, is not allocatable.
func (r *Range) reason(a netip.Addr) string {
	switch {
	case a == r.Gateway:
		return "the gateway"
	case a == r.Subnet.Addr():
		return "the network address"
	default:
		return "the broadcast address"
	}
}

// Overlaps reports whether the two ranges share an address.
func (r *Range) Overlaps(o *Range) bool {
	return r.Is4() == o.Is4() && r.Start.Compare(o.End) <= 0 && o.Start.Compare(r.End) <= 0
}

// Size returns the number of allocatable addresses, saturating at MaxUint64.
func (r *Range) Size() uint64 {
	n := span(r.Start, r.End)
	if n == math.MaxUint64 {
		return n
	}
	n++
	for _, a := range r.unallocatable() {
		if r.Contains(a) {
			n--
		}
	}
	return n
}

// unallocatable lists the addresses Allocatable refuses, without duplicates.
func (r *Range) unallocatable() []netip.Addr {
	out := []netip.Addr{r.Gateway}
	if r.Is4() {
		for _, a := range []netip.Addr{r.Subnet.Addr(), lastAddr(r.Subnet)} {
			if a != r.Gateway {
				out = append(out, a)
			}
		}
	}
	return out
}

// span returns end-start, saturating at MaxUint64.
func span(start, end netip.Addr) uint64 {
	s, e := start.As16(), end.As16()
	var sHi, sLo, eHi, eLo uint64
	for i := 0; i < 8; i++ {
		sHi, sLo = sHi<<8|uint64(s[i]), sLo<<8|uint64(s[i+8])
		eHi, eLo = eHi<<8|uint64(e[i]), eLo<<8|uint64(e[i+8])
	}
	hi := eHi - sHi
	if eLo < sLo {
		hi--
	}
	if hi != 0 {
		return math.MaxUint64
	}
	return eLo - sLo
}

// String formats the range as "start-end".
func (r *Range) String() string { return r.Start.String() + "-" + r.End.String() }

// Prefix returns a with the range's prefix length, as results report it.
func (r *Range) Prefix(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, r.Subnet.Bits()) }
