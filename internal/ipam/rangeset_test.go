package ipam

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/cnikit/cnikit/cni"
)

func TestParseRangeSet(t *testing.T) {
	tests := []struct {
		name    string
		specs   []RangeSpec
		wantErr string
	}{
		{name: "two disjoint ranges of one subnet", specs: []RangeSpec{
			{Subnet: "10.0.0.0/24", RangeStart: "10.0.0.10", RangeEnd: "10.0.0.19"},
			{Subnet: "10.0.0.0/24", RangeStart: "10.0.0.20", RangeEnd: "10.0.0.29"}}},
		{name: "two subnets", specs: []RangeSpec{{Subnet: "10.0.0.0/24"}, {Subnet: "10.0.1.0/24"}}},
		{name: "empty", specs: nil, wantErr: "ipam.ranges[2]: empty range set"},
		{name: "mixed families", specs: []RangeSpec{{Subnet: "10.0.0.0/24"}, {Subnet: "fd00::/64"}},
			wantErr: "ipam.ranges[2]: mixes address families"},
		{name: "overlapping ranges", specs: []RangeSpec{
			{Subnet: "10.0.0.0/24", RangeStart: "10.0.0.10", RangeEnd: "10.0.0.20"},
			{Subnet: "10.0.0.0/24", RangeStart: "10.0.0.20", RangeEnd: "10.0.0.29"}},
			wantErr: "ranges 10.0.0.10-10.0.0.20 (subnet 10.0.0.0/24) and 10.0.0.20-10.0.0.29 (subnet 10.0.0.0/24) overlap"},
		{name: "nested subnets", specs: []RangeSpec{{Subnet: "10.0.0.0/16"}, {Subnet: "10.0.3.0/24"}},
			wantErr: "overlap"},
		{name: "bad range names its index", specs: []RangeSpec{{Subnet: "10.0.0.0/24"}, {Subnet: "10.0.1.0/31"}},
			wantErr: "ipam.ranges[2][1]: subnet 10.0.1.0/31 is too small"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set, err := ParseRangeSet("ipam.ranges[2]", tt.specs)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if len(set.Ranges) != len(tt.specs) {
					t.Errorf("got %d ranges, want %d", len(set.Ranges), len(tt.specs))
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || cni.CodeOf(err) != cni.CodeInvalidNetworkConfig {
				t.Errorf("error %v (code %d), want code 7 containing %q", err, cni.CodeOf(err), tt.wantErr)
			}
		})
	}
}

func mustSet(t testing.TB, where string, specs ...RangeSpec) RangeSet {
	t.Helper()
	s, err := ParseRangeSet(where, specs)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestCheckDisjoint(t *testing.T) {
	a := mustSet(t, "ipam.ranges[0]", RangeSpec{Subnet: "10.0.0.0/24"})
	b := mustSet(t, "ipam.ranges[1]", RangeSpec{Subnet: "10.0.1.0/24"})
	c := mustSet(t, "ipam.ranges[2]", RangeSpec{Subnet: "10.0.0.128/25"})
	v6 := mustSet(t, "ipam.ranges[3]", RangeSpec{Subnet: "fd00::/64"})
	if err := CheckDisjoint([]RangeSet{a, b, v6}); err != nil {
		t.Errorf("disjoint sets: %v", err)
	}
	err := CheckDisjoint([]RangeSet{a, b, c})
	if err == nil || !strings.Contains(err.Error(), "range set ipam.ranges[0] overlaps range set ipam.ranges[2]") {
		t.Errorf("overlapping sets: got %v", err)
	}
}

func TestCandidates(t *testing.T) {
	tests := []struct {
		name  string
		specs []RangeSpec
		last  string // "" for none
		limit int    // 0: all
		want  string
	}{
		{name: "v4 from the start skips the gateway", specs: []RangeSpec{{Subnet: "10.0.0.0/29"}},
			want: "10.0.0.2 10.0.0.3 10.0.0.4 10.0.0.5 10.0.0.6"},
		{name: "v4 after last, wrapping, last at the end", specs: []RangeSpec{{Subnet: "10.0.0.0/29"}}, last: "10.0.0.4",
			want: "10.0.0.5 10.0.0.6 10.0.0.2 10.0.0.3 10.0.0.4"},
		{name: "last at the range end wraps to its start", specs: []RangeSpec{{Subnet: "10.0.0.0/29"}}, last: "10.0.0.6",
			want: "10.0.0.2 10.0.0.3 10.0.0.4 10.0.0.5 10.0.0.6"},
		{name: "last outside the set starts over", specs: []RangeSpec{{Subnet: "10.0.0.0/29"}}, last: "10.9.9.9",
			want: "10.0.0.2 10.0.0.3 10.0.0.4 10.0.0.5 10.0.0.6"},
		{name: "last is the gateway", specs: []RangeSpec{{Subnet: "10.0.0.0/29"}}, last: "10.0.0.1",
			want: "10.0.0.2 10.0.0.3 10.0.0.4 10.0.0.5 10.0.0.6"},
		{name: "gateway in the middle", specs: []RangeSpec{{Subnet: "10.0.0.0/29", Gateway: "10.0.0.4"}},
			want: "10.0.0.1 10.0.0.2 10.0.0.3 10.0.0.5 10.0.0.6"},
		{name: "explicit network and broadcast are skipped", specs: []RangeSpec{{Subnet: "10.0.0.0/30", RangeStart: "10.0.0.0", RangeEnd: "10.0.0.3", Gateway: "10.0.0.2"}},
			want: "10.0.0.1"},
		{name: "two ranges in order", specs: []RangeSpec{
			{Subnet: "10.0.0.0/29", RangeStart: "10.0.0.5"}, {Subnet: "10.0.1.0/29", RangeEnd: "10.0.1.3"}},
			want: "10.0.0.5 10.0.0.6 10.0.1.2 10.0.1.3"},
		{name: "two ranges, last at the end of the first", specs: []RangeSpec{
			{Subnet: "10.0.0.0/29", RangeStart: "10.0.0.5"}, {Subnet: "10.0.1.0/29", RangeEnd: "10.0.1.3"}}, last: "10.0.0.6",
			want: "10.0.1.2 10.0.1.3 10.0.0.5 10.0.0.6"},
		{name: "two ranges, last in the second wraps to the first", specs: []RangeSpec{
			{Subnet: "10.0.0.0/29", RangeStart: "10.0.0.5"}, {Subnet: "10.0.1.0/29", RangeEnd: "10.0.1.3"}}, last: "10.0.1.2",
			want: "10.0.1.3 10.0.0.5 10.0.0.6 10.0.1.2"},
		{name: "three ranges, last in the middle one", specs: []RangeSpec{
			{Subnet: "10.0.0.0/30"}, {Subnet: "10.0.1.0/30"}, {Subnet: "10.0.2.0/30"}}, last: "10.0.1.2",
			want: "10.0.2.2 10.0.0.2 10.0.1.2"},
		{name: "v6 /120 edges", specs: []RangeSpec{{Subnet: "fd00::/120", RangeStart: "fd00::fd"}},
			want: "fd00::fd fd00::fe fd00::ff"},
		{name: "v6 /120 wraps at the last address", specs: []RangeSpec{{Subnet: "fd00::/120", RangeStart: "fd00::fd"}}, last: "fd00::ff",
			want: "fd00::fd fd00::fe fd00::ff"},
		{name: "v6 /64 start", specs: []RangeSpec{{Subnet: "fd00::/64"}}, limit: 3,
			want: "fd00::2 fd00::3 fd00::4"},
		{name: "v6 /64 wrap-around", specs: []RangeSpec{{Subnet: "fd00::/64"}}, last: "fd00::ffff:ffff:ffff:fffe", limit: 3,
			want: "fd00::ffff:ffff:ffff:ffff fd00::2 fd00::3"},
		{name: "only the gateway yields nothing", specs: []RangeSpec{{Subnet: "10.0.0.0/29", RangeEnd: "10.0.0.1"}},
			want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set := mustSet(t, "test", tt.specs...)
			var last netip.Addr
			if tt.last != "" {
				last = netip.MustParseAddr(tt.last)
			}
			var got []string
			for a := range set.Candidates(last) {
				got = append(got, a.String())
				if len(got) == tt.limit {
					break
				}
			}
			if g := strings.Join(got, " "); g != tt.want {
				t.Errorf("got  %s\nwant %s", g, tt.want)
			}
		})
	}
}
