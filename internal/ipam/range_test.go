package ipam

import (
	"math"
	"net/netip"
	"strings"
	"testing"

	"github.com/cnikit/cnikit/cni"
)

func TestParseRange(t *testing.T) {
	tests := []struct {
		name    string
		spec    RangeSpec
		want    string // "start-end gw"
		wantErr string
	}{
		{name: "v4 defaults", spec: RangeSpec{Subnet: "10.0.0.0/24"}, want: "10.0.0.1-10.0.0.254 gw 10.0.0.1"},
		{name: "v4 /30 is the smallest", spec: RangeSpec{Subnet: "10.0.0.4/30"}, want: "10.0.0.5-10.0.0.6 gw 10.0.0.5"},
		{name: "v6 /64 defaults end at the last address", spec: RangeSpec{Subnet: "fd00::/64"},
			want: "fd00::1-fd00::ffff:ffff:ffff:ffff gw fd00::1"},
		{name: "v6 /120", spec: RangeSpec{Subnet: "fd00:1::/120"}, want: "fd00:1::1-fd00:1::ff gw fd00:1::1"},
		{name: "v6 /126 is the smallest", spec: RangeSpec{Subnet: "fd00::/126"}, want: "fd00::1-fd00::3 gw fd00::1"},
		{name: "explicit bounds and gateway", spec: RangeSpec{Subnet: "10.1.0.0/16", RangeStart: "10.1.2.10", RangeEnd: "10.1.2.20", Gateway: "10.1.0.254"},
			want: "10.1.2.10-10.1.2.20 gw 10.1.0.254"},
		{name: "gateway outside the subnet is accepted", spec: RangeSpec{Subnet: "10.1.0.0/24", Gateway: "10.9.9.9"},
			want: "10.1.0.1-10.1.0.254 gw 10.9.9.9"},
		{name: "start equal to end", spec: RangeSpec{Subnet: "10.1.0.0/24", RangeStart: "10.1.0.7", RangeEnd: "10.1.0.7"},
			want: "10.1.0.7-10.1.0.7 gw 10.1.0.1"},
		{name: "mapped addresses count as IPv4", spec: RangeSpec{Subnet: "10.1.0.0/24", RangeStart: "::ffff:10.1.0.9"},
			want: "10.1.0.9-10.1.0.254 gw 10.1.0.1"},

		{name: "missing subnet", spec: RangeSpec{RangeStart: "10.0.0.1"}, wantErr: "subnet is missing"},
		{name: "subnet not a CIDR", spec: RangeSpec{Subnet: "10.0.0.0"}, wantErr: `subnet "10.0.0.0" is not a CIDR`},
		{name: "subnet garbage", spec: RangeSpec{Subnet: "ten/8"}, wantErr: `subnet "ten/8" is not a CIDR`},
		{name: "v4 /31 too small", spec: RangeSpec{Subnet: "10.0.0.0/31"}, wantErr: "subnet 10.0.0.0/31 is too small"},
		{name: "v4 /32 too small", spec: RangeSpec{Subnet: "10.0.0.1/32"}, wantErr: "subnet 10.0.0.1/32 is too small"},
		{name: "v6 /127 too small", spec: RangeSpec{Subnet: "fd00::/127"}, wantErr: "subnet fd00::/127 is too small"},
		{name: "v6 /128 too small", spec: RangeSpec{Subnet: "fd00::1/128"}, wantErr: "subnet fd00::1/128 is too small"},
		{name: "host bits set", spec: RangeSpec{Subnet: "10.0.0.5/24"}, wantErr: "subnet 10.0.0.5/24 has host bits set (the network is 10.0.0.0/24)"},
		{name: "v6 host bits set", spec: RangeSpec{Subnet: "fd00::5/64"}, wantErr: "subnet fd00::5/64 has host bits set"},
		{name: "mapped subnet", spec: RangeSpec{Subnet: "::ffff:10.0.0.0/120"}, wantErr: "IPv4-mapped"},
		{name: "rangeStart outside subnet", spec: RangeSpec{Subnet: "10.2.0.0/24", RangeStart: "10.1.0.5"},
			wantErr: "rangeStart 10.1.0.5 is not in subnet 10.2.0.0/24"},
		{name: "rangeEnd outside subnet", spec: RangeSpec{Subnet: "10.2.0.0/24", RangeEnd: "10.2.1.0"},
			wantErr: "rangeEnd 10.2.1.0 is not in subnet 10.2.0.0/24"},
		{name: "rangeStart after rangeEnd", spec: RangeSpec{Subnet: "10.2.0.0/24", RangeStart: "10.2.0.200", RangeEnd: "10.2.0.100"},
			wantErr: "rangeStart 10.2.0.200 is after rangeEnd 10.2.0.100"},
		{name: "rangeStart wrong family", spec: RangeSpec{Subnet: "10.2.0.0/24", RangeStart: "fd00::1"},
			wantErr: "rangeStart fd00::1 is IPv6 but subnet 10.2.0.0/24 is IPv4"},
		{name: "gateway wrong family", spec: RangeSpec{Subnet: "fd00::/64", Gateway: "10.0.0.1"},
			wantErr: "gateway 10.0.0.1 is IPv4 but subnet fd00::/64 is IPv6"},
		{name: "rangeEnd not an address", spec: RangeSpec{Subnet: "10.2.0.0/24", RangeEnd: "10.2.0.300"},
			wantErr: `rangeEnd "10.2.0.300" is not an IP address`},
		{name: "gateway with zone", spec: RangeSpec{Subnet: "fe80::/64", Gateway: "fe80::1%eth0"},
			wantErr: `gateway "fe80::1%eth0" is not an IP address`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseRange("ipam.ranges[0][0]", tt.spec)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("got range %s, want error %q", &r, tt.wantErr)
				}
				if cni.CodeOf(err) != cni.CodeInvalidNetworkConfig {
					t.Errorf("code %d, want 7", cni.CodeOf(err))
				}
				if !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "ipam.ranges[0][0]: ") {
					t.Errorf("error %q, want it to name the place and contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := r.String() + " gw " + r.Gateway.String(); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func mustRange(t testing.TB, spec RangeSpec) Range {
	t.Helper()
	r, err := ParseRange("test", spec)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRangeAllocatable(t *testing.T) {
	full := mustRange(t, RangeSpec{Subnet: "10.0.0.0/29", RangeStart: "10.0.0.0", RangeEnd: "10.0.0.7", Gateway: "10.0.0.6"})
	v6 := mustRange(t, RangeSpec{Subnet: "fd00::/120", RangeStart: "fd00::"})
	tests := []struct {
		name string
		r    Range
		addr string
		want bool
	}{
		{"v4 network address", full, "10.0.0.0", false},
		{"v4 broadcast address", full, "10.0.0.7", false},
		{"v4 gateway", full, "10.0.0.6", false},
		{"v4 ordinary", full, "10.0.0.1", true},
		{"v4 default gateway is free in an explicit range", full, "10.0.0.1", true},
		{"outside", full, "10.0.0.8", false},
		{"other family", full, "fd00::1", false},
		{"v6 subnet address is allocatable", v6, "fd00::", true},
		{"v6 gateway", v6, "fd00::1", false},
		{"v6 last address", v6, "fd00::ff", true},
		{"mapped v4", full, "::ffff:10.0.0.2", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.r.Allocatable(netip.MustParseAddr(tt.addr)); got != tt.want {
				t.Errorf("Allocatable(%s) = %v, want %v", tt.addr, got, tt.want)
			}
		})
	}
}

func TestRangeSize(t *testing.T) {
	tests := []struct {
		name string
		spec RangeSpec
		want uint64
	}{
		{"v4 /24 defaults", RangeSpec{Subnet: "10.0.0.0/24"}, 253},
		{"v4 /30", RangeSpec{Subnet: "10.0.0.0/30"}, 1},
		{"v4 whole subnet", RangeSpec{Subnet: "10.0.0.0/29", RangeStart: "10.0.0.0", RangeEnd: "10.0.0.7"}, 5},
		{"gateway outside", RangeSpec{Subnet: "10.0.0.0/29", Gateway: "10.1.0.1"}, 6},
		{"only the gateway", RangeSpec{Subnet: "10.0.0.0/29", RangeStart: "10.0.0.1", RangeEnd: "10.0.0.1"}, 0},
		{"v6 /120", RangeSpec{Subnet: "fd00::/120"}, 254},
		{"v6 /64 saturates", RangeSpec{Subnet: "fd00::/64"}, math.MaxUint64 - 1},
		{"v6 /48 saturates", RangeSpec{Subnet: "fd00::/48"}, math.MaxUint64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mustRange(t, tt.spec)
			if got := r.Size(); got != tt.want {
				t.Errorf("Size() = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestParseRequestedIP(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"10.0.0.5", "10.0.0.5"},
		{"10.0.0.5/24", "10.0.0.5"},
		{"fd00::5/64", "fd00::5"},
		{"::ffff:10.0.0.5", "10.0.0.5"},
		{"10.0.0", ""},
		{"fe80::1%eth0", ""},
		{"", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			a, err := ParseRequestedIP(tt.in)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("got %s, want an error", a)
				}
				return
			}
			if err != nil || a.String() != tt.want {
				t.Errorf("got %s, %v; want %s", a, err, tt.want)
			}
		})
	}
}
