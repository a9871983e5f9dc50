package portmap

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/nft"
	"github.com/cnikit/cnikit/skel"
)

// parseJSON runs parse on a configuration given as a map.
func parseJSON(t *testing.T, m map[string]any) (*conf, error) {
	t.Helper()
	base := map[string]any{"cniVersion": "1.1.0", "name": "net1", "type": "portmap"}
	for k, v := range m {
		base[k] = v
	}
	data, err := json.Marshal(base)
	if err != nil {
		t.Fatal(err)
	}
	return parse(&skel.Args{StdinData: data, Version: "1.1.0"})
}

func mapping(hostPort, containerPort int, protocol, hostIP string) map[string]any {
	return map[string]any{"hostPort": hostPort, "containerPort": containerPort, "protocol": protocol, "hostIP": hostIP}
}

func TestBadMappings(t *testing.T) {
	for _, tc := range []struct {
		name     string
		mappings []map[string]any
		want     string
	}{
		{"host port 0", []map[string]any{mapping(0, 80, "tcp", "")}, "hostPort 0 is out of range (1-65535)"},
		{"host port 70000", []map[string]any{mapping(70000, 80, "tcp", "")}, "hostPort 70000 is out of range"},
		{"negative container port", []map[string]any{mapping(80, -1, "tcp", "")}, "containerPort -1 is out of range"},
		{"container port 65536", []map[string]any{mapping(80, 65536, "tcp", "")}, "containerPort 65536 is out of range"},
		{"protocol icmp", []map[string]any{mapping(80, 80, "icmp", "")}, `protocol "icmp" is not tcp, udp or sctp`},
		{"host IP not an address", []map[string]any{mapping(80, 80, "tcp", "1.2.3")}, `hostIP "1.2.3" is not an IP address`},
		{"host IP a prefix", []map[string]any{mapping(80, 80, "tcp", "10.0.0.0/8")}, `hostIP "10.0.0.0/8" is not an IP address`},
		{"same host port, two targets", []map[string]any{mapping(80, 80, "tcp", ""), mapping(80, 81, "TCP", "")},
			"portMappings[1]: hostPort 80/tcp is already mapped to containerPort 80"},
		{"any IPv4 address and any address overlap", []map[string]any{mapping(80, 80, "udp", "0.0.0.0"), mapping(80, 81, "udp", "")},
			"hostPort 80/udp is already mapped"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseJSON(t, map[string]any{"runtimeConfig": map[string]any{"portMappings": tc.mappings}})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.mappings()
			if cni.CodeOf(err) != cni.CodeInvalidNetworkConfig || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v (code %d), want code 7 with %q", err, cni.CodeOf(err), tc.want)
			}
		})
	}
}

func TestMappingsNormalised(t *testing.T) {
	c, err := parseJSON(t, map[string]any{"runtimeConfig": map[string]any{"portMappings": []map[string]any{
		mapping(80, 8080, "", ""),               // tcp by default
		mapping(80, 8080, "TCP", ""),            // the same again: kept once
		mapping(53, 53, "UDP", "0.0.0.0"),       // any IPv4 address
		mapping(53, 53, "udp", ""),              // adds any IPv6 address
		mapping(443, 443, "tcp", "192.0.2.1"),   // IPv4 only
		mapping(443, 443, "tcp", "2001:db8::1"), // IPv6 only
		mapping(9, 9, "sctp", "::"),             // any IPv6 address
	}}})
	if err != nil {
		t.Fatal(err)
	}
	mappings, err := c.mappings()
	if err != nil {
		t.Fatal(err)
	}
	if len(mappings) != 6 {
		t.Fatalf("got %d mappings, want 6: %+v", len(mappings), mappings)
	}
	_, v4net, _ := net.ParseCIDR("10.88.0.2/16")
	v4 := &net.IPNet{IP: net.ParseIP("10.88.0.2").To4(), Mask: v4net.Mask}
	v6 := &net.IPNet{IP: net.ParseIP("fd88::2"), Mask: net.CIDRMask(64, 128)}
	var got []string
	for _, p := range c.hostPorts(mappings, v4, v6) {
		hostIP := "any"
		if p.HostIP != nil {
			hostIP = p.HostIP.String()
		}
		got = append(got, hostIP+" "+protocolName(p.Protocol)+" "+p.Container.IP.String())
	}
	want := []string{
		"any tcp 10.88.0.2", "any udp 10.88.0.2", "any udp 10.88.0.2", "192.0.2.1 tcp 10.88.0.2",
		"any tcp fd88::2", "any udp fd88::2", "2001:db8::1 tcp fd88::2", "any sctp fd88::2",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("host ports:\n got %v\nwant %v", got, want)
	}
	// Only an IPv4 address in prevResult: IPv6-only mappings are skipped.
	if n := len(c.hostPorts(mappings, v4, nil)); n != 4 {
		t.Errorf("got %d IPv4 host ports, want 4", n)
	}
}

func TestBackendKeys(t *testing.T) {
	for _, tc := range []struct {
		name string
		conf map[string]any
		want string // "" means accepted
	}{
		{"defaults", nil, ""},
		{"iptables backend", map[string]any{"backend": "iptables", "markMasqBit": 13}, ""},
		{"nftables backend", map[string]any{"backend": "nftables", "conditionsV4": []string{"ip", "saddr", "10.0.0.0/8"}}, ""},
		{"external mark chain", map[string]any{"externalSetMarkChain": "KUBE-MARK-MASQ"}, ""},
		{"mark bit 0 and 31", map[string]any{"markMasqBit": 31}, ""},
		{"unknown backend", map[string]any{"backend": "bpf"}, `backend "bpf" is not "iptables" or "nftables"`},
		{"mark bit 32", map[string]any{"markMasqBit": 32}, "markMasqBit 32 is out of range (0-31)"},
		{"mark bit -1", map[string]any{"markMasqBit": -1}, "markMasqBit -1 is out of range (0-31)"},
		{"mark bit and mark chain", map[string]any{"markMasqBit": 13, "externalSetMarkChain": "X"},
			"markMasqBit and externalSetMarkChain cannot both be set"},
		{"mark bit with nftables", map[string]any{"backend": "nftables", "markMasqBit": 13},
			"nftables backend was requested but configuration contains iptables-specific options [markMasqBit]"},
		{"nft conditions with iptables", map[string]any{"backend": "iptables", "conditionsV6": []string{"ip6 saddr fd00::/8"}},
			"iptables backend was requested but configuration contains nftables-specific options [conditionsV6]"},
		{"mixed condition styles", map[string]any{"conditionsV4": []string{"-s", "10.0.0.0/8"}, "conditionsV6": []string{"ip6 saddr fd00::/8"}},
			"mixes iptables-specific options [conditionsV4] and nftables-specific options [conditionsV6]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseJSON(t, tc.conf)
			if tc.want == "" {
				if err != nil {
					t.Errorf("refused: %v", err)
				}
				return
			}
			if cni.CodeOf(err) != cni.CodeInvalidNetworkConfig || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want code 7 with %q", err, tc.want)
			}
		})
	}
}

func TestConditions(t *testing.T) {
	for _, tc := range []struct {
		name         string
		key          string
		conditions   []string
		sources      string // ranges, comma separated; "any" for no restriction
		destinations string
		code         cni.Code // expected error code; 0 means accepted
		msg          string
	}{
		{name: "iptables source", key: "conditionsV4", conditions: []string{"-s", "192.168.1.0/24"},
			sources: "192.168.1.0-192.168.1.255", destinations: "any"},
		{name: "iptables sources as one string", key: "conditionsV4", conditions: []string{"--source 10.0.0.1,10.0.0.2"},
			sources: "10.0.0.1-10.0.0.2", destinations: "any"},
		{name: "iptables dotted mask", key: "conditionsV4", conditions: []string{"-s", "10.1.0.0/255.255.0.0"},
			sources: "10.1.0.0-10.1.255.255", destinations: "any"},
		{name: "iptables negated source", key: "conditionsV4", conditions: []string{"!", "-s", "10.0.0.0/8"},
			sources: "0.0.0.0-9.255.255.255,11.0.0.0-255.255.255.255", destinations: "any"},
		{name: "iptables source and not a part of it", key: "conditionsV4", conditions: []string{"-s", "10.0.0.0/24", "!", "-s", "10.0.0.128/25"},
			sources: "10.0.0.0-10.0.0.127", destinations: "any"},
		{name: "iptables iprange and destination (reference issue 1114)", key: "conditionsV4",
			conditions: []string{"!", "-d", "127.0.0.0/8", "-m", "iprange", "!", "--dst-range", "198.19.254.254"},
			sources:    "any", destinations: "0.0.0.0-126.255.255.255,128.0.0.0-198.19.254.253,198.19.254.255-255.255.255.255"},
		{name: "iptables IPv6 source", key: "conditionsV6", conditions: []string{"-s", "fd00::/120"},
			sources: "fd00::-fd00::ff", destinations: "any"},
		{name: "nft source", key: "conditionsV4", conditions: []string{"ip", "saddr", "192.168.0.0/16"},
			sources: "192.168.0.0-192.168.255.255", destinations: "any"},
		{name: "nft negated set (reference issue 1115)", key: "conditionsV4", conditions: []string{"ip", "daddr", "!=", "{ 127.0.0.0/8, 198.19.254.254 }"},
			sources: "any", destinations: "0.0.0.0-126.255.255.255,128.0.0.0-198.19.254.253,198.19.254.255-255.255.255.255"},
		{name: "nft range and equality", key: "conditionsV6", conditions: []string{"ip6 saddr == fd00::1-fd00::9 ip6 daddr {fd01::1,fd01::2}"},
			sources: "fd00::1-fd00::9", destinations: "fd01::1-fd01::2"},
		{name: "empty list", key: "conditionsV4", conditions: []string{}, sources: "any", destinations: "any"},

		{name: "iptables interface", key: "conditionsV4", conditions: []string{"-i", "eth0"}, code: cni.CodeUnsupportedField, msg: `"-i" in "-i eth0" is not supported`},
		{name: "iptables ipset", key: "conditionsV4", conditions: []string{"-m", "set", "--match-set", "allow", "src"}, code: cni.CodeUnsupportedField, msg: `conditionsV4: "-m set"`},
		{name: "nft interface", key: "conditionsV4", conditions: []string{"iifname", "eth0"}, code: cni.CodeUnsupportedField, msg: `"iifname"`},
		{name: "nft ip protocol", key: "conditionsV4", conditions: []string{"ip protocol tcp"}, code: cni.CodeUnsupportedField, msg: `"ip protocol"`},
		{name: "bad address", key: "conditionsV4", conditions: []string{"-s", "10.0.0.300"}, code: cni.CodeInvalidNetworkConfig, msg: `"10.0.0.300" is not an IPv4 address`},
		{name: "IPv6 address in conditionsV4", key: "conditionsV4", conditions: []string{"-s", "fd00::1"}, code: cni.CodeInvalidNetworkConfig, msg: "not an IPv4 address"},
		{name: "ip6 in conditionsV4", key: "conditionsV4", conditions: []string{"ip6", "saddr", "fd00::1"}, code: cni.CodeInvalidNetworkConfig, msg: "other address family"},
		{name: "missing value", key: "conditionsV4", conditions: []string{"-s"}, code: cni.CodeInvalidNetworkConfig, msg: "-s needs a value"},
		{name: "unterminated set", key: "conditionsV4", conditions: []string{"ip saddr { 10.0.0.1"}, code: cni.CodeInvalidNetworkConfig, msg: "without"},
		{name: "nothing allowed", key: "conditionsV4", conditions: []string{"-s", "10.0.0.1", "!", "-s", "10.0.0.1"}, code: cni.CodeInvalidNetworkConfig, msg: "no source address is allowed"},
		{name: "reversed range", key: "conditionsV4", conditions: []string{"-m", "iprange", "--src-range", "10.0.0.9-10.0.0.1"}, code: cni.CodeInvalidNetworkConfig, msg: "not an address range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := parseConditions(tc.key, tc.conditions, tc.key == "conditionsV6")
			if tc.code != 0 {
				if cni.CodeOf(err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
					t.Errorf("got %v (code %d), want code %d with %q", err, cni.CodeOf(err), tc.code, tc.msg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := rangesString(m.sources); got != tc.sources {
				t.Errorf("sources %s, want %s", got, tc.sources)
			}
			if got := rangesString(m.destinations); got != tc.destinations {
				t.Errorf("destinations %s, want %s", got, tc.destinations)
			}
		})
	}
}

func rangesString(s addrSet) string {
	if s == nil {
		return "any"
	}
	var parts []string
	for _, r := range s {
		parts = append(parts, r.First.String()+"-"+r.Last.String())
	}
	return strings.Join(parts, ",")
}

func TestContainerIPs(t *testing.T) {
	r := &cni.Result{
		Interfaces: []*cni.Interface{{Name: "cni0"}, {Name: "veth1"}, {Name: "eth0", Sandbox: "/var/run/netns/x"}, {Name: "eth1", Sandbox: "/var/run/netns/x"}},
		IPs: []*cni.IPConfig{
			{Interface: cni.IntPtr(0), Address: cidr(t, "10.99.0.1/24")}, // the bridge: skipped
			{Interface: cni.IntPtr(3), Address: cidr(t, "10.77.0.5/24")}, // another interface: skipped
			{Interface: cni.IntPtr(2), Address: cidr(t, "10.88.0.5/16")}, // first IPv4 of eth0
			{Interface: cni.IntPtr(2), Address: cidr(t, "10.88.0.6/16")}, // not the first
			{Address: cidr(t, "fd88::5/64")},                             // no interface: counts
			{Interface: cni.IntPtr(9), Address: cidr(t, "fd99::5/64")},   // index out of range: counts, not first
		},
	}
	v4, v6 := containerIPs(r, "eth0")
	if v4 == nil || v4.String() != "10.88.0.5/16" || v6 == nil || v6.String() != "fd88::5/64" {
		t.Errorf("got %v %v, want 10.88.0.5/16 fd88::5/64", v4, v6)
	}
	if v4, v6 := containerIPs(r, "eth9"); v4 != nil || v6 == nil {
		t.Errorf("eth9: got %v %v, want only the interface-less IPv6", v4, v6)
	}
}

func cidr(t *testing.T, s string) net.IPNet {
	t.Helper()
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	return net.IPNet{IP: ip, Mask: n.Mask}
}

func TestRecordRoundTrip(t *testing.T) {
	stateDir = t.TempDir()
	a := nft.Attachment{Network: "net1", ContainerID: "ctr", IfName: "eth0"}
	c, err := parseJSON(t, map[string]any{
		"masqAll": true, "conditionsV4": []string{"-s", "10.0.0.0/8", "!", "-d", "127.0.0.0/8"},
		"runtimeConfig": map[string]any{"portMappings": []map[string]any{mapping(80, 8080, "sctp", "192.0.2.1"), mapping(53, 53, "udp", "")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	mappings, err := c.mappings()
	if err != nil {
		t.Fatal(err)
	}
	v4 := cidr(t, "10.88.0.2/16")
	v6 := cidr(t, "fd88::2/64")
	ports := c.hostPorts(mappings, &v4, &v6)
	if err := writeRecord(recordOf(a, ports)); err != nil {
		t.Fatal(err)
	}
	rec, err := readRecord(a)
	if err != nil || rec == nil {
		t.Fatalf("reading the record: %v %v", rec, err)
	}
	got, err := rec.hostPorts()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(recordOf(a, got), recordOf(a, ports)) {
		t.Errorf("round trip changed the mappings:\n got %+v\nwant %+v", got, ports)
	}
	paths, err := networkRecords("net1")
	if err != nil || len(paths) != 1 {
		t.Errorf("network records: %v %v", paths, err)
	}
	if err := removeRecord(a); err != nil {
		t.Fatal(err)
	}
	if rec, err := readRecord(a); rec != nil || err != nil {
		t.Errorf("after removal: %v %v", rec, err)
	}
	if _, err := os.Stat(filepath.Join(recordsRoot(), "net1")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the network's directory outlives its last record: %v", err)
	}
	if err := removeRecord(a); err != nil {
		t.Errorf("removing twice: %v", err)
	}
}

// TestRecordDirectoryRace: records of one network written and removed at
// once by several attachments all succeed, though the last removal takes the
// network's directory away, possibly between another writer's creating it
// and writing into it.
func TestRecordDirectoryRace(t *testing.T) {
	stateDir = t.TempDir()
	errs := make(chan error, 4)
	for w := 0; w < 4; w++ {
		go func(w int) {
			a := nft.Attachment{Network: "net1", ContainerID: fmt.Sprintf("ctr%d", w), IfName: "eth0"}
			for i := 0; i < 100; i++ {
				if err := writeRecord(recordOf(a, nil)); err != nil {
					errs <- err
					return
				}
				if err := removeRecord(a); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}(w)
	}
	for w := 0; w < 4; w++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if _, err := os.Stat(filepath.Join(stateDir, "net1")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the network's directory outlives its records: %v", err)
	}
}
