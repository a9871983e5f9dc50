package ptp

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/nft"
	"github.com/cnikit/cnikit/internal/nstest"
	"github.com/cnikit/cnikit/internal/plugintest"
)

// keyCase is one configuration exercised through ADD, CHECK, DEL, DEL.
type keyCase struct {
	name  string
	ipam  func(e *env) map[string]any
	extra map[string]any
	// reserved lists the addresses IPAM must have released after DEL.
	reserved []string
	verify   func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS)
}

// verifyAttachment checks the layout every ptp attachment has: the host end
// carries the gateways and routes to the container, the container reaches
// its subnet and everything else through the gateways, and both sides reach
// each other.
func verifyAttachment(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
	t.Helper()
	mustf(t, len(res.Interfaces) == 2 && res.Interfaces[0].Sandbox == "" && res.Interfaces[1].Name == "eth0" &&
		res.Interfaces[1].Sandbox == cont.Path(), "result interfaces %+v", res.Interfaces)
	hostName := res.Interfaces[0].Name
	host, err := e.host.Handle().LinkByName(hostName)
	if err != nil {
		t.Fatalf("host end %q: %v", hostName, err)
	}
	mustf(t, host.Type() == "veth" && strings.HasPrefix(hostName, "veth"), "host end %s is a %s", hostName, host.Type())
	mustf(t, host.Attrs().HardwareAddr.String() == res.Interfaces[0].Mac, "host end MAC %s, result %s", host.Attrs().HardwareAddr, res.Interfaces[0].Mac)
	mustf(t, len(host.Attrs().AltNames) == 1 && strings.HasPrefix(host.Attrs().AltNames[0], altNamePrefix), "host end altnames %v", host.Attrs().AltNames)
	mustf(t, plugintest.Sysctl(t, e.host.NS, "net/ipv6/conf/"+hostName+"/accept_ra") == "0", "host end accepts router advertisements")
	mustf(t, plugintest.Sysctl(t, e.host.NS, "net/ipv6/conf/"+hostName+"/accept_dad") == "0", "host end does DAD")
	mustf(t, plugintest.Sysctl(t, cont, "net/ipv6/conf/eth0/accept_dad") == "0", "container DAD on")

	hostAddrs := map[string]int{}
	for _, a := range plugintest.GlobalAddrs(t, e.host.NS, hostName) {
		hostAddrs[a.IPNet.String()] = a.Flags
	}
	contAddrs := map[string]int{}
	for _, a := range plugintest.GlobalAddrs(t, cont, "eth0") {
		contAddrs[a.IPNet.String()] = a.Flags
	}
	contRoutes := routesOf(t, cont, "eth0")
	hostRoutes := e.hostRoutes()
	for _, ip := range res.IPs {
		mustf(t, ip.Interface != nil && *ip.Interface == 1, "IP %v points at interface %v", ip.Address, ip.Interface)
		cidr, _ := cni.FormatCIDR(ip.Address)
		addr, gw := ip.Address.IP.String(), ip.Gateway.String()
		bits := "/32"
		family := "4"
		if ip.Family() == 6 {
			bits, family = "/128", "6"
		}
		flags, ok := contAddrs[cidr]
		mustf(t, ok && flags&unix.IFA_F_NOPREFIXROUTE != 0, "container address %s: present %v, flags %#x", cidr, ok, flags)
		mustf(t, flags&unix.IFA_F_TENTATIVE == 0, "container address %s is tentative", cidr)
		gwFlags, ok := hostAddrs[gw+bits]
		mustf(t, ok && gwFlags&unix.IFA_F_TENTATIVE == 0, "host end gateway %s%s: present %v, flags %#x (all %v)", gw, bits, ok, gwFlags, hostAddrs)
		mustf(t, slices.Contains(hostRoutes, addr+bits+" "+hostName), "host routes %v lack %s%s via %s", hostRoutes, addr, bits, hostName)
		gwRoute := gw + bits + " src " + addr
		if family == "4" {
			gwRoute += " scope link"
		}
		subnet := ip.Address.IP.Mask(ip.Address.Mask).String()
		ones, _ := ip.Address.Mask.Size()
		subnetRoute := subnet + "/" + strconv.Itoa(ones) + " via " + gw + " src " + addr
		mustf(t, slices.Contains(contRoutes, gwRoute) && slices.Contains(contRoutes, subnetRoute), "container routes %v lack %q or %q", contRoutes, gwRoute, subnetRoute)
		mustf(t, !slices.Contains(contRoutes, subnet+"/"+strconv.Itoa(ones)), "container has the kernel's prefix route to %s: %v", subnet, contRoutes)
		if family == "4" {
			mustf(t, plugintest.Sysctl(t, e.host.NS, "net/ipv4/ip_forward") == "1", "IPv4 forwarding off")
		} else {
			mustf(t, plugintest.Sysctl(t, e.host.NS, "net/ipv6/conf/all/forwarding") == "1", "IPv6 forwarding off")
		}
		mustf(t, cont.Ping(gw) == nil, "container cannot reach its gateway %s", gw)
		mustf(t, e.host.Ping(addr) == nil, "host cannot reach the container at %s", addr)
	}
}

var keyCases = []keyCase{
	{
		name: "defaults", ipam: func(e *env) map[string]any { return e.hostLocal("10.20.1.0/24") }, reserved: []string{"10.20.1.2"},
		verify: func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
			mustf(t, len(res.IPs) == 1 && res.IPs[0].Address.String() == "10.20.1.2/24" && res.IPs[0].Gateway.String() == "10.20.1.1", "IPs %+v", res.IPs)
			mustf(t, len(e.masqueraded()) == 0, "masquerade without ipMasq: %v", e.masqueraded())
			l, _ := cont.Handle().LinkByName("eth0")
			mustf(t, l.Attrs().MTU == 1500, "container MTU %d", l.Attrs().MTU)
		},
	},
	{
		name: "IPAM routes",
		ipam: func(e *env) map[string]any {
			m := e.hostLocal("10.20.2.0/24")
			m["routes"] = []map[string]string{{"dst": "0.0.0.0/0"}, {"dst": "10.99.0.0/16", "gw": "10.20.2.1"}}
			return m
		},
		verify: func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
			routes := routesOf(t, cont, "eth0")
			mustf(t, slices.Contains(routes, "default via 10.20.2.1") && slices.Contains(routes, "10.99.0.0/16 via 10.20.2.1"), "container routes %v", routes)
			mustf(t, len(res.Routes) == 2 && res.Routes[0].GW == nil, "result routes %+v (IPAM's, as given)", res.Routes)
		},
	},
	{
		name: "mtu", ipam: func(e *env) map[string]any { return e.hostLocal("10.20.3.0/24") }, extra: map[string]any{"mtu": 1400},
		verify: func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
			host, _ := e.host.Handle().LinkByName(res.Interfaces[0].Name)
			l, _ := cont.Handle().LinkByName("eth0")
			mustf(t, host.Attrs().MTU == 1400 && l.Attrs().MTU == 1400, "MTU host %d container %d", host.Attrs().MTU, l.Attrs().MTU)
		},
	},
	{
		name: "ipMasq", ipam: func(e *env) map[string]any { return e.hostLocal("10.20.4.0/24") }, extra: map[string]any{"ipMasq": true},
		verify: func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
			mustf(t, slices.Equal(e.masqueraded(), []string{"10.20.4.2"}), "masqueraded %v", e.masqueraded())
			out := e.host.MustRun("nft", "list", "table", "inet", "cnikit")
			mustf(t, strings.Contains(out, "ip daddr != 10.20.4.0/24 masquerade"), "ruleset:\n%s", out)
		},
	},
	{
		name: "ipMasqBackend iptables", ipam: func(e *env) map[string]any { return e.hostLocal("10.20.5.0/24") },
		extra: map[string]any{"ipMasq": true, "ipMasqBackend": "iptables"},
		verify: func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
			mustf(t, slices.Equal(e.masqueraded(), []string{"10.20.5.2"}), "masqueraded %v", e.masqueraded())
		},
	},
	{
		name: "ipMasqBackend nftables", ipam: func(e *env) map[string]any { return e.hostLocal("10.20.6.0/24", "fd20:6::/64") },
		extra: map[string]any{"ipMasq": true, "ipMasqBackend": "nftables"},
		verify: func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
			got := e.masqueraded()
			mustf(t, len(got) == 2 && slices.Contains(got, "10.20.6.2") && slices.Contains(got, "fd20:6::2"), "masqueraded %v", got)
		},
	},
	{
		name: "dns", ipam: func(e *env) map[string]any { return e.hostLocal("10.20.7.0/24") },
		extra: map[string]any{"dns": map[string]any{"nameservers": []string{"10.20.7.53"}, "search": []string{"example.test"}}},
		verify: func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
			mustf(t, slices.Equal(res.DNS.Nameservers, []string{"10.20.7.53"}) && slices.Equal(res.DNS.Search, []string{"example.test"}), "DNS %+v", res.DNS)
		},
	},
	{
		name: "IPAM dns kept without dns", ipam: func(e *env) map[string]any {
			m := staticIPAM([2]string{"10.20.8.5/24", "10.20.8.1"})
			m["dns"] = map[string]any{"nameservers": []string{"10.20.8.1"}}
			return m
		},
		verify: func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
			mustf(t, slices.Equal(res.DNS.Nameservers, []string{"10.20.8.1"}), "DNS %+v", res.DNS)
		},
	},
	{
		name: "IPv6", ipam: func(e *env) map[string]any {
			m := e.hostLocal("fd20:9::/64")
			m["routes"] = []map[string]string{{"dst": "::/0"}}
			return m
		},
		reserved: []string{"fd20:9::2"},
		verify: func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
			mustf(t, len(res.IPs) == 1 && res.IPs[0].Address.String() == "fd20:9::2/64", "IPs %+v", res.IPs)
			mustf(t, slices.Contains(routesOf(t, cont, "eth0"), "default via fd20:9::1"), "routes %v", routesOf(t, cont, "eth0"))
		},
	},
	{
		name: "dual-stack", ipam: func(e *env) map[string]any { return e.hostLocal("10.20.10.0/24", "fd20:10::/64") },
		extra: map[string]any{"ipMasq": true}, reserved: []string{"10.20.10.2", "fd20:10::2"},
		verify: func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
			mustf(t, len(res.IPs) == 2, "IPs %+v", res.IPs)
			mustf(t, len(e.masqueraded()) == 2, "masqueraded %v", e.masqueraded())
		},
	},
	{
		name: "two IPv4 subnets", ipam: func(e *env) map[string]any { return e.hostLocal("10.20.11.0/24", "10.20.12.0/24") },
		verify: func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
			mustf(t, len(res.IPs) == 2 && len(plugintest.GlobalAddrs(t, e.host.NS, res.Interfaces[0].Name)) == 2, "IPs %+v", res.IPs)
		},
	},
	{
		name: "static IPAM", ipam: func(e *env) map[string]any {
			m := staticIPAM([2]string{"10.20.13.5/24", "10.20.13.1"}, [2]string{"fd20:13::5/64", "fd20:13::1"})
			m["routes"] = []map[string]string{{"dst": "0.0.0.0/0"}, {"dst": "::/0"}}
			return m
		},
		verify: func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
			routes := routesOf(t, cont, "eth0")
			mustf(t, slices.Contains(routes, "default via 10.20.13.1") && slices.Contains(routes, "default via fd20:13::1"), "routes %v", routes)
		},
	},
	{
		name: "static IPAM, gateway outside the subnet", ipam: func(e *env) map[string]any {
			return staticIPAM([2]string{"10.20.14.5/24", "192.0.2.254"})
		},
	},
	{
		name: "static IPAM, /32 address", ipam: func(e *env) map[string]any {
			return staticIPAM([2]string{"10.20.15.5/32", "10.20.15.1"})
		},
	},
}

func TestKeys(t *testing.T) {
	nstest.RequireRoot(t)
	for _, tc := range keyCases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			cont := nstest.New(t)
			network := "net-" + strings.NewReplacer(" ", "-", ",", "", "/", "").Replace(tc.name)
			c := netConf(t, network, tc.ipam(e), tc.extra)
			res, raw := e.host.MustAdd(plugintest.Call{Conf: c, Netns: cont.Path()})
			verifyAttachment(t, e, res, cont)
			if tc.verify != nil {
				tc.verify(t, e, res, cont)
			}
			hostName := res.Interfaces[0].Name

			withPrev := plugintest.WithPrevResult(t, c, raw)
			e.host.MustInvoke(plugintest.Call{Verb: "CHECK", Conf: withPrev, Netns: cont.Path()})
			for i := range 2 {
				e.host.MustInvoke(plugintest.Call{Verb: "DEL", Conf: withPrev, Netns: cont.Path()})
				_, err := cont.Handle().LinkByName("eth0")
				mustf(t, err != nil, "DEL %d: container interface still there", i+1)
				mustf(t, !slices.Contains(e.host.LinkNames(), hostName), "DEL %d: host end %s still there", i+1, hostName)
				for _, r := range e.hostRoutes() {
					mustf(t, !strings.HasSuffix(r, " "+hostName), "DEL %d: host route %s left", i+1, r)
				}
				mustf(t, len(e.masqueraded()) == 0, "DEL %d: masquerade left: %v", i+1, e.masqueraded())
			}
			for _, ip := range tc.reserved {
				if _, err := os.Stat(filepath.Join(e.dataDir, network, ip)); err == nil {
					t.Errorf("address %s still reserved after DEL", ip)
				}
			}
		})
	}
}

// hostEndOf returns the host end of the attachment, found by its name.
func hostEndOf(t *testing.T, e *env, network, cid string) netlink.Link {
	t.Helper()
	l, err := e.host.Handle().LinkByName(hostAltName(nft.Attachment{Network: network, ContainerID: cid, IfName: "eth0"}))
	if err != nil {
		return nil
	}
	return l
}
