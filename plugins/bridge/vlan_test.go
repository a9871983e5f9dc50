package bridge

import (
	"fmt"
	"maps"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/nstest"
	"github.com/cnikit/cnikit/internal/plugintest"
)

// These tests need bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING) and,
// for the trunk, 8021q; they skip on a kernel without them. On such a
// machine, scripts/guest-test.sh runs them in a QEMU guest with Debian's
// stock kernel, where a skip counts as a failure.

// VLAN flags of a bridge port entry, as BridgeVlanList reports them.
const (
	pvid         = nl.BRIDGE_VLAN_INFO_PVID
	untagged     = nl.BRIDGE_VLAN_INFO_UNTAGGED
	pvidUntagged = pvid | untagged
	tagged       = 0
)

// portVlans returns the VLANs of the bridge port (or bridge) called name:
// VLAN ID to its PVID and untagged flags.
func portVlans(t *testing.T, e *env, name string) map[uint16]uint16 {
	t.Helper()
	l := e.host.Link(name)
	all, err := e.host.Handle().BridgeVlanList()
	if err != nil {
		t.Fatal(err)
	}
	out := map[uint16]uint16{}
	for _, v := range all[int32(l.Attrs().Index)] {
		out[v.Vid] = v.Flags & pvidUntagged
	}
	return out
}

func wantPortVlans(t *testing.T, e *env, name string, want map[uint16]uint16) {
	t.Helper()
	if got := portVlans(t, e, name); !maps.Equal(got, want) {
		t.Errorf("VLANs of %s: %v, want %v (VLAN: flags; %d PVID, %d untagged)", name, got, want, pvid, untagged)
	}
}

// trunkRange lists VLAN IDs min..max as tagged entries.
func trunkRange(min, max uint16) map[uint16]uint16 {
	m := map[uint16]uint16{}
	for v := min; v <= max; v++ {
		m[v] = tagged
	}
	return m
}

func with(m map[uint16]uint16, more map[uint16]uint16) map[uint16]uint16 {
	out := maps.Clone(m)
	maps.Copy(out, more)
	return out
}

func vlanFilteringOn(t *testing.T, e *env, bridge string) bool {
	t.Helper()
	br, ok := e.host.Link(bridge).(*netlink.Bridge)
	if !ok {
		t.Fatalf("%s is not a bridge", bridge)
	}
	return br.VlanFiltering != nil && *br.VlanFiltering
}

// gatewayPeer returns the bridge port at the other end of the gateway veth.
func gatewayPeer(t *testing.T, e *env, gw netlink.Link) netlink.Link {
	t.Helper()
	if gw.Type() != "veth" {
		t.Fatalf("%s is a %s, not a veth", gw.Attrs().Name, gw.Type())
	}
	peer, err := e.host.Handle().LinkByIndex(gw.Attrs().ParentIndex)
	if err != nil {
		t.Fatalf("peer of %s: %v", gw.Attrs().Name, err)
	}
	return peer
}

func hostAddrs(t *testing.T, e *env, l netlink.Link) []string {
	t.Helper()
	addrs, err := e.host.Handle().AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range addrs {
		if !a.IP.IsLinkLocalUnicast() {
			out = append(out, a.IPNet.String())
		}
	}
	return out
}

var vlanKeyCases = []keyCase{
	{
		name: "vlan", subnets: []string{"10.40.1.0/24"}, extra: map[string]any{"vlan": 100},
		verify: func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
			mustf(t, vlanFilteringOn(t, e, "cni0"), "vlan_filtering off on the new bridge")
			// preserveDefaultVlan defaults to true: VLAN 1 stays, without PVID.
			wantPortVlans(t, e, res.Interfaces[1].Name, map[uint16]uint16{1: untagged, 100: pvidUntagged})
			wantPortVlans(t, e, "cni0", map[uint16]uint16{1: pvidUntagged})
			mustf(t, len(res.Interfaces) == 3, "result interfaces without isGateway: %+v", res.Interfaces)
		},
	},
	{
		name: "vlan, preserveDefaultVlan false", subnets: []string{"10.40.2.0/24"},
		extra: map[string]any{"vlan": 100, "preserveDefaultVlan": false},
		verify: func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
			wantPortVlans(t, e, res.Interfaces[1].Name, map[uint16]uint16{100: pvidUntagged})
		},
	},
	{
		name: "preserveDefaultVlan true", subnets: []string{"10.40.3.0/24"},
		extra: map[string]any{"vlan": 300, "preserveDefaultVlan": true},
		verify: func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
			wantPortVlans(t, e, res.Interfaces[1].Name, map[uint16]uint16{1: untagged, 300: pvidUntagged})
		},
	},
	{
		name: "vlan 1", subnets: []string{"10.40.4.0/24"}, extra: map[string]any{"vlan": 1, "preserveDefaultVlan": false},
		verify: func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
			wantPortVlans(t, e, res.Interfaces[1].Name, map[uint16]uint16{1: pvidUntagged})
		},
	},
	{
		name: "vlanTrunk", extra: map[string]any{"vlanTrunk": []map[string]int{{"id": 101}, {"minID": 200, "maxID": 202}}},
		verify: func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
			mustf(t, vlanFilteringOn(t, e, "cni0"), "vlan_filtering off on the new bridge")
			// The default VLAN stays the port's native one.
			wantPortVlans(t, e, res.Interfaces[1].Name, with(trunkRange(200, 202), map[uint16]uint16{1: pvidUntagged, 101: tagged}))
		},
	},
	{
		name:  "vlanTrunk, preserveDefaultVlan false",
		extra: map[string]any{"vlanTrunk": []map[string]int{{"minID": 10, "maxID": 12}}, "preserveDefaultVlan": false},
		verify: func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
			// Tagged only: untagged frames from the container are dropped.
			wantPortVlans(t, e, res.Interfaces[1].Name, trunkRange(10, 12))
		},
	},
	{
		name: "vlan and vlanTrunk", subnets: []string{"10.40.7.0/24"},
		extra: map[string]any{"vlan": 100, "vlanTrunk": []map[string]int{{"minID": 99, "maxID": 101}}, "preserveDefaultVlan": false},
		verify: func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
			// The native VLAN keeps PVID and untagged inside the trunk range.
			wantPortVlans(t, e, res.Interfaces[1].Name, map[uint16]uint16{99: tagged, 100: pvidUntagged, 101: tagged})
		},
	},
	{
		name: "vlan with isGateway", subnets: []string{"10.40.8.0/24", "fd10:40:8::/64"},
		extra: map[string]any{"vlan": 200, "isGateway": true, "preserveDefaultVlan": false},
		verify: func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
			gw := e.host.Link("cni0.200")
			mustf(t, gw.Attrs().Flags&net.FlagUp != 0, "cni0.200 is down")
			a := hostAddrs(t, e, gw)
			mustf(t, len(a) == 2 && slices.Contains(a, "10.40.8.1/24") && slices.Contains(a, "fd10:40:8::1/64"), "cni0.200 addresses %v", a)
			mustf(t, len(hostAddrs(t, e, e.host.Link("cni0"))) == 0, "the bridge itself got addresses: %v", hostAddrs(t, e, e.host.Link("cni0")))
			mustf(t, plugintest.Sysctl(t, e.host.NS, "net/ipv6/conf/cni0.200/accept_ra") == "0", "cni0.200 accepts router advertisements")
			peer := gatewayPeer(t, e, gw)
			mustf(t, peer.Attrs().MasterIndex == e.host.Link("cni0").Attrs().Index, "peer %s of cni0.200 is not a port of cni0", peer.Attrs().Name)
			mustf(t, plugintest.Sysctl(t, e.host.NS, "net/ipv6/conf/"+peer.Attrs().Name+"/accept_ra") == "0", "gateway peer accepts router advertisements")
			wantPortVlans(t, e, peer.Attrs().Name, map[uint16]uint16{200: pvidUntagged})
			wantPortVlans(t, e, res.Interfaces[1].Name, map[uint16]uint16{200: pvidUntagged})
			mustf(t, len(res.Interfaces) == 4 && res.Interfaces[3].Name == "cni0.200" && res.Interfaces[3].Mac == gw.Attrs().HardwareAddr.String(),
				"result interfaces %+v", res.Interfaces)
			mustf(t, plugintest.Sysctl(t, e.host.NS, "net/ipv4/ip_forward") == "1", "IPv4 forwarding off")
			for _, addr := range []string{"10.40.8.1", "fd10:40:8::1"} {
				if err := cont.Ping(addr); err != nil {
					t.Errorf("VLAN gateway unreachable: %v", err)
				}
			}
		},
	},
	{
		name: "vlan with isGateway keeps the default VLAN", subnets: []string{"10.40.9.0/24"},
		extra: map[string]any{"vlan": 201, "isGateway": true},
		before: func(t *testing.T, e *env) {
			on := true
			br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "cni0", MTU: 1400}, VlanFiltering: &on}
			if err := e.host.Handle().LinkAdd(br); err != nil {
				t.Fatal(err)
			}
		},
		verify: func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
			gw := e.host.Link("cni0.201")
			peer := gatewayPeer(t, e, gw)
			wantPortVlans(t, e, peer.Attrs().Name, map[uint16]uint16{1: untagged, 201: pvidUntagged})
			mustf(t, gw.Attrs().MTU == 1400 && peer.Attrs().MTU == 1400, "gateway veth MTU %d/%d, want the bridge's 1400", gw.Attrs().MTU, peer.Attrs().MTU)
			mustf(t, cont.Ping("10.40.9.1") == nil, "VLAN gateway unreachable")
		},
	},
	{
		name: "vlan with isGateway, gateway interface already there", subnets: []string{"10.40.10.0/24"},
		extra: map[string]any{"vlan": 202, "isGateway": true},
		before: func(t *testing.T, e *env) {
			// As the reference v1.1 left it: attached, but down.
			h := e.host.Handle()
			on := true
			if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "cni0"}, VlanFiltering: &on}); err != nil {
				t.Fatal(err)
			}
			if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "cni0.202"}, PeerName: "gwpeer202"}); err != nil {
				t.Fatal(err)
			}
			peer := e.host.Link("gwpeer202")
			if err := h.LinkSetMaster(peer, e.host.Link("cni0")); err != nil {
				t.Fatal(err)
			}
			if err := h.BridgeVlanAdd(peer, 202, true, true, false, true); err != nil {
				t.Fatal(err)
			}
			if err := h.LinkSetUp(peer); err != nil {
				t.Fatal(err)
			}
		},
		verify: func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
			gw := e.host.Link("cni0.202")
			mustf(t, gw.Attrs().Flags&net.FlagUp != 0, "existing cni0.202 left down")
			mustf(t, gatewayPeer(t, e, gw).Attrs().Name == "gwpeer202", "cni0.202 was replaced")
			mustf(t, slices.Contains(hostAddrs(t, e, gw), "10.40.10.1/24"), "cni0.202 addresses %v", hostAddrs(t, e, gw))
			mustf(t, cont.Ping("10.40.10.1") == nil, "VLAN gateway unreachable")
		},
	},
	{
		name: "vlan on an existing bridge without filtering", subnets: []string{"10.40.11.0/24"}, extra: map[string]any{"vlan": 100},
		before: func(t *testing.T, e *env) {
			e.host.MustRun("ip", "link", "add", "cni0", "type", "bridge")
		},
		verify: func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
			// As in the reference, an existing bridge is not switched to
			// VLAN filtering; the port's VLANs are set all the same.
			mustf(t, !vlanFilteringOn(t, e, "cni0"), "vlan_filtering turned on on an existing bridge")
			wantPortVlans(t, e, res.Interfaces[1].Name, map[uint16]uint16{1: untagged, 100: pvidUntagged})
		},
	},
}

// TestVlanKeys: every VLAN key through ADD, CHECK, DEL, DEL, with the
// bridge VLAN entries of each port checked exactly.
func TestVlanKeys(t *testing.T) {
	nstest.RequireRoot(t)
	for _, tc := range vlanKeyCases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			requireVlanFiltering(t, e)
			runKeyCase(t, e, tc)
		})
	}
}

// TestVlanTraffic: containers on one VLAN reach each other; containers on
// two VLANs do not, though their addresses share one subnet (so only the VLAN
// separates them); a trunk port carries each VLAN's frames tagged, and with
// preserveDefaultVlan false drops untagged ones.
func TestVlanTraffic(t *testing.T) {
	e := newEnv(t)
	requireVlanFiltering(t, e)
	require8021q(t, e.host.NS)
	onVlan := func(name string, vlan int, first, last string) []byte {
		return e.conf(name, nil, map[string]any{"bridge": "brv", "vlan": vlan, "preserveDefaultVlan": false,
			"ipam": map[string]any{"type": "host-local", "dataDir": e.dataDir,
				"ranges": [][]map[string]string{{{"subnet": "10.41.0.0/24", "rangeStart": first, "rangeEnd": last}}}}})
	}
	red, blue := onVlan("red", 100, "10.41.0.10", "10.41.0.19"), onVlan("blue", 200, "10.41.0.20", "10.41.0.29")
	r1, r2, b1 := nstest.New(t), nstest.New(t), nstest.New(t)
	resR1, _ := e.host.MustAdd(plugintest.Call{Conf: red, Netns: r1.Path(), ContainerID: "r1"})
	resR2, _ := e.host.MustAdd(plugintest.Call{Conf: red, Netns: r2.Path(), ContainerID: "r2"})
	resB1, _ := e.host.MustAdd(plugintest.Call{Conf: blue, Netns: b1.Path(), ContainerID: "b1"})
	ipR1, ipR2, ipB1 := resR1.IPs[0].Address.IP.String(), resR2.IPs[0].Address.IP.String(), resB1.IPs[0].Address.IP.String()

	if err := r1.Ping(ipR2); err != nil {
		t.Errorf("same VLAN: %v", err)
	}
	if err := r2.Ping(ipR1); err != nil {
		t.Errorf("same VLAN: %v", err)
	}
	mustNotReach(t, b1, ipR1)
	mustNotReach(t, r1, ipB1)

	// The trunk container has no address of its own; it reaches each VLAN
	// through an 802.1Q interface on its eth0, which only sees frames that
	// arrive tagged with that VLAN.
	trunk := nstest.New(t)
	e.host.MustAdd(plugintest.Call{Conf: e.conf("trunk", nil, map[string]any{"bridge": "brv", "preserveDefaultVlan": false,
		"vlanTrunk": []map[string]int{{"id": 100}, {"id": 200}}}), Netns: trunk.Path(), ContainerID: "trunk"})
	const trunkIP = "10.41.0.50/24"
	for _, step := range []struct {
		vlan        int
		reach, miss string
	}{{100, ipR1, ipB1}, {200, ipB1, ipR1}} {
		name := fmt.Sprintf("eth0.%d", step.vlan)
		sub := addVlanLink(t, trunk, "eth0", name, step.vlan, trunkIP)
		if err := trunk.Ping(step.reach); err != nil {
			t.Errorf("trunk VLAN %d: %v", step.vlan, err)
		}
		mustNotReach(t, trunk, step.miss)
		if err := trunk.Handle().LinkDel(sub); err != nil {
			t.Fatal(err)
		}
	}
	// Untagged from the trunk: no native VLAN, nowhere to go.
	eth0, err := trunk.Handle().LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if err := trunk.Handle().AddrAdd(eth0, mustAddr(t, trunkIP)); err != nil {
		t.Fatal(err)
	}
	mustNotReach(t, trunk, ipR1)
}

// mustNotReach fails the test when ns gets an answer from addr. One second
// is plenty on a bridge: a leaked frame is answered within milliseconds.
func mustNotReach(t *testing.T, ns *nstest.NS, addr string) {
	t.Helper()
	if out, err := ns.Run("ping", "-c", "1", "-W", "1", addr); err == nil {
		t.Errorf("%s reached %s across VLANs:\n%s", ns.Path(), addr, out)
	}
}

// addVlanLink adds an 802.1Q interface on parent inside ns, with addr, up.
func addVlanLink(t *testing.T, ns *nstest.NS, parent, name string, vlan int, addr string) netlink.Link {
	t.Helper()
	h := ns.Handle()
	p, err := h.LinkByName(parent)
	if err != nil {
		t.Fatal(err)
	}
	v := &netlink.Vlan{LinkAttrs: netlink.LinkAttrs{Name: name, ParentIndex: p.Attrs().Index}, VlanId: vlan}
	if err := h.LinkAdd(v); err != nil {
		t.Fatalf("adding %s: %v", name, err)
	}
	if err := h.AddrAdd(v, mustAddr(t, addr)); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(v); err != nil {
		t.Fatal(err)
	}
	return v
}

func mustAddr(t *testing.T, cidr string) *netlink.Addr {
	t.Helper()
	a, err := netlink.ParseAddr(cidr)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// requireVlanFiltering skips when the kernel has no bridge VLAN filtering
// (CONFIG_BRIDGE_VLAN_FILTERING): a bridge cannot be created with it.
func requireVlanFiltering(t *testing.T, e *env) {
	t.Helper()
	on := true
	probe := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "vlanprobe"}, VlanFiltering: &on}
	if err := e.host.Handle().LinkAdd(probe); err != nil {
		t.Skipf("kernel lacks bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING): %v; scripts/guest-test.sh runs this in a QEMU guest", err)
	}
	if err := e.host.Handle().LinkDel(probe); err != nil {
		t.Fatal(err)
	}
}

// require8021q skips when the kernel cannot make 802.1Q interfaces.
func require8021q(t *testing.T, ns *nstest.NS) {
	t.Helper()
	h := ns.Handle()
	// 802.1Q needs an Ethernet parent: a veth is always there.
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "probe8021q"}, PeerName: "probe8021qp"}); err != nil {
		t.Fatal(err)
	}
	p, err := h.LinkByName("probe8021q")
	if err != nil {
		t.Fatal(err)
	}
	defer h.LinkDel(p)
	if err := h.LinkAdd(&netlink.Vlan{LinkAttrs: netlink.LinkAttrs{Name: "probe8021q.5", ParentIndex: p.Attrs().Index}, VlanId: 5}); err != nil {
		t.Skipf("kernel lacks 802.1Q interfaces (CONFIG_VLAN_8021Q): %v; scripts/guest-test.sh runs this in a QEMU guest", err)
	}
}

// TestVlanWithoutKernelSupport: on a kernel without bridge VLAN filtering, a
// VLAN configuration fails with a message that says so and leaves nothing
// behind. (On a kernel with it, the tests above cover the VLAN keys.)
func TestVlanWithoutKernelSupport(t *testing.T) {
	e := newEnv(t)
	on := true
	if err := e.host.Handle().LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "vlanprobe"}, VlanFiltering: &on}); err == nil {
		t.Log("this kernel has bridge VLAN filtering: nothing to fail")
		return
	}
	cont := nstest.New(t)
	before := e.host.LinkNames()
	_, cerr := e.host.Invoke(plugintest.Call{Verb: "ADD", Conf: e.conf("novlan", []string{"10.43.0.0/24"}, map[string]any{"vlan": 100}), Netns: cont.Path()})
	if cerr == nil || !strings.Contains(cerr.Msg, "CONFIG_BRIDGE_VLAN_FILTERING") {
		t.Fatalf("ADD: %v, want an error naming CONFIG_BRIDGE_VLAN_FILTERING", cerr)
	}
	if after := e.host.LinkNames(); !slices.Equal(before, after) {
		t.Errorf("failed ADD changed the host's links: %v -> %v", before, after)
	}
	if _, err := cont.Handle().LinkByName("eth0"); err == nil {
		t.Error("failed ADD left the container interface")
	}
}

// TestVlanLikeReference: the installed reference bridge (v1.1.1, which has
// `vlan` but neither vlanTrunk nor preserveDefaultVlan) leaves the same VLAN
// entries on the container's port and on the gateway's port as cnikit does
// with its defaults.
func TestVlanLikeReference(t *testing.T) {
	plugintest.RequireReference(t)
	for _, tc := range []struct {
		name    string
		extra   map[string]any
		gateway string
	}{
		{"vlan", map[string]any{"vlan": 100}, ""},
		{"vlan with isGateway", map[string]any{"vlan": 100, "isGateway": true}, "cni0.100"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ours, ref := newEnv(t), newEnv(t)
			requireVlanFiltering(t, ours)
			extra := maps.Clone(tc.extra)
			extra["cniVersion"] = "1.0.0" // the newest v1.1.1 knows
			conf := ours.conf("vlanref", []string{"10.42.0.0/24"}, extra)
			resOurs, _ := ours.host.MustAdd(plugintest.Call{Conf: conf, Netns: nstest.New(t).Path()})
			resRef := ref.referenceAdd(t, ref.conf("vlanref", []string{"10.42.0.0/24"}, extra), nstest.New(t).Path())

			for _, e := range []*env{ours, ref} {
				mustf(t, vlanFilteringOn(t, e, "cni0"), "vlan_filtering off")
			}
			got, want := portVlans(t, ours, resOurs.Interfaces[1].Name), portVlans(t, ref, resRef.Interfaces[1].Name)
			mustf(t, maps.Equal(got, want), "container port VLANs: cnikit %v, reference %v", got, want)
			if tc.gateway != "" {
				got := portVlans(t, ours, gatewayPeer(t, ours, ours.host.Link(tc.gateway)).Attrs().Name)
				want := portVlans(t, ref, gatewayPeer(t, ref, ref.host.Link(tc.gateway)).Attrs().Name)
				mustf(t, maps.Equal(got, want), "gateway port VLANs: cnikit %v, reference %v", got, want)
			}
		})
	}
}

// referenceAdd runs the reference bridge plugin's ADD inside the host
// namespace, with the reference host-local as its IPAM.
func (e *env) referenceAdd(t *testing.T, conf []byte, netns string) *cni.Result {
	t.Helper()
	out := e.host.MustExec(filepath.Join(plugintest.ReferenceDir, "bridge"),
		plugintest.Call{Verb: "ADD", ContainerID: "ref1", Netns: netns, Conf: conf})
	res, err := cni.ParseResult(out, "1.0.0")
	if err != nil {
		t.Fatalf("parsing the reference result %s: %v", out, err)
	}
	return res
}
