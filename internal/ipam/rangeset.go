package ipam

import (
	"fmt"
	"iter"
	"net/netip"
	"strings"

	"github.com/cnikit/cnikit/cni"
)

// RangeSet is a pool of ranges of one address family; one address is allocated
// from each set per attachment.
type RangeSet struct {
	// Where names the set's place in the configuration, for error messages
	// ("ipam.ranges[1]", "runtimeConfig.ipRanges[0]", "ipam.subnet").
	Where  string
	Ranges []Range
}

// ParseRangeSet checks every range of a set, and that the set is not empty, is
// of one family and has no overlapping ranges. Errors are code 7.
func ParseRangeSet(where string, specs []RangeSpec) (RangeSet, error) {
	set := RangeSet{Where: where}
	if len(specs) == 0 {
		return set, cni.Errorf(cni.CodeInvalidNetworkConfig, "%s: empty range set", where)
	}
	for i, spec := range specs {
		r, err := ParseRange(fmt.Sprintf("%s[%d]", where, i), spec)
		if err != nil {
			return set, err
		}
		for j := range set.Ranges {
			prev := &set.Ranges[j]
			if prev.Is4() != r.Is4() {
				return set, cni.Errorf(cni.CodeInvalidNetworkConfig,
					"%s: mixes address families: %s (subnet %s) and %s (subnet %s)", where, prev, prev.Subnet, &r, r.Subnet)
			}
			if prev.Overlaps(&r) {
				return set, cni.Errorf(cni.CodeInvalidNetworkConfig,
					"%s: ranges %s (subnet %s) and %s (subnet %s) overlap", where, prev, prev.Subnet, &r, r.Subnet)
			}
		}
		set.Ranges = append(set.Ranges, r)
	}
	return set, nil
}

// CheckDisjoint reports, as a code-7 error, the first pair of sets that share
// an address.
func CheckDisjoint(sets []RangeSet) error {
	for i := range sets {
		for j := i + 1; j < len(sets); j++ {
			if a, b, ok := sets[i].overlap(&sets[j]); ok {
				return cni.Errorf(cni.CodeInvalidNetworkConfig, "range set %s overlaps range set %s: %s and %s share addresses",
					sets[i].Where, sets[j].Where, a, b)
			}
		}
	}
	return nil
}

func (s *RangeSet) overlap(o *RangeSet) (*Range, *Range, bool) {
	for i := range s.Ranges {
		for j := range o.Ranges {
			if s.Ranges[i].Overlaps(&o.Ranges[j]) {
				return &s.Ranges[i], &o.Ranges[j], true
			}
		}
	}
	return nil, nil, false
}

// Is4 reports whether the set holds IPv4 addresses.
func (s *RangeSet) Is4() bool { return s.Ranges[0].Is4() }

// RangeFor returns the range holding a, or nil.
func (s *RangeSet) RangeFor(a netip.Addr) *Range {
	for i := range s.Ranges {
		if s.Ranges[i].Contains(a) {
			return &s.Ranges[i]
		}
	}
	return nil
}

// Contains reports whether a lies in one of the set's ranges.
func (s *RangeSet) Contains(a netip.Addr) bool { return s.RangeFor(a) != nil }

// Allocatable reports whether a lies in one of the set's ranges and may be
// handed out.
func (s *RangeSet) Allocatable(a netip.Addr) bool {
	r := s.RangeFor(a)
	return r != nil && r.Allocatable(a)
}

// Size returns the number of allocatable addresses, saturating at MaxUint64.
func (s *RangeSet) Size() uint64 {
	var n uint64
	for i := range s.Ranges {
		size := s.Ranges[i].Size()
		if n+size < n {
			return ^uint64(0)
		}
		n += size
	}
	return n
}

// String lists the ranges as "start-end,start-end", as the reference's
// exhaustion message does.
func (s *RangeSet) String() string {
	parts := make([]string, len(s.Ranges))
	for i := range s.Ranges {
		parts[i] = s.Ranges[i].String()
	}
	return strings.Join(parts, ",")
}

// Candidates yields every allocatable address of the set once, round-robin:
// starting after last when last lies in one of the ranges (so last itself comes
// at the very end), otherwise from the first range's start; ranges are walked in
// order and the walk wraps from the last range to the first.
func (s *RangeSet) Candidates(last netip.Addr) iter.Seq2[netip.Addr, *Range] {
	return func(yield func(netip.Addr, *Range) bool) {
		n := len(s.Ranges)
		if n == 0 {
			return
		}
		startIdx, startAddr := 0, s.Ranges[0].Start
		for i := range s.Ranges {
			if r := &s.Ranges[i]; last.IsValid() && r.Contains(last) {
				if last == r.End {
					startIdx = (i + 1) % n
					startAddr = s.Ranges[startIdx].Start
				} else {
					startIdx, startAddr = i, last.Unmap().Next()
				}
				break
			}
		}
		// n+1 segments: the rest of the starting range, the other ranges, then
		// the starting range's beginning up to where the walk started.
		for k := 0; k <= n; k++ {
			r := &s.Ranges[(startIdx+k)%n]
			from, to := r.Start, r.End
			if k == 0 {
				from = startAddr
			}
			if k == n {
				if startAddr == r.Start {
					return
				}
				to = startAddr.Prev()
			}
			for a := from; ; a = a.Next() {
				if r.Allocatable(a) && !yield(a, r) {
					return
				}
				if a == to {
					break
				}
			}
		}
	}
}
