package hostlocal

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/cnikit/cnikit/cni"
)

// conf builds a host-local request: ipam is the ipam section (without type),
// top holds any other top-level keys.
func conf(t testing.TB, version string, ipam map[string]any, top map[string]any) string {
	t.Helper()
	section := map[string]any{"type": "host-local"}
	for k, v := range ipam {
		section[k] = v
	}
	m := map[string]any{"cniVersion": version, "name": "testnet", "type": "bridge", "ipam": section}
	for k, v := range top {
		m[k] = v
	}
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func ranges(subnets ...string) [][]map[string]string {
	var out [][]map[string]string
	for _, s := range subnets {
		out = append(out, []map[string]string{{"subnet": s}})
	}
	return out
}

func describeSets(c *config) string {
	var parts []string
	for _, s := range c.Sets {
		parts = append(parts, s.Where+"="+s.String())
	}
	return strings.Join(parts, " ")
}

func TestParseConfigSets(t *testing.T) {
	tests := []struct {
		name string
		ipam map[string]any
		top  map[string]any
		want string
	}{
		{name: "ranges", ipam: map[string]any{"ranges": ranges("10.0.0.0/24", "fd00::/120")},
			want: "ipam.ranges[0]=10.0.0.1-10.0.0.254 ipam.ranges[1]=fd00::1-fd00::ff"},
		{name: "legacy range alone", ipam: map[string]any{"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.10", "rangeEnd": "10.1.0.20", "gateway": "10.1.0.254"},
			want: "ipam=10.1.0.10-10.1.0.20"},
		{name: "legacy range is prepended to ranges", ipam: map[string]any{"subnet": "10.1.0.0/24", "ranges": ranges("fd00::/120")},
			want: "ipam=10.1.0.1-10.1.0.254 ipam.ranges[0]=fd00::1-fd00::ff"},
		{name: "ipRanges are prepended before the legacy range",
			ipam: map[string]any{"subnet": "10.1.0.0/24", "ranges": ranges("fd00::/120")},
			top:  map[string]any{"runtimeConfig": map[string]any{"ipRanges": ranges("10.2.0.0/24")}},
			want: "runtimeConfig.ipRanges[0]=10.2.0.1-10.2.0.254 ipam=10.1.0.1-10.1.0.254 ipam.ranges[0]=fd00::1-fd00::ff"},
		{name: "ipRanges alone", ipam: map[string]any{},
			top:  map[string]any{"runtimeConfig": map[string]any{"ipRanges": ranges("10.2.0.0/24")}},
			want: "runtimeConfig.ipRanges[0]=10.2.0.1-10.2.0.254"},
		{name: "legacy keys without subnet are ignored", ipam: map[string]any{"gateway": "10.3.0.9", "ranges": ranges("10.3.0.0/24")},
			want: "ipam.ranges[0]=10.3.0.1-10.3.0.254"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseConfig([]byte(conf(t, "1.1.0", tt.ipam, tt.top)), "", parseOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got := describeSets(c); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestParseConfigRequested(t *testing.T) {
	base := map[string]any{"ranges": ranges("10.0.0.0/24", "fd00::/120")}
	argsIPs := func(ips ...string) map[string]any {
		return map[string]any{"cni": map[string]any{"ips": ips}}
	}
	tests := []struct {
		name    string
		top     map[string]any
		cniArgs string
		want    string
	}{
		{name: "none", want: ""},
		{name: "CNI_ARGS IP", cniArgs: "IP=10.0.0.5", want: "10.0.0.5"},
		{name: "CNI_ARGS IP with prefix", cniArgs: "IgnoreUnknown=1;K8S_POD_NAME=x;IP=10.0.0.5/24", want: "10.0.0.5"},
		{name: "CNI_ARGS empty IP", cniArgs: "IP=", want: ""},
		{name: "args.cni.ips", top: map[string]any{"args": argsIPs("10.0.0.6/24", "fd00::6")}, want: "10.0.0.6 fd00::6"},
		{name: "args.cni.ips wins over CNI_ARGS IP", top: map[string]any{"args": argsIPs("10.0.0.6")}, cniArgs: "IP=10.0.0.5", want: "10.0.0.6"},
		{name: "empty args.cni.ips leaves CNI_ARGS IP", top: map[string]any{"args": argsIPs()}, cniArgs: "IP=10.0.0.5", want: "10.0.0.5"},
		{name: "runtimeConfig.ips adds to CNI_ARGS", top: map[string]any{"runtimeConfig": map[string]any{"ips": []string{"fd00::7/120"}}},
			cniArgs: "IP=10.0.0.5", want: "fd00::7 10.0.0.5"},
		{name: "runtimeConfig.ips adds to args", top: map[string]any{"args": argsIPs("10.0.0.6"), "runtimeConfig": map[string]any{"ips": []string{"fd00::7"}}},
			want: "10.0.0.6 fd00::7"},
		{name: "duplicates merge", top: map[string]any{"args": argsIPs("10.0.0.6"), "runtimeConfig": map[string]any{"ips": []string{"10.0.0.6/24"}}},
			want: "10.0.0.6"},
		{name: "other args namespaces are ignored", top: map[string]any{"args": map[string]any{"k8s": map[string]any{"x": 1}}}, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseConfig([]byte(conf(t, "1.1.0", base, tt.top)), tt.cniArgs, parseOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, a := range c.Requested {
				got = append(got, a.String())
			}
			if strings.Join(got, " ") != tt.want {
				t.Errorf("got %v, want %s", got, tt.want)
			}
		})
	}
}

func TestParseConfigErrors(t *testing.T) {
	good := ranges("10.0.0.0/24")
	tests := []struct {
		name    string
		stdin   string
		cniArgs string
		code    cni.Code
		want    string
	}{
		{name: "not JSON", stdin: "{", code: cni.CodeDecodingFailure, want: "decoding configuration"},
		{name: "wrong JSON type", stdin: `{"cniVersion":"1.0.0","name":"n","ipam":{"ranges":"10.0.0.0/24"}}`, code: cni.CodeInvalidNetworkConfig,
			want: "ipam.ranges"},
		{name: "no ipam", stdin: `{"cniVersion":"1.0.0","name":"n","type":"x"}`, code: cni.CodeInvalidNetworkConfig, want: "missing ipam section"},
		{name: "no ranges", stdin: conf(t, "1.0.0", map[string]any{}, nil), code: cni.CodeInvalidNetworkConfig, want: "no IP ranges specified"},
		{name: "bad network name", stdin: `{"cniVersion":"1.0.0","name":"../x","ipam":{}}`, code: cni.CodeInvalidNetworkConfig, want: `network name "../x"`},
		{name: "subnet too small", stdin: conf(t, "1.0.0", map[string]any{"ranges": ranges("10.0.0.0/31")}, nil),
			code: cni.CodeInvalidNetworkConfig, want: "ipam.ranges[0][0]: subnet 10.0.0.0/31 is too small"},
		{name: "legacy rangeStart outside", stdin: conf(t, "1.0.0", map[string]any{"subnet": "10.2.0.0/24", "rangeStart": "10.1.0.5"}, nil),
			code: cni.CodeInvalidNetworkConfig, want: "ipam: rangeStart 10.1.0.5 is not in subnet 10.2.0.0/24"},
		{name: "ipRanges bad", stdin: conf(t, "1.0.0", map[string]any{}, map[string]any{"runtimeConfig": map[string]any{"ipRanges": ranges("10.0.0.1/24")}}),
			code: cni.CodeInvalidNetworkConfig, want: "runtimeConfig.ipRanges[0][0]: subnet 10.0.0.1/24 has host bits set"},
		{name: "sets overlap", stdin: conf(t, "1.0.0", map[string]any{"ranges": ranges("10.0.0.0/24", "10.0.0.0/25")}, nil),
			code: cni.CodeInvalidNetworkConfig, want: "range set ipam.ranges[0] overlaps range set ipam.ranges[1]"},
		{name: "legacy overlaps ranges", stdin: conf(t, "1.0.0", map[string]any{"subnet": "10.0.0.0/24", "ranges": good}, nil),
			code: cni.CodeInvalidNetworkConfig, want: "range set ipam overlaps range set ipam.ranges[0]"},
		{name: "0.2.0 with two IPv4 sets", stdin: conf(t, "0.2.0", map[string]any{"ranges": ranges("10.0.0.0/24", "10.0.1.0/24")}, nil),
			code: cni.CodeInvalidNetworkConfig, want: `cniVersion "0.2.0" allows one address per family`},
		{name: "relative dataDir", stdin: conf(t, "1.0.0", map[string]any{"ranges": good, "dataDir": "var/lib"}, nil),
			code: cni.CodeInvalidNetworkConfig, want: `ipam.dataDir "var/lib" is not an absolute path`},
		{name: "bad route dst", stdin: conf(t, "1.0.0", map[string]any{"ranges": good, "routes": []map[string]string{{"dst": "0.0.0.0"}}}, nil),
			code: cni.CodeInvalidNetworkConfig, want: `ipam.routes[0]: dst "0.0.0.0" is not a CIDR`},
		{name: "route gw of the other family", stdin: conf(t, "1.0.0", map[string]any{"ranges": good, "routes": []map[string]string{{"dst": "::/0", "gw": "10.0.0.1"}}}, nil),
			code: cni.CodeInvalidNetworkConfig, want: `ipam.routes[0]: gw 10.0.0.1 is not of the family of dst ::/0`},
		{name: "bad args.cni.ips", stdin: conf(t, "1.0.0", map[string]any{"ranges": good}, map[string]any{"args": map[string]any{"cni": map[string]any{"ips": []string{"10.0.0"}}}}),
			code: cni.CodeInvalidNetworkConfig, want: `args.cni.ips[0]: "10.0.0" is not an IP address`},
		{name: "bad runtimeConfig.ips", stdin: conf(t, "1.0.0", map[string]any{"ranges": good}, map[string]any{"runtimeConfig": map[string]any{"ips": []string{"x"}}}),
			code: cni.CodeInvalidNetworkConfig, want: `runtimeConfig.ips[0]: "x" is not an IP address`},
		{name: "bad CNI_ARGS IP", stdin: conf(t, "1.0.0", map[string]any{"ranges": good}, nil), cniArgs: "IP=10.0.0.300",
			code: cni.CodeInvalidEnvironment, want: `CNI_ARGS: IP="10.0.0.300"`},
		{name: "unknown CNI_ARGS key", stdin: conf(t, "1.0.0", map[string]any{"ranges": good}, nil), cniArgs: "K8S_POD_NAME=x",
			code: cni.CodeInvalidEnvironment, want: "unknown args"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseConfig([]byte(tt.stdin), tt.cniArgs, parseOptions{})
			if cni.CodeOf(err) != tt.code || !strings.Contains(fmt.Sprint(err), tt.want) {
				t.Errorf("got %v (code %d), want code %d containing %q", err, cni.CodeOf(err), tt.code, tt.want)
			}
		})
	}
}

func TestParseConfigDefaultsAndRoutes(t *testing.T) {
	c, err := parseConfig([]byte(conf(t, "1.1.0", map[string]any{
		"ranges": ranges("10.0.0.0/24"),
		"routes": []map[string]any{{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.0.0.254", "mtu": 1400, "priority": 5, "table": 100}},
	}, nil)), "", parseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c.DataDir != "/var/lib/cni/networks" {
		t.Errorf("dataDir %q", c.DataDir)
	}
	if len(c.Routes) != 2 || c.Routes[0].Dst.String() != "0.0.0.0/0" || c.Routes[0].GW != nil ||
		c.Routes[1].GW.String() != "10.0.0.254" || c.Routes[1].MTU != 1400 || c.Routes[1].Priority != 5 || *c.Routes[1].Table != 100 {
		t.Errorf("routes %+v %+v", c.Routes[0], c.Routes[1])
	}
}

func TestParseConfigRangesOptional(t *testing.T) {
	stdin := []byte(`{"cniVersion":"1.1.0","name":"n","ipam":{"type":"host-local"},"cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}]}`)
	c, err := parseConfig(stdin, "", parseOptions{rangesOptional: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Sets) != 0 || len(c.Keep) != 1 || c.Keep[0].ContainerID != "a" || c.Keep[0].IfName != "eth0" {
		t.Errorf("got %+v", c)
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(conf(f, "1.1.0", map[string]any{"ranges": ranges("10.0.0.0/24", "fd00::/120"), "routes": []map[string]string{{"dst": "0.0.0.0/0"}}}, nil)), "IP=10.0.0.5")
	f.Add([]byte(conf(f, "0.2.0", map[string]any{"subnet": "10.1.0.0/16", "rangeStart": "10.1.0.5", "gateway": "10.1.0.1"}, nil)), "")
	f.Add([]byte(conf(f, "1.0.0", map[string]any{}, map[string]any{"runtimeConfig": map[string]any{"ipRanges": ranges("10.2.0.0/24"), "ips": []string{"10.2.0.9/24"}}})), "IgnoreUnknown=1;X=y")
	f.Add([]byte(`{"cniVersion":"1.0.0","name":"n","ipam":{"ranges":[[{"subnet":"fd00::/64","rangeStart":"fd00::ffff","rangeEnd":"fd00::1"}]]},"prevResult":{"ips":[{"address":"10.0.0.2/24"}]}}`), "")
	f.Fuzz(func(t *testing.T, stdin []byte, cniArgs string) {
		c, err := parseConfig(stdin, cniArgs, parseOptions{})
		if err != nil {
			if _, ok := err.(*cni.Error); !ok {
				t.Fatalf("error %v is a %T, not a *cni.Error", err, err)
			}
			if c != nil {
				t.Fatalf("config returned with an error")
			}
			return
		}
		if len(c.Sets) == 0 {
			t.Fatalf("accepted a configuration without range sets")
		}
		for i := range c.Sets {
			for j := range c.Sets[i].Ranges {
				r := &c.Sets[i].Ranges[j]
				if !r.Subnet.Contains(r.Start) || !r.Subnet.Contains(r.End) || r.Start.Compare(r.End) > 0 {
					t.Fatalf("accepted an inconsistent range %s in %s", r, r.Subnet)
				}
			}
		}
	})
}
