package bridge

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/nstest"
	"github.com/cnikit/cnikit/internal/plugintest"
)

func TestBadConfigs(t *testing.T) {
	requireTool(t, "nft")
	e := newEnv(t)
	cont := nstest.New(t)
	cases := []struct {
		name    string
		extra   map[string]any
		cniArgs string
		code    cni.Code
		msg     string
	}{
		{"ipMasqBackend", map[string]any{"ipMasqBackend": "ipfw"}, "", cni.CodeInvalidNetworkConfig, `ipMasqBackend "ipfw"`},
		{"vlan too big", map[string]any{"vlan": 4095}, "", cni.CodeInvalidNetworkConfig, "vlan 4095"},
		{"vlan negative", map[string]any{"vlan": -1}, "", cni.CodeInvalidNetworkConfig, "vlan -1"},
		{"trunk id 0", map[string]any{"vlanTrunk": []map[string]int{{"id": 0}}}, "", cni.CodeInvalidNetworkConfig, "id 0"},
		{"trunk minID alone", map[string]any{"vlanTrunk": []map[string]int{{"minID": 5}}}, "", cni.CodeInvalidNetworkConfig, "minID and maxID"},
		{"trunk min over max", map[string]any{"vlanTrunk": []map[string]int{{"minID": 9, "maxID": 5}}}, "", cni.CodeInvalidNetworkConfig, "minID 9 is greater than maxID 5"},
		{"trunk maxID too big", map[string]any{"vlanTrunk": []map[string]int{{"minID": 1, "maxID": 4095}}}, "", cni.CodeInvalidNetworkConfig, "maxID 4095"},
		{"hairpin with promisc", map[string]any{"hairpinMode": true, "promiscMode": true}, "", cni.CodeInvalidNetworkConfig, "hairpinMode and promiscMode"},
		{"disableContainerInterface with ipam", map[string]any{"disableContainerInterface": true,
			"ipam": map[string]any{"type": "host-local", "subnet": "10.11.0.0/24"}}, "", cni.CodeInvalidNetworkConfig, "disableContainerInterface"},
		{"mtu negative", map[string]any{"mtu": -5}, "", cni.CodeInvalidNetworkConfig, "mtu -5"},
		{"bridge name too long", map[string]any{"bridge": "averyveryverylongname"}, "", cni.CodeInvalidNetworkConfig, `bridge "averyveryverylongname"`},
		{"bridge name with slash", map[string]any{"bridge": "br/0"}, "", cni.CodeInvalidNetworkConfig, `bridge "br/0"`},
		{"vlan gateway name too long", map[string]any{"bridge": "br-fifteen-char", "vlan": 4000, "isGateway": true}, "",
			cni.CodeInvalidNetworkConfig, "longer than 15 characters"},
		{"runtimeConfig.mac", map[string]any{"runtimeConfig": map[string]any{"mac": "zz:zz"}}, "", cni.CodeInvalidNetworkConfig, `runtimeConfig.mac "zz:zz"`},
		{"args.cni.mac", map[string]any{"args": map[string]any{"cni": map[string]any{"mac": "01"}}}, "", cni.CodeInvalidNetworkConfig, `args.cni.mac "01"`},
		{"CNI_ARGS MAC", nil, "MAC=nope", cni.CodeInvalidEnvironment, `CNI_ARGS MAC "nope"`},
		{"mtu not a number", map[string]any{"mtu": "big"}, "", cni.CodeDecodingFailure, "mtu"},
	}
	before := e.host.LinkNames()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, cerr := e.host.Invoke(plugintest.Call{Verb: "ADD", Conf: e.conf("bad", nil, tc.extra), Netns: cont.Path(), CNIArgs: tc.cniArgs})
			if cerr == nil {
				t.Fatal("ADD succeeded")
			}
			if cerr.Code != tc.code || !strings.Contains(cerr.Msg, tc.msg) {
				t.Errorf("got code %d %q, want code %d containing %q", cerr.Code, cerr.Msg, tc.code, tc.msg)
			}
		})
	}
	if after := e.host.LinkNames(); len(after) != len(before) {
		t.Errorf("bad configurations created links: %v -> %v", before, after)
	}
	if out := e.host.MustRun("nft", "list", "ruleset"); strings.TrimSpace(out) != "" {
		t.Errorf("bad configurations created nftables objects:\n%s", out)
	}
}

// TestBadEnvironment: an ADD into a namespace that does not exist is code 3,
// and one whose interface name the container already uses is code 4; both
// leave no host link behind (the bridge made for the second goes again).
func TestBadEnvironment(t *testing.T) {
	e := newEnv(t)
	taken := nstest.New(t)
	taken.MustRun("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0peer")
	cases := []struct {
		name  string
		netns string
		code  cni.Code
		msg   string
	}{
		{"netns missing", "/nonexistent/netns", cni.CodeUnknownContainer, `bridge: network namespace "/nonexistent/netns" does not exist`},
		{"interface exists in the container", taken.Path(), cni.CodeInvalidEnvironment, `container interface "eth0"`},
	}
	before := e.host.LinkNames()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, cerr := e.host.Invoke(plugintest.Call{Verb: "ADD", Conf: e.conf("badenv", nil, nil), Netns: tc.netns})
			if cerr == nil || cerr.Code != tc.code || !strings.Contains(cerr.Msg, tc.msg) {
				t.Errorf("ADD: %v, want code %d containing %q", cerr, tc.code, tc.msg)
			}
		})
	}
	if after := e.host.LinkNames(); !slices.Equal(after, before) {
		t.Errorf("host links %v -> %v", before, after)
	}
}

func TestExistingNonBridge(t *testing.T) {
	e := newEnv(t)
	cont := nstest.New(t)
	e.host.MustRun("ip", "link", "add", "cni0", "type", "veth", "peer", "name", "cni0peer")
	_, cerr := e.host.Invoke(plugintest.Call{Verb: "ADD", Conf: e.conf("nonbridge", nil, nil), Netns: cont.Path()})
	if cerr == nil || !strings.Contains(cerr.Msg, `"cni0" already exists but is a veth link`) {
		t.Fatalf("ADD: %v", cerr)
	}
	conf := []byte(`{"cniVersion":"1.1.0","name":"nonbridge","type":"bridge"}`)
	_, cerr = e.host.Invoke(plugintest.Call{Verb: "STATUS", Conf: conf})
	if cerr == nil || cerr.Code != cni.CodePluginNotAvailable {
		t.Fatalf("STATUS: %v, want code 50", cerr)
	}
	_, cerr = e.host.Invoke(plugintest.Call{Verb: "STATUS", Conf: []byte(`{"cniVersion":"1.1.0","name":"x","type":"bridge","bridge":"br9"}`)})
	if cerr != nil {
		t.Fatalf("STATUS without a bridge yet: %v", cerr)
	}
}

func TestAddressConflict(t *testing.T) {
	e := newEnv(t)
	cont := nstest.New(t)
	e.host.MustRun("ip", "link", "add", "cni0", "type", "bridge")
	e.host.MustRun("ip", "addr", "add", "10.99.0.1/16", "dev", "cni0")
	_, cerr := e.host.Invoke(plugintest.Call{Verb: "ADD", Conf: e.conf("conflict", []string{"10.12.0.0/24"}, map[string]any{"isGateway": true}), Netns: cont.Path()})
	if cerr == nil || cerr.Code != cni.CodeInvalidNetworkConfig || !strings.Contains(cerr.Msg, "already has an IP address different from 10.12.0.1/24") {
		t.Fatalf("ADD: %v", cerr)
	}
	if _, err := cont.Handle().LinkByName("eth0"); err == nil {
		t.Error("failed ADD left the container interface")
	}
	if entries, _ := os.ReadDir(filepath.Join(e.dataDir, "conflict")); len(entries) > 2 {
		t.Errorf("failed ADD left IPAM reservations: %v", entries)
	}
}

// TestTraffic: two containers on one bridge reach each other and the gateway;
// masquerade is proven by an "outside" namespace behind the host that sees
// the host's address as the source of a container's TCP connection.
func TestTraffic(t *testing.T) {
	e := newEnv(t)
	c1, c2 := nstest.New(t), nstest.New(t)
	outside := nstest.New(t)
	conf := e.conf("traffic", []string{"10.13.0.0/24"}, map[string]any{"isDefaultGateway": true, "ipMasq": true})
	r1, _ := e.host.MustAdd(plugintest.Call{Conf: conf, Netns: c1.Path(), ContainerID: "c1"})
	r2, _ := e.host.MustAdd(plugintest.Call{Conf: conf, Netns: c2.Path(), ContainerID: "c2"})
	ip1, ip2 := r1.IPs[0].Address.IP.String(), r2.IPs[0].Address.IP.String()
	for _, p := range []struct {
		from *nstest.NS
		to   string
	}{{c1, ip2}, {c2, ip1}, {c1, "10.13.0.1"}} {
		if err := p.from.Ping(p.to); err != nil {
			t.Error(err)
		}
	}

	// The outside world: a veth between host and outside, 192.0.2.0/24,
	// made over netlink (busybox ip cannot move a link to a namespace path).
	uplink := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "uplink"}, PeerName: "wan", PeerNamespace: netlink.NsFd(outside.Fd())}
	if err := e.host.Handle().LinkAdd(uplink); err != nil {
		t.Fatal(err)
	}
	e.host.MustRun("ip", "addr", "add", "192.0.2.1/24", "dev", "uplink")
	e.host.MustRun("ip", "link", "set", "uplink", "up")
	outside.MustRun("ip", "addr", "add", "192.0.2.2/24", "dev", "wan")
	outside.MustRun("ip", "link", "set", "wan", "up")

	peer := outside.AcceptPeer("tcp4", "192.0.2.2:8080")
	c1.MustDial("tcp4", "192.0.2.2:8080")
	if got := <-peer; got != "192.0.2.1" {
		t.Errorf("outside saw the connection from %s, want the host's 192.0.2.1", got)
	}
}

// TestMacSpoofDrops: with macspoofchk, frames from the container with
// another source MAC are dropped at the bridge; without, they pass.
func TestMacSpoofDrops(t *testing.T) {
	for _, tc := range []struct {
		name      string
		spoofchk  bool
		wantReach bool
	}{{"macspoofchk on", true, false}, {"macspoofchk off", false, true}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			cont := nstest.New(t)
			conf := e.conf("spoofnet", []string{"10.19.0.0/24"}, map[string]any{"isGateway": true, "macspoofchk": tc.spoofchk})
			e.host.MustAdd(plugintest.Call{Conf: conf, Netns: cont.Path()})
			if err := cont.Ping("10.19.0.1"); err != nil {
				t.Fatalf("with its own MAC: %v", err)
			}
			cont.MustRun("ip", "link", "set", "eth0", "address", "02:66:66:66:66:66")
			cont.MustRun("ip", "neigh", "flush", "dev", "eth0")
			e.host.MustRun("ip", "neigh", "flush", "dev", "cni0")
			if got := cont.Ping("10.19.0.1") == nil; got != tc.wantReach {
				t.Errorf("gateway reachable with a spoofed MAC: %v, want %v", got, tc.wantReach)
			}
		})
	}
}
