package static

import (
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/plugintest"
)

// request is one invocation of the plugin: a verb, the configuration keys
// besides cniVersion/name/type, and CNI_ARGS.
type request struct {
	verb    string
	version string
	conf    map[string]any
	cniArgs string
}

func (r request) stdin(t testing.TB) []byte {
	t.Helper()
	m := map[string]any{"cniVersion": r.version, "name": "staticnet", "type": "ptp"}
	if r.version == "" {
		m["cniVersion"] = "1.1.0"
	}
	for k, v := range r.conf {
		m[k] = v
	}
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// run invokes the plugin in-process, as a delegating plugin would.
func run(t testing.TB, r request) ([]byte, *cni.Error) {
	t.Helper()
	if r.verb == "" {
		r.verb = "ADD"
	}
	return plugintest.Invoke(t, plugintest.Call{Plugin: "static", Verb: r.verb, ContainerID: "ctr1", Netns: "/proc/self/ns/net",
		IfName: "eth0", CNIArgs: r.cniArgs, Path: "/nonexistent", NetnsOverride: true, Conf: r.stdin(t)})
}

// ipam builds an ipam section with the given addresses ("cidr" or "cidr gw").
func ipam(addrs ...string) map[string]any {
	var list []map[string]string
	for _, a := range addrs {
		cidr, gw, _ := strings.Cut(a, " ")
		entry := map[string]string{"address": cidr}
		if gw != "" {
			entry["gateway"] = gw
		}
		list = append(list, entry)
	}
	return map[string]any{"type": "static", "addresses": list}
}

// summary renders a result's addresses as "cidr" or "cidr via gw".
func summary(r *cni.Result) []string {
	var out []string
	for _, ip := range r.IPs {
		s, _ := cni.FormatCIDR(ip.Address)
		if ip.Gateway != nil {
			s += " via " + ip.Gateway.String()
		}
		if ip.Interface != nil {
			s += fmt.Sprintf(" (interface %d)", *ip.Interface)
		}
		out = append(out, s)
	}
	return out
}

// addCase is an ADD that succeeds with the given addresses.
type addCase struct {
	name    string
	version string
	conf    map[string]any
	cniArgs string
	want    []string
}

var addCases = []addCase{
	{"ipam.addresses", "", map[string]any{"ipam": ipam("10.1.1.5/24 10.1.1.1", "fd00:1::5/64 fd00:1::1")},
		"", []string{"10.1.1.5/24 via 10.1.1.1", "fd00:1::5/64 via fd00:1::1"}},
	{"host bits kept, no gateway", "", map[string]any{"ipam": ipam("10.1.1.5/8")},
		"", []string{"10.1.1.5/8"}},
	{"no addresses", "", map[string]any{"ipam": map[string]any{"type": "static"}}, "", nil},
	{"CNI_ARGS IP appended", "", map[string]any{"ipam": ipam("10.1.1.5/24 10.1.1.1")},
		"IP=10.3.3.3/24, 10.4.4.4/24", []string{"10.1.1.5/24 via 10.1.1.1", "10.3.3.3/24", "10.4.4.4/24"}},
	{"CNI_ARGS GATEWAY goes to the CNI_ARGS address of its subnet", "", map[string]any{"ipam": ipam("10.1.1.5/24")},
		"IP=10.3.3.3/24,10.4.4.4/24;GATEWAY=10.4.4.1,10.1.1.1", []string{"10.1.1.5/24", "10.3.3.3/24", "10.4.4.4/24 via 10.4.4.1"}},
	{"CNI_ARGS later GATEWAY wins", "", map[string]any{"ipam": map[string]any{"type": "static"}},
		"IP=10.3.3.3/24;GATEWAY=10.3.3.1,10.3.3.254", []string{"10.3.3.3/24 via 10.3.3.254"}},
	{"CNI_ARGS with IgnoreUnknown", "", map[string]any{"ipam": map[string]any{"type": "static"}},
		"IgnoreUnknown=1;MAC=02:00:00:00:00:01;K8S_POD_NAME=p;IP=10.3.3.3/24", []string{"10.3.3.3/24"}},
	{"args.cni.ips replaces addresses and CNI_ARGS", "", map[string]any{"ipam": ipam("10.1.1.5/24 10.1.1.1"),
		"args": map[string]any{"cni": map[string]any{"ips": []string{"10.9.9.9/24", "fd00:9::9/64"}}}},
		"IP=10.3.3.3/24;GATEWAY=10.3.3.1", []string{"10.9.9.9/24", "fd00:9::9/64"}},
	{"runtimeConfig.ips beats args.cni.ips", "", map[string]any{"ipam": ipam("10.1.1.5/24 10.1.1.1"),
		"args":          map[string]any{"cni": map[string]any{"ips": []string{"10.9.9.9/24"}}},
		"runtimeConfig": map[string]any{"ips": []string{"10.8.8.8/24"}}},
		"IP=10.3.3.3/24", []string{"10.8.8.8/24"}},
	{"empty runtimeConfig.ips replaces nothing", "", map[string]any{"ipam": ipam("10.1.1.5/24"),
		"runtimeConfig": map[string]any{"ips": []string{}}}, "", []string{"10.1.1.5/24"}},
	{"runtimeConfig.mac is ignored", "", map[string]any{"ipam": ipam("10.1.1.5/24"),
		"runtimeConfig": map[string]any{"mac": "02:00:00:00:00:01"}}, "", []string{"10.1.1.5/24"}},
	{"0.2.0 one per family", "0.2.0", map[string]any{"ipam": ipam("10.1.1.5/24 10.1.1.1", "fd00:1::5/64")},
		"", []string{"10.1.1.5/24 via 10.1.1.1", "fd00:1::5/64"}},
	{"0.3.0 several per family", "0.3.0", map[string]any{"ipam": ipam("10.1.1.5/24", "10.2.2.5/24", "fd00:1::5/64")},
		"", []string{"10.1.1.5/24", "10.2.2.5/24", "fd00:1::5/64"}},
	{"IPv4-mapped address", "", map[string]any{"ipam": ipam("::ffff:10.1.1.5/120")}, "", []string{"10.1.1.5/24"}},
}

func TestAddSources(t *testing.T) {
	for _, tc := range addCases {
		t.Run(tc.name, func(t *testing.T) {
			out, cerr := run(t, request{version: tc.version, conf: tc.conf, cniArgs: tc.cniArgs})
			if cerr != nil {
				t.Fatalf("ADD: %v", cerr)
			}
			version := tc.version
			if version == "" {
				version = "1.1.0"
			}
			res, err := cni.ParseResult(out, version)
			if err != nil {
				t.Fatalf("parsing %s: %v", out, err)
			}
			if res.CNIVersion != version {
				t.Errorf("result version %s, want %s", res.CNIVersion, version)
			}
			if got := summary(res); strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("addresses %q, want %q", got, tc.want)
			}
			if len(res.Interfaces) != 0 {
				t.Errorf("an IPAM result with interfaces: %+v", res.Interfaces)
			}
		})
	}
}

func TestAddRoutesAndDNS(t *testing.T) {
	dns := map[string]any{"nameservers": []string{"10.1.1.53", "fd00:1::53"}, "domain": "example.test",
		"search": []string{"example.test"}, "options": []string{"ndots:2"}}
	conf := map[string]any{"ipam": map[string]any{"type": "static",
		"addresses": []map[string]string{{"address": "10.1.1.5/24", "gateway": "10.1.1.1"}},
		"routes": []map[string]any{{"dst": "0.0.0.0/0"}, {"dst": "10.20.0.0/16", "gw": "10.1.1.254", "priority": 10, "mtu": 1400,
			"advmss": 1360, "table": 100, "scope": 0}, {"dst": "fd00:2::/64", "gw": "fd00:1::1"}},
		"dns": dns}}
	out, cerr := run(t, request{conf: conf})
	if cerr != nil {
		t.Fatalf("ADD: %v", cerr)
	}
	var got struct {
		Routes []map[string]any `json:"routes"`
		DNS    map[string]any   `json:"dns"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	want := `[{"dst":"0.0.0.0/0"},{"advmss":1360,"dst":"10.20.0.0/16","gw":"10.1.1.254","mtu":1400,"priority":10,"scope":0,"table":100},{"dst":"fd00:2::/64","gw":"fd00:1::1"}]`
	if routes, _ := json.Marshal(got.Routes); string(routes) != want {
		t.Errorf("routes %s, want %s", routes, want)
	}
	wantDNS, _ := json.Marshal(dns)
	if gotDNS, _ := json.Marshal(got.DNS); string(gotDNS) != string(wantDNS) {
		t.Errorf("dns %s, want %s", gotDNS, wantDNS)
	}
}

func TestErrors(t *testing.T) {
	cases := []struct {
		name    string
		version string
		conf    map[string]any
		cniArgs string
		code    cni.Code
		msg     string
	}{
		{"no ipam", "", map[string]any{}, "", cni.CodeInvalidNetworkConfig, "missing ipam section"},
		{"address without prefix", "", map[string]any{"ipam": ipam("10.1.1.5")}, "",
			cni.CodeInvalidNetworkConfig, `ipam.addresses[0].address "10.1.1.5" is not in CIDR notation`},
		{"address not an address", "", map[string]any{"ipam": ipam("10.1.1.5/24", "10.1.1.300/24")}, "",
			cni.CodeInvalidNetworkConfig, `ipam.addresses[1].address "10.1.1.300/24" is not a valid CIDR`},
		{"prefix too long", "", map[string]any{"ipam": ipam("10.1.1.5/33")}, "",
			cni.CodeInvalidNetworkConfig, `"10.1.1.5/33" is not a valid CIDR`},
		{"address missing", "", map[string]any{"ipam": map[string]any{"addresses": []map[string]string{{"gateway": "10.1.1.1"}}}}, "",
			cni.CodeInvalidNetworkConfig, `ipam.addresses[0].address "" is not in CIDR notation`},
		{"gateway not an address", "", map[string]any{"ipam": ipam("10.1.1.5/24 bogus")}, "",
			cni.CodeInvalidNetworkConfig, `ipam.addresses[0].gateway "bogus" is not an IP address`},
		{"gateway of the other family", "", map[string]any{"ipam": ipam("10.1.1.5/24 fd00::1")}, "",
			cni.CodeInvalidNetworkConfig, "ipam.addresses[0]: gateway fd00::1 is not of the family of address 10.1.1.5/24"},
		{"IPv6 address with IPv4 gateway", "", map[string]any{"ipam": ipam("fd00::5/64 10.1.1.1")}, "",
			cni.CodeInvalidNetworkConfig, "gateway 10.1.1.1 is not of the family of address fd00::5/64"},
		{"gateway is the address", "", map[string]any{"ipam": ipam("10.1.1.5/24 10.1.1.5")}, "",
			cni.CodeInvalidNetworkConfig, "gateway 10.1.1.5 is the address itself"},
		{"address twice", "", map[string]any{"ipam": ipam("10.1.1.5/24", "10.1.1.5/16")}, "",
			cni.CodeInvalidNetworkConfig, "ipam.addresses[1]: address 10.1.1.5 is already given by ipam.addresses[0]"},
		{"CNI_ARGS IP repeats a configured address", "", map[string]any{"ipam": ipam("10.1.1.5/24")}, "IP=10.1.1.5/24",
			cni.CodeInvalidEnvironment, "CNI_ARGS IP (item 1): address 10.1.1.5 is already given by ipam.addresses[0]"},
		{"CNI_ARGS IP without prefix", "", map[string]any{"ipam": ipam()}, "IP=10.3.3.3",
			cni.CodeInvalidEnvironment, `CNI_ARGS IP "10.3.3.3" is not in CIDR notation`},
		{"CNI_ARGS IP empty item", "", map[string]any{"ipam": ipam()}, "IP=10.3.3.3/24,",
			cni.CodeInvalidEnvironment, `CNI_ARGS IP "" is not in CIDR notation`},
		{"CNI_ARGS GATEWAY not an address", "", map[string]any{"ipam": ipam()}, "IP=10.3.3.3/24;GATEWAY=10.3.3.x",
			cni.CodeInvalidEnvironment, `CNI_ARGS GATEWAY "10.3.3.x" is not an IP address`},
		{"CNI_ARGS GATEWAY is the address", "", map[string]any{"ipam": ipam()}, "IP=10.3.3.3/24;GATEWAY=10.3.3.3",
			cni.CodeInvalidEnvironment, "CNI_ARGS IP (item 1): gateway 10.3.3.3 is the address itself"},
		{"CNI_ARGS unknown key", "", map[string]any{"ipam": ipam()}, "MAC=02:00:00:00:00:01",
			cni.CodeInvalidEnvironment, "unknown args"},
		{"runtimeConfig.ips without prefix", "", map[string]any{"ipam": ipam(), "runtimeConfig": map[string]any{"ips": []string{"10.8.8.8/24", "10.8.8.9"}}}, "",
			cni.CodeInvalidNetworkConfig, `runtimeConfig.ips[1] "10.8.8.9" is not in CIDR notation`},
		{"args.cni.ips without prefix", "", map[string]any{"ipam": ipam(), "args": map[string]any{"cni": map[string]any{"ips": []string{"fd00::9"}}}}, "",
			cni.CodeInvalidNetworkConfig, `args.cni.ips[0] "fd00::9" is not in CIDR notation`},
		{"0.2.0 two IPv4", "0.2.0", map[string]any{"ipam": ipam("10.1.1.5/24", "10.2.2.5/24")}, "",
			cni.CodeInvalidNetworkConfig, `cniVersion "0.2.0" allows one address per family, but 2 IPv4 and 0 IPv6`},
		{"0.1.0 two IPv6 through CNI_ARGS", "0.1.0", map[string]any{"ipam": ipam("fd00::5/64")}, "IP=fd00:1::5/64",
			cni.CodeInvalidNetworkConfig, `cniVersion "0.1.0" allows one address per family, but 0 IPv4 and 2 IPv6`},
		{"0.2.0 no address", "0.2.0", map[string]any{"ipam": ipam()}, "",
			cni.CodeIncompatibleVersion, "no valid IP addresses"},
		{"route without dst", "", map[string]any{"ipam": map[string]any{"routes": []map[string]string{{"gw": "10.1.1.1"}}}}, "",
			cni.CodeInvalidNetworkConfig, "ipam.routes[0]: dst is missing"},
		{"route dst not a CIDR", "", map[string]any{"ipam": map[string]any{"routes": []map[string]string{{"dst": "default"}}}}, "",
			cni.CodeInvalidNetworkConfig, `ipam.routes[0]: dst "default" is not a CIDR`},
		{"route gw not an address", "", map[string]any{"ipam": map[string]any{"routes": []map[string]string{{"dst": "0.0.0.0/0", "gw": "x"}}}}, "",
			cni.CodeInvalidNetworkConfig, `ipam.routes[0].gw "x" is not an IP address`},
		{"route gw of the other family", "", map[string]any{"ipam": map[string]any{"routes": []map[string]string{{"dst": "::/0", "gw": "10.1.1.1"}}}}, "",
			cni.CodeInvalidNetworkConfig, "ipam.routes[0]: gw 10.1.1.1 is not of the family of dst ::/0"},
		{"addresses not a list", "", map[string]any{"ipam": map[string]any{"addresses": "10.1.1.5/24"}}, "",
			cni.CodeInvalidNetworkConfig, "ipam.addresses: JSON string"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, cerr := run(t, request{version: tc.version, conf: tc.conf, cniArgs: tc.cniArgs})
			if cerr == nil {
				t.Fatal("ADD succeeded")
			}
			if cerr.Code != tc.code || !strings.Contains(cerr.Msg, tc.msg) {
				t.Errorf("got code %d %q, want code %d containing %q", cerr.Code, cerr.Msg, tc.code, tc.msg)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	conf := map[string]any{"ipam": ipam("10.1.1.5/24 10.1.1.1", "fd00:1::5/64")}
	out, cerr := run(t, request{conf: conf})
	if cerr != nil {
		t.Fatalf("ADD: %v", cerr)
	}
	// prevResult as an interface plugin would pass it on: with interfaces.
	res, err := cni.ParseResult(out, "1.1.0")
	if err != nil {
		t.Fatal(err)
	}
	res.Interfaces = []*cni.Interface{{Name: "veth0"}, {Name: "eth0", Sandbox: "/proc/self/ns/net"}}
	for _, ip := range res.IPs {
		ip.Interface = cni.IntPtr(1)
	}
	good, _ := res.Marshal("1.1.0")
	edit := func(fn func(r *cni.Result)) json.RawMessage {
		c := res.Copy()
		fn(c)
		data, _ := c.Marshal("1.1.0")
		return data
	}
	cases := []struct {
		name string
		prev json.RawMessage
		msg  string // empty: CHECK passes
	}{
		{"matching", good, ""},
		{"extra address in prevResult", edit(func(r *cni.Result) {
			r.IPs = append(r.IPs, &cni.IPConfig{Address: *mustCIDR(t, "10.9.9.9/24")})
		}), ""},
		{"no prevResult", nil, "prevResult is required"},
		{"address missing", edit(func(r *cni.Result) { r.IPs = r.IPs[1:] }), "address 10.1.1.5/24 is not in prevResult"},
		{"other prefix", edit(func(r *cni.Result) { r.IPs[0].Address = *mustCIDR(t, "10.1.1.5/16") }), "prevResult has 10.1.1.5/16"},
		{"other gateway", edit(func(r *cni.Result) { r.IPs[0].Gateway = mustCIDR(t, "10.1.1.254/32").IP }), "gateway 10.1.1.254"},
		{"gateway not configured: any", edit(func(r *cni.Result) { r.IPs[1].Gateway = mustCIDR(t, "fd00:1::1/128").IP }), ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := map[string]any{"ipam": conf["ipam"]}
			if tc.prev != nil {
				c["prevResult"] = tc.prev
			}
			_, cerr := run(t, request{verb: "CHECK", conf: c})
			switch {
			case tc.msg == "" && cerr != nil:
				t.Errorf("CHECK: %v", cerr)
			case tc.msg != "" && cerr == nil:
				t.Errorf("CHECK passed, want an error containing %q", tc.msg)
			case tc.msg != "" && (!strings.Contains(cerr.Msg, tc.msg) || cerr.Code != cni.CodeInvalidNetworkConfig):
				t.Errorf("CHECK: code %d %q, want code 7 containing %q", cerr.Code, cerr.Msg, tc.msg)
			}
		})
	}
}

// TestNoOpVerbs: DEL, STATUS and GC succeed, even twice and with nothing but
// the common keys, since static holds nothing.
func TestNoOpVerbs(t *testing.T) {
	for _, verb := range []string{"DEL", "DEL", "STATUS", "GC"} {
		for _, conf := range []map[string]any{{"ipam": ipam("10.1.1.5/24")}, {}} {
			if _, cerr := run(t, request{verb: verb, conf: conf}); cerr != nil {
				t.Errorf("%s %v: %v", verb, conf, cerr)
			}
		}
	}
}

func mustCIDR(t testing.TB, s string) *net.IPNet {
	t.Helper()
	n, err := cni.ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// BenchmarkAdd measures an in-process ADD with every source of addresses.
func BenchmarkAdd(b *testing.B) {
	r := request{conf: map[string]any{"ipam": map[string]any{"type": "static",
		"addresses": []map[string]string{{"address": "10.1.1.5/24", "gateway": "10.1.1.1"}, {"address": "fd00:1::5/64", "gateway": "fd00:1::1"}},
		"routes":    []map[string]string{{"dst": "0.0.0.0/0"}, {"dst": "::/0"}}}}, cniArgs: "IgnoreUnknown=1;IP=10.3.3.3/24;GATEWAY=10.3.3.1"}
	for b.Loop() {
		if _, cerr := run(b, r); cerr != nil {
			b.Fatal(cerr)
		}
	}
}
