package bridge

import (
	"net"
	"regexp"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/nstest"
	"github.com/cnikit/cnikit/internal/plugintest"
)

// keyCase is one configuration key exercised through ADD, CHECK, DEL, DEL.
type keyCase struct {
	name    string
	subnets []string
	extra   map[string]any
	cniArgs string
	// before prepares the host namespace.
	before func(t *testing.T, e *env)
	verify func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS)
}

func protinfo(t *testing.T, e *env, port string) netlink.Protinfo {
	t.Helper()
	p, err := e.host.Handle().LinkGetProtinfo(e.host.Link(port))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var keyCases = []keyCase{
	{
		name: "defaults", subnets: []string{"10.10.1.0/24"},
		verify: func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
			br := e.host.Link("cni0")
			mustf(t, br.Type() == "bridge", "cni0 is a %s", br.Type())
			host := e.host.Link(res.Interfaces[1].Name)
			mustf(t, host.Type() == "veth" && host.Attrs().MasterIndex == br.Attrs().Index, "host end %s is not a veth port of cni0", host.Attrs().Name)
			mustf(t, plugintest.Sysctl(t, e.host.NS, "net/ipv6/conf/"+host.Attrs().Name+"/accept_ra") == "0", "host port accepts RAs")
			mustf(t, plugintest.Sysctl(t, e.host.NS, "net/ipv6/conf/cni0/accept_ra") == "0", "bridge accepts RAs")
			mustf(t, slices.Contains(containerAddrs(t, cont, "eth0"), "10.10.1.2/24"), "container addresses %v", containerAddrs(t, cont, "eth0"))
			mustf(t, plugintest.Sysctl(t, cont, "net/ipv6/conf/eth0/accept_dad") == "0", "DAD is on by default")
			mustf(t, plugintest.Sysctl(t, cont, "net/ipv4/conf/eth0/arp_notify") == "1", "arp_notify is off")
			mustf(t, *res.IPs[0].Interface == 2 && res.Interfaces[2].Sandbox != "", "result IPs/interfaces: %+v", res)
			mustf(t, res.IPs[0].Gateway.String() == "10.10.1.1", "gateway %v", res.IPs[0].Gateway)
			addrs, _ := e.host.Handle().AddrList(br, netlink.FAMILY_V4)
			mustf(t, len(addrs) == 0, "bridge has addresses without isGateway: %v", addrs)
		},
	},
	{
		name: "bridge name", subnets: []string{"10.10.2.0/24"}, extra: map[string]any{"bridge": "br-test"},
		verify: func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
			mustf(t, res.Interfaces[0].Name == "br-test" && e.host.Link("br-test").Type() == "bridge", "bridge: %+v", res.Interfaces[0])
		},
	},
	{
		name: "isGateway", subnets: []string{"10.10.3.0/24"}, extra: map[string]any{"isGateway": true},
		verify: func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
			addrs, _ := e.host.Handle().AddrList(e.host.Link("cni0"), netlink.FAMILY_V4)
			mustf(t, len(addrs) == 1 && addrs[0].IPNet.String() == "10.10.3.1/24", "bridge addresses %v", addrs)
			mustf(t, plugintest.Sysctl(t, e.host.NS, "net/ipv4/ip_forward") == "1", "forwarding off")
			mustf(t, cont.Ping("10.10.3.1") == nil, "gateway unreachable")
		},
	},
	{
		name: "isDefaultGateway", subnets: []string{"10.10.4.0/24"}, extra: map[string]any{"isDefaultGateway": true},
		verify: func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
			routes, _ := cont.Handle().RouteList(nil, netlink.FAMILY_V4)
			found := false
			for _, r := range routes {
				if (r.Dst == nil || r.Dst.String() == "0.0.0.0/0") && r.Gw.String() == "10.10.4.1" {
					found = true
				}
			}
			mustf(t, found, "no default route via 10.10.4.1: %v", routes)
			mustf(t, len(res.Routes) == 1 && res.Routes[0].Dst.String() == "0.0.0.0/0", "result routes %v", res.Routes)
		},
	},
	{
		name: "mtu", subnets: []string{"10.10.5.0/24"}, extra: map[string]any{"mtu": 1400},
		verify: func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
			mustf(t, e.host.Link("cni0").Attrs().MTU == 1400, "bridge MTU %d", e.host.Link("cni0").Attrs().MTU)
			mustf(t, e.host.Link(res.Interfaces[1].Name).Attrs().MTU == 1400, "host end MTU")
			l, _ := cont.Handle().LinkByName("eth0")
			mustf(t, l.Attrs().MTU == 1400, "container MTU %d", l.Attrs().MTU)
		},
	},
	{
		name: "hairpinMode", subnets: []string{"10.10.6.0/24"}, extra: map[string]any{"hairpinMode": true},
		verify: func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
			mustf(t, protinfo(t, e, res.Interfaces[1].Name).Hairpin, "hairpin off")
		},
	},
	{
		name: "promiscMode", subnets: []string{"10.10.7.0/24"}, extra: map[string]any{"promiscMode": true},
		verify: func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
			mustf(t, e.host.Link("cni0").Attrs().Promisc == 1, "bridge not promiscuous")
			mustf(t, !protinfo(t, e, res.Interfaces[1].Name).Hairpin, "hairpin on")
		},
	},
	{
		name: "portIsolation", subnets: []string{"10.10.8.0/24"}, extra: map[string]any{"portIsolation": true},
		verify: func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
			mustf(t, protinfo(t, e, res.Interfaces[1].Name).Isolated, "port not isolated")
		},
	},
	{
		name: "existing bridge", subnets: []string{"10.10.25.0/24"},
		before: func(t *testing.T, e *env) {
			// Its MAC is not pinned: it follows the lowest MAC of its ports.
			e.host.MustRun("ip", "link", "add", "cni0", "type", "bridge")
		},
		verify: func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
			br := e.host.Link("cni0")
			mustf(t, res.Interfaces[0].Mac == br.Attrs().HardwareAddr.String(), "result says bridge MAC %s, bridge has %s", res.Interfaces[0].Mac, br.Attrs().HardwareAddr)
		},
	},
	{
		name: "macspoofchk", subnets: []string{"10.10.13.0/24"}, extra: map[string]any{"macspoofchk": true},
		verify: func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
			requireTool(t, "nft")
			_, spoof := e.nftElements()
			mustf(t, len(spoof) == 1 && spoof[0].Port == res.Interfaces[1].Name, "spoof elements %+v", spoof)
			out := e.host.MustRun("nft", "list", "table", "bridge", "cnikit")
			mustf(t, containsSub([]string{out}, "ether saddr "+res.Interfaces[2].Mac+" return"), "ruleset:\n%s", out)
		},
	},
	{
		name: "enabledad", subnets: []string{"fd10:14::/64"}, extra: map[string]any{"enabledad": true},
		verify: func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
			mustf(t, plugintest.Sysctl(t, cont, "net/ipv6/conf/eth0/accept_dad") == "1", "accept_dad")
			mustf(t, plugintest.Sysctl(t, cont, "net/ipv6/conf/eth0/enhanced_dad") == "1", "enhanced_dad")
		},
	},
	{
		name: "disableContainerInterface", extra: map[string]any{"disableContainerInterface": true},
		verify: func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
			l, _ := cont.Handle().LinkByName("eth0")
			mustf(t, l.Attrs().Flags&net.FlagUp == 0, "container interface is up")
			mustf(t, len(res.IPs) == 0, "IPs without IPAM: %v", res.IPs)
		},
	},
	{
		name: "L2 only", extra: map[string]any{},
		verify: func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
			l, _ := cont.Handle().LinkByName("eth0")
			mustf(t, l.Attrs().Flags&net.FlagUp != 0, "container interface is down")
		},
	},
	{
		name: "mac from CNI_ARGS", subnets: []string{"10.10.15.0/24"}, cniArgs: "IgnoreUnknown=1;MAC=02:00:00:00:15:01;K8S_POD_NAME=x",
		verify: func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
			mustf(t, res.Interfaces[2].Mac == "02:00:00:00:15:01", "container MAC %s", res.Interfaces[2].Mac)
		},
	},
	{
		name: "args.cni.mac beats CNI_ARGS", subnets: []string{"10.10.16.0/24"}, cniArgs: "IgnoreUnknown=1;MAC=02:00:00:00:16:01",
		extra: map[string]any{"args": map[string]any{"cni": map[string]any{"mac": "02:00:00:00:16:02"}}},
		verify: func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
			mustf(t, res.Interfaces[2].Mac == "02:00:00:00:16:02", "container MAC %s", res.Interfaces[2].Mac)
		},
	},
	{
		name: "runtimeConfig.mac beats both", subnets: []string{"10.10.17.0/24"}, cniArgs: "IgnoreUnknown=1;MAC=02:00:00:00:17:01",
		extra: map[string]any{"args": map[string]any{"cni": map[string]any{"mac": "02:00:00:00:17:02"}},
			"runtimeConfig": map[string]any{"mac": "02:00:00:00:17:03"}},
		verify: func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
			l, _ := cont.Handle().LinkByName("eth0")
			mustf(t, l.Attrs().HardwareAddr.String() == "02:00:00:00:17:03", "container MAC %s", l.Attrs().HardwareAddr)
		},
	},
	{
		name: "ipMasq", subnets: []string{"10.10.18.0/24"}, extra: map[string]any{"ipMasq": true},
		verify: func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
			mustf(t, slices.Equal(e.masqueradedIPs(), []string{"10.10.18.2"}), "masqueraded %v", e.masqueradedIPs())
		},
	},
	{
		name: "ipMasqBackend iptables", subnets: []string{"10.10.19.0/24"}, extra: map[string]any{"ipMasq": true, "ipMasqBackend": "iptables"},
		verify: func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
			mustf(t, slices.Equal(e.masqueradedIPs(), []string{"10.10.19.2"}), "masqueraded %v", e.masqueradedIPs())
		},
	},
	{
		name: "ipMasqBackend nftables", subnets: []string{"10.10.20.0/24", "fd10:20::/64"}, extra: map[string]any{"ipMasq": true, "ipMasqBackend": "nftables"},
		verify: func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
			got := e.masqueradedIPs()
			mustf(t, len(got) == 2 && slices.Contains(got, "10.10.20.2") && slices.Contains(got, "fd10:20::2"), "masqueraded %v", got)
		},
	},
	{
		name: "dns", subnets: []string{"10.10.21.0/24"},
		extra: map[string]any{"dns": map[string]any{"nameservers": []string{"10.10.21.53"}, "search": []string{"example.test"}}},
		verify: func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
			mustf(t, slices.Equal(res.DNS.Nameservers, []string{"10.10.21.53"}) && slices.Equal(res.DNS.Search, []string{"example.test"}), "DNS %+v", res.DNS)
		},
	},
	{
		name: "forceAddress", subnets: []string{"10.10.22.0/24"}, extra: map[string]any{"isGateway": true, "forceAddress": true},
		before: func(t *testing.T, e *env) {
			e.host.MustRun("ip", "link", "add", "cni0", "type", "bridge")
			e.host.MustRun("ip", "addr", "add", "10.99.0.1/16", "dev", "cni0")
		},
		verify: func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
			addrs, _ := e.host.Handle().AddrList(e.host.Link("cni0"), netlink.FAMILY_V4)
			mustf(t, len(addrs) == 1 && addrs[0].IPNet.String() == "10.10.22.1/24", "bridge addresses %v", addrs)
		},
	},
	{
		name: "IPv6", subnets: []string{"fd10:23::/64"}, extra: map[string]any{"isDefaultGateway": true},
		verify: func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
			mustf(t, slices.Contains(containerAddrs(t, cont, "eth0"), "fd10:23::2/64"), "addresses %v", containerAddrs(t, cont, "eth0"))
			mustf(t, plugintest.Sysctl(t, e.host.NS, "net/ipv6/conf/all/forwarding") == "1", "IPv6 forwarding off")
			mustf(t, cont.Ping("fd10:23::1") == nil, "IPv6 gateway unreachable")
		},
	},
	{
		name: "dual-stack", subnets: []string{"10.10.24.0/24", "fd10:24::/64"}, extra: map[string]any{"isDefaultGateway": true, "ipMasq": true},
		verify: func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
			a := containerAddrs(t, cont, "eth0")
			mustf(t, slices.Contains(a, "10.10.24.2/24") && slices.Contains(a, "fd10:24::2/64"), "addresses %v", a)
			mustf(t, len(res.Routes) == 2, "routes %v", res.Routes)
			mustf(t, cont.Ping("10.10.24.1") == nil && cont.Ping("fd10:24::1") == nil, "gateways unreachable")
		},
	},
}

func TestKeys(t *testing.T) {
	nstest.RequireRoot(t)
	for _, tc := range keyCases {
		t.Run(tc.name, func(t *testing.T) { runKeyCase(t, newEnv(t), tc) })
	}
}

// notInNetworkName matches what a case name has but a network name may not.
var notInNetworkName = regexp.MustCompile(`[^a-zA-Z0-9_.-]+`)

// runKeyCase runs ADD, verifies, then CHECK, DEL and DEL again, each of which
// must succeed and the DELs leave nothing of the attachment behind.
func runKeyCase(t *testing.T, e *env, tc keyCase) {
	t.Helper()
	cont := nstest.New(t)
	if tc.before != nil {
		tc.before(t, e)
	}
	conf := e.conf("net-"+notInNetworkName.ReplaceAllString(tc.name, "-"), tc.subnets, tc.extra)
	c := plugintest.Call{Conf: conf, Netns: cont.Path(), CNIArgs: tc.cniArgs}
	res, raw := e.host.MustAdd(c)
	tc.verify(t, e, res, cont)

	withPrev := plugintest.WithPrevResult(t, conf, raw)
	e.host.MustInvoke(plugintest.Call{Verb: "CHECK", Conf: withPrev, Netns: cont.Path(), CNIArgs: tc.cniArgs})
	for i := range 2 {
		e.host.MustInvoke(plugintest.Call{Verb: "DEL", Conf: withPrev, Netns: cont.Path(), CNIArgs: tc.cniArgs})
		if _, err := cont.Handle().LinkByName("eth0"); err == nil {
			t.Errorf("DEL %d: container interface still there", i+1)
		}
		for _, name := range e.host.LinkNames() {
			mustf(t, name != res.Interfaces[1].Name, "DEL %d: host end %s still there", i+1, name)
		}
		masq, spoof := e.nftElements()
		mustf(t, len(masq) == 0 && len(spoof) == 0, "DEL %d: nftables elements left: %+v %+v", i+1, masq, spoof)
	}
}
