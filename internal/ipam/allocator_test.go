package ipam

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/cnikit/cnikit/cni"
)

// newAllocator gives an allocator over a fresh store with the given sets, each
// set written as "subnet[,subnet...]".
func newAllocator(t *testing.T, sets ...string) *Allocator {
	t.Helper()
	s, err := Open(t.TempDir(), "net1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	al := &Allocator{Store: s}
	for i, set := range sets {
		var specs []RangeSpec
		for _, subnet := range strings.Split(set, ",") {
			specs = append(specs, RangeSpec{Subnet: subnet})
		}
		al.Sets = append(al.Sets, mustSet(t, fmt.Sprintf("ipam.ranges[%d]", i), specs...))
	}
	return al
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func leaseString(leases []Lease) string {
	var parts []string
	for _, l := range leases {
		parts = append(parts, l.Range.Prefix(l.Addr).String()+" gw "+l.Range.Gateway.String())
	}
	return strings.Join(parts, ", ")
}

func TestAllocate(t *testing.T) {
	type step struct {
		att       Attachment
		requested []string
		want      string   // leases, or the error text
		code      cni.Code // 0 for success
	}
	a := func(id string) Attachment { return Attachment{id, "eth0"} }
	tests := []struct {
		name  string
		sets  []string
		steps []step
	}{
		{name: "dual-stack, round-robin", sets: []string{"10.0.0.0/29", "fd00::/125"}, steps: []step{
			{att: a("c1"), want: "10.0.0.2/29 gw 10.0.0.1, fd00::2/125 gw fd00::1"},
			{att: a("c2"), want: "10.0.0.3/29 gw 10.0.0.1, fd00::3/125 gw fd00::1"},
		}},
		{name: "requested address", sets: []string{"10.0.0.0/29", "fd00::/125"}, steps: []step{
			{att: a("c1"), requested: []string{"10.0.0.5"}, want: "10.0.0.5/29 gw 10.0.0.1, fd00::2/125 gw fd00::1"},
			{att: a("c2"), want: "10.0.0.6/29 gw 10.0.0.1, fd00::3/125 gw fd00::1"},
			{att: a("c3"), want: "10.0.0.2/29 gw 10.0.0.1, fd00::4/125 gw fd00::1"},
		}},
		{name: "requested in both families", sets: []string{"10.0.0.0/29", "fd00::/125"}, steps: []step{
			{att: a("c1"), requested: []string{"fd00::6", "10.0.0.6"}, want: "10.0.0.6/29 gw 10.0.0.1, fd00::6/125 gw fd00::1"},
		}},
		{name: "requested taken by another", sets: []string{"10.0.0.0/29"}, steps: []step{
			{att: a("c1"), requested: []string{"10.0.0.4"}, want: "10.0.0.4/29 gw 10.0.0.1"},
			{att: a("c2"), requested: []string{"10.0.0.4"}, code: cni.CodeTryAgainLater,
				want: "requested IP address 10.0.0.4 is not available: it is reserved by container c1 interface eth0"},
		}},
		{name: "requested already held by the same attachment", sets: []string{"10.0.0.0/29"}, steps: []step{
			{att: a("c1"), requested: []string{"10.0.0.4"}, want: "10.0.0.4/29 gw 10.0.0.1"},
			{att: a("c1"), requested: []string{"10.0.0.4"}, code: CodeDuplicateAllocation, want: "duplicate allocation is not allowed"},
		}},
		{name: "requested outside every set", sets: []string{"10.0.0.0/29"}, steps: []step{
			{att: a("c1"), requested: []string{"10.0.1.4"}, code: cni.CodeInvalidNetworkConfig,
				want: "requested IP 10.0.1.4 is not in any range set (ipam.ranges[0]: 10.0.0.1-10.0.0.6)"},
		}},
		{name: "requested gateway", sets: []string{"10.0.0.0/29"}, steps: []step{
			{att: a("c1"), requested: []string{"10.0.0.1"}, code: cni.CodeInvalidNetworkConfig,
				want: "requested IP 10.0.0.1 is the gateway of subnet 10.0.0.0/29"},
		}},
		{name: "two requested in one set", sets: []string{"10.0.0.0/29"}, steps: []step{
			{att: a("c1"), requested: []string{"10.0.0.2", "10.0.0.3"}, code: cni.CodeInvalidNetworkConfig,
				want: "requested IPs 10.0.0.2 and 10.0.0.3 are both in range set ipam.ranges[0]"},
		}},
		{name: "duplicate allocation", sets: []string{"10.0.0.0/29"}, steps: []step{
			{att: a("c1"), want: "10.0.0.2/29 gw 10.0.0.1"},
			{att: a("c1"), code: CodeDuplicateAllocation,
				want: "10.0.0.2 has been allocated to container c1 interface eth0, duplicate allocation is not allowed"},
			{att: Attachment{"c1", "eth1"}, want: "10.0.0.3/29 gw 10.0.0.1"},
		}},
		{name: "exhaustion names the ranges", sets: []string{"10.0.0.0/30,10.0.1.0/30"}, steps: []step{
			{att: a("c1"), want: "10.0.0.2/30 gw 10.0.0.1"},
			{att: a("c2"), want: "10.0.1.2/30 gw 10.0.1.1"},
			{att: a("c3"), code: CodeRangeExhausted,
				want: "no IP addresses available in range set ipam.ranges[0]: 10.0.0.1-10.0.0.2,10.0.1.1-10.0.1.2"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			al := newAllocator(t, tt.sets...)
			for i, st := range tt.steps {
				leases, err := al.Allocate(st.att, addrs(st.requested...))
				if st.code != 0 {
					if cni.CodeOf(err) != st.code || !strings.Contains(fmt.Sprint(err), st.want) {
						t.Fatalf("step %d: got %v (code %d), want code %d containing %q", i, err, cni.CodeOf(err), st.code, st.want)
					}
					continue
				}
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				if got := leaseString(leases); got != st.want {
					t.Fatalf("step %d: got %s, want %s", i, got, st.want)
				}
			}
		})
	}
}

// TestAllocateAllOrNothing: when a later set fails, what the earlier sets got
// is released and nothing else changes.
func TestAllocateAllOrNothing(t *testing.T) {
	al := newAllocator(t, "10.0.0.0/29", "fd00::/126")
	if _, err := al.Allocate(Attachment{"c1", "eth0"}, addrs("fd00::2")); err != nil {
		t.Fatal(err)
	}
	if _, err := al.Allocate(Attachment{"c2", "eth0"}, addrs("fd00::3")); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, al.Store.Dir())
	_, err := al.Allocate(Attachment{"c3", "eth0"}, nil)
	if cni.CodeOf(err) != CodeRangeExhausted {
		t.Fatalf("got %v, want exhaustion of the IPv6 set", err)
	}
	// last_reserved_ip.0 may move (as in the reference); reservations may not.
	if after := snapshot(t, al.Store.Dir()); stripLast(after) != stripLast(before) {
		t.Errorf("reservations changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

func stripLast(snap string) string {
	var keep []string
	for _, l := range strings.Split(snap, "\n") {
		if !strings.HasPrefix(l, "last_reserved_ip.") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

func TestAllocateContinuesFromLastReserved(t *testing.T) {
	al := newAllocator(t, "10.0.0.0/29")
	// As the reference leaves it: last reserved .5, .6 still taken.
	if err := os.WriteFile(filepath.Join(al.Store.Dir(), "last_reserved_ip.0"), []byte("10.0.0.5"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(al.Store.Dir(), "10.0.0.6"), []byte("other\r\neth0"), 0o644); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, id := range []string{"c1", "c2"} {
		leases, err := al.Allocate(Attachment{id, "eth0"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, leases[0].Addr.String())
	}
	if strings.Join(got, " ") != "10.0.0.2 10.0.0.3" {
		t.Errorf("got %v, want wrap-around past the taken .6 to .2, then .3", got)
	}
}

func TestRelease(t *testing.T) {
	al := newAllocator(t, "10.0.0.0/29", "fd00::/125")
	c1, c2 := Attachment{"c1", "eth0"}, Attachment{"c2", "eth0"}
	l1, err := al.Allocate(c1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := al.Allocate(c2, nil); err != nil {
		t.Fatal(err)
	}
	known := []netip.Addr{l1[0].Addr, l1[1].Addr}

	listings := al.Store.listings
	if err := al.Release(c1, known); err != nil {
		t.Fatal(err)
	}
	if al.Store.listings != listings {
		t.Errorf("release with the previous result read the directory")
	}
	if left := allOwners(t, al); left != "10.0.0.3=c2/eth0 fd00::3=c2/eth0" {
		t.Errorf("left %s", left)
	}
	// Again: idempotent, now by scanning since the files are gone.
	if err := al.Release(c1, known); err != nil {
		t.Fatal(err)
	}
	// Without a previous result: scan.
	if err := al.Release(c2, nil); err != nil {
		t.Fatal(err)
	}
	if left := allOwners(t, al); left != "" {
		t.Errorf("left %s", left)
	}
}

func TestReleaseDoesNotTouchOthers(t *testing.T) {
	al := newAllocator(t, "10.0.0.0/29")
	c1, c2 := Attachment{"c1", "eth0"}, Attachment{"c2", "eth0"}
	if _, err := al.Allocate(c1, nil); err != nil {
		t.Fatal(err)
	}
	l2, err := al.Allocate(c2, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A stale previous result naming c2's address must not free it for c1.
	if err := al.Release(c1, []netip.Addr{l2[0].Addr}); err != nil {
		t.Fatal(err)
	}
	if left := allOwners(t, al); left != "10.0.0.3=c2/eth0" {
		t.Errorf("left %s", left)
	}
}

func TestReleaseOldFormat(t *testing.T) {
	al := newAllocator(t, "10.0.0.0/29")
	dir := al.Store.Dir()
	for name, content := range map[string]string{"10.0.0.2": "c1", "10.0.0.3": "c1\r\neth1", "10.0.0.4": "c2"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// c1/eth1 has a current-format file: only it goes, as in the reference.
	if err := al.Release(Attachment{"c1", "eth1"}, nil); err != nil {
		t.Fatal(err)
	}
	if left := allOwners(t, al); left != "10.0.0.2=c1/ 10.0.0.4=c2/" {
		t.Errorf("left %s", left)
	}
	// c1/eth0 has none: the old-format files of c1 go.
	if err := al.Release(Attachment{"c1", "eth0"}, nil); err != nil {
		t.Fatal(err)
	}
	if left := allOwners(t, al); left != "10.0.0.4=c2/" {
		t.Errorf("left %s", left)
	}
	// Through the previous result, an old-format file is released by name.
	if err := al.Release(Attachment{"c2", "eth0"}, addrs("10.0.0.4")); err != nil {
		t.Fatal(err)
	}
	if left := allOwners(t, al); left != "" {
		t.Errorf("left %s", left)
	}
}

func allOwners(t *testing.T, al *Allocator) string {
	t.Helper()
	allocs, err := al.Store.List(func(netip.Addr) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	var parts []string
	for _, a := range allocs {
		parts = append(parts, a.Addr.String()+"="+a.Owner.ContainerID+"/"+a.Owner.IfName)
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

func TestCheck(t *testing.T) {
	al := newAllocator(t, "10.0.0.0/29", "fd00::/125")
	c1 := Attachment{"c1", "eth0"}
	l1, err := al.Allocate(c1, nil)
	if err != nil {
		t.Fatal(err)
	}
	known := []netip.Addr{l1[0].Addr, l1[1].Addr}
	listings := al.Store.listings
	if err := al.Check(c1, known); err != nil {
		t.Errorf("check with the previous result: %v", err)
	}
	if al.Store.listings != listings {
		t.Errorf("check with a complete previous result read the directory")
	}
	if err := al.Check(c1, nil); err != nil {
		t.Errorf("check without a previous result: %v", err)
	}
	tests := []struct {
		name  string
		att   Attachment
		known []netip.Addr
		want  string
	}{
		{"other interface", Attachment{"c1", "eth1"}, nil, "no IP address is reserved for container c1 interface eth1 in range set ipam.ranges[0]"},
		{"previous result names a free address", c1, addrs("10.0.0.5"), "IP 10.0.0.5 of the previous result is not reserved"},
		{"previous result names another's address", Attachment{"c2", "eth0"}, known[:1], "is reserved by container c1 interface eth0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := al.Check(tt.att, tt.known)
			if cni.CodeOf(err) != CodeAllocationMissing || !strings.Contains(fmt.Sprint(err), tt.want) {
				t.Errorf("got %v, want code 102 containing %q", err, tt.want)
			}
		})
	}
	// One set released behind our back: the check fails for that set.
	if err := al.Store.Release(l1[1].Addr, c1); err != nil {
		t.Fatal(err)
	}
	if err := al.Check(c1, known[:1]); cni.CodeOf(err) != CodeAllocationMissing || !strings.Contains(err.Error(), "ipam.ranges[1]") {
		t.Errorf("got %v, want the IPv6 set missing", err)
	}
}

func TestExhausted(t *testing.T) {
	al := newAllocator(t, "10.0.0.0/30", "10.0.1.0/29")
	if ex, err := al.Exhausted(); err != nil || len(ex) != 0 {
		t.Fatalf("empty store: %v %v", ex, err)
	}
	if _, err := al.Allocate(Attachment{"c1", "eth0"}, nil); err != nil {
		t.Fatal(err)
	}
	ex, err := al.Exhausted()
	if err != nil || len(ex) != 1 || ex[0].Where != "ipam.ranges[0]" {
		t.Errorf("got %v %v, want the /30 exhausted", ex, err)
	}
}

// TestAllocateReadsNoDirectory: ADD next to other reservations neither lists
// the directory nor opens their files; a duplicate ADD is found through the
// attachment's index entry, by reading its own reservations only.
func TestAllocateReadsNoDirectory(t *testing.T) {
	al := newAllocator(t, "10.0.0.0/24", "fd00::/120")
	for i := 0; i < 20; i++ {
		if _, err := al.Allocate(Attachment{fmt.Sprintf("c%d", i), "eth0"}, nil); err != nil {
			t.Fatal(err)
		}
	}
	listings, reads := al.Store.listings, al.Store.ownerReads
	if _, err := al.Allocate(Attachment{"new", "eth0"}, nil); err != nil {
		t.Fatal(err)
	}
	if al.Store.listings != listings || al.Store.ownerReads != reads {
		t.Errorf("ADD listed %d times and read %d reservation files, want 0 and 0",
			al.Store.listings-listings, al.Store.ownerReads-reads)
	}
	_, err := al.Allocate(Attachment{"c3", "eth0"}, nil)
	if cni.CodeOf(err) != CodeDuplicateAllocation || !strings.Contains(err.Error(), "10.0.0.5 has been allocated to container c3 interface eth0") {
		t.Errorf("duplicate ADD: %v", err)
	}
	if al.Store.listings != listings || al.Store.ownerReads != reads+2 {
		t.Errorf("duplicate ADD listed %d times and read %d reservation files, want 0 and 2 (its own)",
			al.Store.listings-listings, al.Store.ownerReads-reads)
	}
}

// TestOrphanOwnerLinks: a link of an earlier cnikit version whose address file
// was removed (by hand, or by a crash between the two unlinks) or replaced is
// not believed, and goes.
func TestOrphanOwnerLinks(t *testing.T) {
	al := newAllocator(t, "10.0.0.0/24")
	dir := al.Store.Dir()
	c1 := Attachment{"c1", "eth0"}
	plantOwnerLinked(t, dir, "10.0.0.2", c1)
	// The address file is removed by hand and re-created by a reference ADD.
	if err := os.Remove(filepath.Join(dir, "10.0.0.2")); err != nil {
		t.Fatal(err)
	}
	plant(t, dir, "10.0.0.2", "other\r\neth0")
	if err := al.Store.Lock(); err != nil {
		t.Fatal(err)
	}
	allocs, err := al.Store.List(func(netip.Addr) bool { return true })
	al.Store.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if len(allocs) != 1 || allocs[0].Owner != (Attachment{"other", "eth0"}) {
		t.Errorf("List = %+v, want the reference's owner", allocs)
	}
	links, _ := filepath.Glob(filepath.Join(dir, ownerPrefix+"*"))
	if len(links) != 0 {
		t.Errorf("orphan links left: %v", links)
	}
	// c1 holds nothing now: its DEL leaves the other's reservation alone.
	if err := al.Release(c1, nil); err != nil {
		t.Fatal(err)
	}
	if left := allOwners(t, al); left != "10.0.0.2=other/eth0" {
		t.Errorf("left %s", left)
	}
}
