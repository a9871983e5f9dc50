package ipam

import (
	"errors"
	"io/fs"
	"net/netip"
	"slices"
	"strings"

	"github.com/cnikit/cnikit/cni"
)

// Allocator hands out one address per range set to attachments, keeping its
// state in Store. Its methods take the store's lock themselves, once per call.
type Allocator struct {
	Store *Store
	Sets  []RangeSet
}

// Lease is an address allocated from a range.
type Lease struct {
	Addr  netip.Addr
	Range *Range
}

// Allocate reserves one address per range set for att, in set order. A
// requested address is used for the set it lies in; the other sets get the
// next free address round-robin after the set's last reserved one. Either every
// set gets an address or nothing is reserved. The directory is not read: the
// duplicate check reads att's index entry, and round-robin tries candidates
// by name, so the cost does not grow with the number of reservations, only
// with the taken candidates it meets.
//
// Errors: code 7 when a requested address is outside every set, not
// allocatable (gateway, network, broadcast), or shares a set with another; 11
// when another attachment holds a requested address; 101 when att already
// holds an address in a set (ADD without DEL); 100 when a set is exhausted; 5
// on store I/O failures.
func (al *Allocator) Allocate(att Attachment, requested []netip.Addr) ([]Lease, error) {
	want, err := al.placeRequested(requested)
	if err != nil {
		return nil, err
	}
	if err := al.Store.Lock(); err != nil {
		return nil, err
	}
	defer al.Store.Unlock()

	// The duplicate check, as the reference's for the sets without a requested
	// address: what att holds according to its index entry. That covers every
	// allocation cnikit made (and those GC indexed); see the README.
	held, _, err := al.Store.heldByIndex(att)
	if err != nil {
		return nil, err
	}

	var leases []Lease
	fail := func(err error) ([]Lease, error) {
		for _, l := range leases {
			al.Store.Release(l.Addr, att)
		}
		return nil, err
	}
	for i := range al.Sets {
		set := &al.Sets[i]
		var lease Lease
		if a := want[i]; a.IsValid() {
			ok, err := al.Store.Reserve(a, att)
			if err != nil {
				return fail(err)
			}
			if !ok {
				return fail(al.unavailable(a, att))
			}
			lease = Lease{Addr: a, Range: set.RangeFor(a)}
		} else {
			for _, a := range held {
				if set.Contains(a) {
					return fail(cni.Errorf(CodeDuplicateAllocation,
						"%s has been allocated to %s, duplicate allocation is not allowed", a, att))
				}
			}
			a, r, err := al.Store.ReserveFirst(set.Candidates(al.Store.LastReserved(i)), att)
			if err != nil {
				return fail(err)
			}
			if !a.IsValid() {
				return fail(cni.Errorf(CodeRangeExhausted, "no IP addresses available in range set %s: %s", set.Where, set))
			}
			lease = Lease{Addr: a, Range: r}
		}
		leases = append(leases, lease)
		if err := al.Store.SetLastReserved(i, lease.Addr); err != nil {
			return fail(err)
		}
	}
	// The index lists everything att holds: the new leases, and what it held
	// before in sets it did not allocate from now (a requested address, or a
	// set no longer configured).
	indexed := make([]netip.Addr, 0, len(leases)+len(held))
	for _, l := range leases {
		indexed = append(indexed, l.Addr)
	}
	for _, a := range held {
		if !slices.Contains(indexed, a) {
			indexed = append(indexed, a)
		}
	}
	// Best effort, as the reservations are complete without it: an
	// attachment without an entry (a file system without symbolic links, say)
	// is only found by reading the directory, as the reference finds all.
	al.Store.writeIndex(att, indexed)
	return leases, nil
}

// CheckRequested reports the errors Allocate would find in requested without
// looking at the store (code 7), so that a caller can refuse a bad request
// before creating anything.
func (al *Allocator) CheckRequested(requested []netip.Addr) error {
	_, err := al.placeRequested(requested)
	return err
}

// placeRequested assigns each requested address to its range set, checking
// everything that can be checked without the store.
func (al *Allocator) placeRequested(requested []netip.Addr) ([]netip.Addr, error) {
	want := make([]netip.Addr, len(al.Sets))
	for _, a := range requested {
		a = a.Unmap()
		i := al.setFor(a)
		if i < 0 {
			return nil, cni.Errorf(cni.CodeInvalidNetworkConfig, "requested IP %s is not in any range set (%s)", a, al.describeSets())
		}
		set := &al.Sets[i]
		if r := set.RangeFor(a); !r.Allocatable(a) {
			return nil, cni.Errorf(cni.CodeInvalidNetworkConfig, "requested IP %s is %s of subnet %s and cannot be allocated", a, r.reason(a), r.Subnet)
		}
		if prev := want[i]; prev.IsValid() && prev != a {
			return nil, cni.Errorf(cni.CodeInvalidNetworkConfig,
				"requested IPs %s and %s are both in range set %s (%s); one address is allocated per range set", prev, a, set.Where, set)
		}
		want[i] = a
	}
	return want, nil
}

// unavailable explains why the requested address a could not be reserved.
func (al *Allocator) unavailable(a netip.Addr, att Attachment) error {
	owner, err := al.Store.Owner(a)
	switch {
	case err != nil:
		return cni.Errorf(cni.CodeTryAgainLater, "requested IP address %s is not available", a)
	case owner.owns(att) || owner.ownsLegacy(att):
		return cni.Errorf(CodeDuplicateAllocation, "requested IP address %s is already allocated to %s, duplicate allocation is not allowed", a, att)
	default:
		return cni.Errorf(cni.CodeTryAgainLater, "requested IP address %s is not available: it is reserved by %s", a, owner)
	}
}

func (al *Allocator) setFor(a netip.Addr) int {
	for i := range al.Sets {
		if al.Sets[i].Contains(a) {
			return i
		}
	}
	return -1
}

func (al *Allocator) describeSets() string {
	parts := make([]string, len(al.Sets))
	for i := range al.Sets {
		parts[i] = al.Sets[i].Where + ": " + al.Sets[i].String()
	}
	return strings.Join(parts, "; ")
}

// Release frees att's reservations. It reads att's index entry, and releases
// every address the entry lists and known lists (the previous result: the
// addresses att is believed to hold) that is reserved for att, by name; the
// entry goes too. When that covers every range set, the directory is not read
// at all. Otherwise (no entry: an allocation a reference plugin or an earlier
// cnikit version made) every reservation is examined, as the reference does:
// those written for att are released, or, when there are none, those of the
// old format naming att's container. Nothing to release is success.
func (al *Allocator) Release(att Attachment, known []netip.Addr) error {
	if err := al.Store.Lock(); err != nil {
		return err
	}
	defer al.Store.Unlock()

	indexed, found, err := al.Store.readIndex(att)
	if err != nil {
		return err
	}
	covered := make([]bool, len(al.Sets))
	releasedAny := false
	release := func(a netip.Addr, legacyToo bool) error {
		owner, err := al.Store.Owner(a)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if !owner.owns(att) && !(legacyToo && owner.ownsLegacy(att)) {
			return nil
		}
		if err := al.Store.Release(a, owner); err != nil {
			return err
		}
		releasedAny = true
		if i := al.setFor(a); i >= 0 {
			covered[i] = true
		}
		return nil
	}
	for _, a := range indexed {
		if err := release(a, false); err != nil {
			return err
		}
	}
	for _, a := range known {
		if err := release(a, true); err != nil {
			return err
		}
	}
	// After the addresses: a crash in between leaves an entry naming
	// released addresses, which readers find stale.
	if found {
		if err := al.Store.removeIndex(att); err != nil {
			return err
		}
	}
	if releasedAny && !anyFalse(covered) {
		return nil
	}

	allocs, err := al.Store.List(func(netip.Addr) bool { return true })
	if err != nil {
		return err
	}
	var mine, legacy []Allocation
	for _, alloc := range allocs {
		switch {
		case alloc.Owner.owns(att):
			mine = append(mine, alloc)
		case alloc.Owner.ownsLegacy(att):
			legacy = append(legacy, alloc)
		}
	}
	if len(mine) == 0 {
		mine = legacy
	}
	var errs []error
	for _, alloc := range mine {
		if err := al.Store.remove(alloc); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func anyFalse(bs []bool) bool {
	for _, b := range bs {
		if !b {
			return true
		}
	}
	return false
}

// Check verifies that att holds an address in every range set (code 102
// otherwise). known are the addresses of the previous result: each one inside
// a set must be reserved for att. Sets they do not cover are looked up in
// att's index entry, and only those it does not cover either (an allocation
// cnikit did not make) in the directory.
func (al *Allocator) Check(att Attachment, known []netip.Addr) error {
	if err := al.Store.Lock(); err != nil {
		return err
	}
	defer al.Store.Unlock()

	covered := make([]bool, len(al.Sets))
	for _, a := range known {
		i := al.setFor(a)
		if i < 0 {
			continue // not an address of these ranges
		}
		owner, err := al.Store.Owner(a)
		if errors.Is(err, fs.ErrNotExist) {
			return cni.Errorf(CodeAllocationMissing, "IP %s of the previous result is not reserved for %s", a, att)
		}
		if err != nil {
			return err
		}
		if !owner.owns(att) && !owner.ownsLegacy(att) {
			return cni.Errorf(CodeAllocationMissing, "IP %s of the previous result is reserved by %s, not by %s", a, owner, att)
		}
		covered[i] = true
	}
	if !anyFalse(covered) {
		return nil
	}
	held, _, err := al.Store.heldByIndex(att)
	if err != nil {
		return err
	}
	for _, a := range held {
		if i := al.setFor(a); i >= 0 {
			covered[i] = true
		}
	}
	if !anyFalse(covered) {
		return nil
	}
	uncovered := func(a netip.Addr) bool {
		i := al.setFor(a)
		return i >= 0 && !covered[i]
	}
	allocs, err := al.Store.List(uncovered)
	if err != nil {
		return err
	}
	for _, alloc := range allocs {
		if uncovered(alloc.Addr) && (alloc.Owner.owns(att) || alloc.Owner.ownsLegacy(att)) {
			covered[al.setFor(alloc.Addr)] = true
		}
	}
	for i, ok := range covered {
		if !ok {
			set := &al.Sets[i]
			return cni.Errorf(CodeAllocationMissing, "no IP address is reserved for %s in range set %s (%s)", att, set.Where, set)
		}
	}
	return nil
}

// Exhausted returns the range sets that have no free address left. It reads
// only the directory's names and does not need the lock: the answer is a
// snapshot either way.
func (al *Allocator) Exhausted() ([]*RangeSet, error) {
	allocs, err := al.Store.List(nil)
	if err != nil {
		return nil, err
	}
	used := make([]uint64, len(al.Sets))
	for _, alloc := range allocs {
		if i := al.setFor(alloc.Addr); i >= 0 && al.Sets[i].Allocatable(alloc.Addr) {
			used[i]++
		}
	}
	var out []*RangeSet
	for i := range al.Sets {
		if used[i] >= al.Sets[i].Size() {
			out = append(out, &al.Sets[i])
		}
	}
	return out, nil
}
