package interop

import (
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/cnikit/cnikit/internal/nstest"
	"github.com/cnikit/cnikit/internal/rundir"
)

// lifeCase is a chain to drive through its whole life, and what proves it
// works: the generic checks of life.run (address, gateway, cache, IPAM,
// leftovers) and the case's own probes.
type lifeCase struct {
	name string
	// plugins are the plugin objects' templates: %BRIDGE%, %SUBNET% (the
	// first three octets of the life's /24), %HOSTLOCAL% and %STATIC% (an ipam
	// section giving %SUBNET%.5/24, gateway %SUBNET%.1) are replaced.
	plugins []string
	// ifName is the container interface; "" means eth0.
	ifName         string
	capabilityArgs func(l *life) map[string]any
	// minVersion is, per implementation, the version below which the chain's
	// last plugin refuses the configuration on purpose (code 1).
	minVersion map[impl]string
	// extraVersions are driven besides the runtime's usual ones (to see a
	// refusal).
	extraVersions []string
	// before runs before ADD, attached after it (the container runs), after
	// after the last DEL.
	before, attached, after func(l *life)
}

// The bridge the meta plugins are chained after: no ipMasq, so that an
// nftables element or iptables rule naming the container is the meta
// plugin's.
const plainBridge = `{"type":"bridge","bridge":"%BRIDGE%","isGateway":true,"ipam":%HOSTLOCAL%}`

var lifeCases = []lifeCase{
	{name: "bridge+host-local", plugins: []string{
		`{"type":"bridge","bridge":"%BRIDGE%","isGateway":true,"ipMasq":true,"ipam":%HOSTLOCAL%}`},
		attached: func(l *life) { wantRulesNamingContainer(l, "bridge") }},
	{name: "bridge+static", plugins: []string{
		`{"type":"bridge","bridge":"%BRIDGE%","isGateway":true,"ipam":%STATIC%}`},
		attached: wantStaticAddress},
	{name: "ptp+host-local", plugins: []string{`{"type":"ptp","ipMasq":true,"ipam":%HOSTLOCAL%}`},
		attached: func(l *life) { wantRulesNamingContainer(l, "ptp") }},
	{name: "ptp+static", plugins: []string{`{"type":"ptp","ipam":%STATIC%}`}, attached: wantStaticAddress},
	{name: "loopback", ifName: "lo", plugins: []string{`{"type":"loopback"}`},
		before: setLoopbackDown, attached: wantLoopbackUp, after: wantLoopbackDown},
	{name: "portmap", plugins: []string{plainBridge, portmapPlugin}, capabilityArgs: portMappings, attached: wantPublished},
	{name: "firewall", plugins: []string{
		`{"type":"bridge","bridge":"%BRIDGE%","isDefaultGateway":true,"ipam":%HOSTLOCAL%}`, `{"type":"firewall"}`},
		// The reference firewall takes 0.4.0 and later.
		minVersion: map[impl]string{referenceImpl: "0.4.0"},
		attached: func(l *life) {
			wantRulesNamingContainer(l, "firewall")
			wantForwarded(l)
		}},
	{name: "tuning", plugins: []string{plainBridge, tuningPlugin},
		before: tuningBefore, attached: tuningAttached, after: tuningAfter},
	{name: "tuning on lo", ifName: "lo", plugins: []string{`{"type":"loopback"}`,
		`{"type":"tuning","mtu":1500,"sysctl":{"net.ipv4.conf.IFNAME.arp_ignore":"2"}}`},
		before: func(l *life) {
			setLoopbackDown(l)
			l.before["arp_ignore"] = readSysctl(l.t, l.container, "net/ipv4/conf/lo/arp_ignore")
			l.before["mtu"] = strconv.Itoa(linkMTU(l, "lo"))
		},
		attached: func(l *life) {
			wantLoopbackUp(l)
			wantMTU(l, "lo", 1500)
			wantSysctl(l, "net/ipv4/conf/lo/arp_ignore", "2")
			wantTuningBackup(l, "lo")
		},
		after: func(l *life) {
			wantLoopbackDown(l)
			wantMTU(l, "lo", atoi(l.before["mtu"]))
			wantSysctlRestored(l, "net/ipv4/conf/lo/arp_ignore", l.before["arp_ignore"], "2")
		}},
	{name: "bandwidth", plugins: []string{plainBridge,
		`{"type":"bandwidth","ingressRate":8000000,"ingressBurst":800000,"egressRate":4000000,"egressBurst":400000}`},
		// Both implementations take 0.3.0 and later: a 0.2.0 list has no
		// interfaces to find the host end in.
		minVersion:    map[impl]string{cnikitImpl: "0.3.0", referenceImpl: "0.3.0"},
		extraVersions: []string{"0.2.0"},
		attached:      func(l *life) { wantShaped(l, 8000000, 4000000) }},
}

const portmapPlugin = `{"type":"portmap","capabilities":{"portMappings":true}}`

func portMappings(l *life) map[string]any {
	return map[string]any{"portMappings": []map[string]any{{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}}}
}

// wantPublished checks the container's port 80 is published as the host's
// 8080: a TCP connection from the host namespace to the gateway address.
func wantPublished(l *life) {
	wantRulesNamingContainer(l, "portmap")
	if l.impls.of("portmap") == cnikitImpl {
		wantState(l, rundir.Plugin("portmap"))
	}
	assertPublishedTCP(l.t, l.host, l.container, l.gateway()+":8080", ":80")
}

const tuningPlugin = `{"type":"tuning","mtu":1400,"sysctl":{"net.core.somaxconn":"1024","net.ipv4.conf.IFNAME.arp_ignore":"1"}}`

func tuningBefore(l *life) {
	l.before["somaxconn"] = readSysctl(l.t, l.container, "net/core/somaxconn")
}

func tuningAttached(l *life) {
	wantMTU(l, "eth0", 1400)
	wantSysctl(l, "net/core/somaxconn", "1024")
	wantSysctl(l, "net/ipv4/conf/eth0/arp_ignore", "1")
	wantTuningBackup(l, "eth0")
}

// tuningAfter checks the namespace-wide sysctl after DEL (eth0 went with the
// interface plugin's DEL).
func tuningAfter(l *life) { wantSysctlRestored(l, "net/core/somaxconn", l.before["somaxconn"], "1024") }

// all runs probes in order.
func all(probes ...func(l *life)) func(l *life) {
	return func(l *life) {
		for _, p := range probes {
			p(l)
		}
	}
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

func wantStaticAddress(l *life) {
	if got := l.res.IPs[0].Address.String(); got != l.subnet()+".5/24" {
		l.t.Errorf("static gave %s, want %s.5/24", got, l.subnet())
	}
}

// The container's lo starts down (nstest brings it up), so that ADD is seen
// bringing it up.
func setLoopbackDown(l *life) { l.container.MustRun("ip", "link", "set", "lo", "down") }

func wantLoopbackUp(l *life) {
	t := l.t
	if l.res == nil || len(l.res.Interfaces) == 0 {
		t.Fatalf("loopback ADD result has no interface: %+v", l.res)
	}
	if i := l.res.Interfaces[0]; i.Name != "lo" || i.Sandbox != l.container.Path() {
		t.Errorf("loopback ADD result interface %+v, want lo in %s", i, l.container.Path())
	}
	if err := l.container.Ping("127.0.0.1"); err != nil {
		t.Fatal(err)
	}
}

func wantLoopbackDown(l *life) {
	lo, err := l.container.Handle().LinkByName("lo")
	if err != nil {
		l.t.Fatal(err)
	}
	if lo.Attrs().Flags&net.FlagUp != 0 {
		l.t.Error("lo is still up after DEL")
	}
}

// wantRulesNamingContainer checks that the plugin's entries for the running
// container are where its implementation puts them: nftables for cnikit's,
// iptables for the reference's.
func wantRulesNamingContainer(l *life, pluginType string) {
	cmd, where := "nft", "nftables"
	args := []string{"list", "ruleset"}
	if l.impls.of(pluginType) == referenceImpl {
		cmd, where, args = "iptables-save", "iptables", nil
	}
	if out, _ := l.host.Run(cmd, args...); !namesIP(l.containerAddr()).MatchString(out) {
		l.t.Errorf("%s of the %s %s names no %s of the running container:\n%s", where, l.impls.of(pluginType), pluginType,
			l.containerAddr(), out)
	}
}

// wantState checks a state file of the running container exists under dir,
// which proves the leftover check looks in the right place.
func wantState(l *life, dir string) {
	if found := stateNaming(l.t, dir, l.network(), l.containerID()); len(found) == 0 {
		l.t.Errorf("no state of the running container under %s", dir)
	}
}

// wantForwarded connects an "outside" namespace to the host and checks the
// container and the outside reach each other through the host's forward path
// (no masquerade: the firewall sees the container's own address), then
// removes the outside link again.
func wantForwarded(l *life) {
	t := l.t
	outside := nstest.New(t)
	h := l.host.Handle()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "io-out"}, PeerName: "eth0",
		PeerNamespace: netlink.NsFd(outside.Fd())}
	if err := h.LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	defer h.LinkDel(veth)
	l.host.MustRun("ip", "addr", "add", l.outside()+".1/24", "dev", "io-out")
	l.host.MustRun("ip", "link", "set", "io-out", "up")
	outside.MustRun("ip", "addr", "add", l.outside()+".2/24", "dev", "eth0")
	outside.MustRun("ip", "link", "set", "eth0", "up")
	outside.MustRun("ip", "route", "add", l.subnet()+".0/24", "via", l.outside()+".1")
	if err := l.container.Ping(l.outside() + ".2"); err != nil {
		t.Fatal(err)
	}
	if err := outside.Ping(l.containerAddr().String()); err != nil {
		t.Fatal(err)
	}
}

func readSysctl(t *testing.T, ns *nstest.NS, key string) string {
	t.Helper()
	var value []byte
	ns.Do(func() (err error) { value, err = os.ReadFile(filepath.Join("/proc/sys", key)); return err })
	return strings.TrimSpace(string(value))
}

func wantSysctl(l *life, key, want string) {
	l.t.Helper()
	if got := readSysctl(l.t, l.container, key); got != want {
		l.t.Errorf("%s = %s in the container, want %s", key, got, want)
	}
}

// wantSysctlRestored checks a sysctl after DEL: cnikit's tuning puts back
// the value ADD found; the reference's leaves its own value (it restores
// only the interface's attributes).
func wantSysctlRestored(l *life, key, original, set string) {
	l.t.Helper()
	if l.impls.of("tuning") == referenceImpl {
		wantSysctl(l, key, set)
		return
	}
	wantSysctl(l, key, original)
}

func linkMTU(l *life, name string) int {
	l.t.Helper()
	link, err := l.container.Handle().LinkByName(name)
	if err != nil {
		l.t.Fatal(err)
	}
	return link.Attrs().MTU
}

func wantMTU(l *life, name string, want int) {
	l.t.Helper()
	if got := linkMTU(l, name); got != want {
		l.t.Errorf("%s MTU %d, want %d", name, got, want)
	}
}

// wantTuningBackup checks the backup of what tuning changed exists while the
// container runs: under $CNIKIT_STATE_DIR for cnikit, in the configured
// dataDir for the reference.
func wantTuningBackup(l *life, ifName string) {
	l.t.Helper()
	dir := rundir.Plugin("tuning")
	if l.impls.of("tuning") == referenceImpl {
		dir = l.tuningDir()
	}
	if _, err := os.Stat(filepath.Join(dir, l.containerID()+"_"+ifName+".json")); err != nil {
		l.t.Errorf("no tuning backup of the running container: %v", err)
	}
}

// ifbName is the egress IFB both bandwidth implementations name after the
// network and container ID.
func ifbName(network, containerID string) string {
	sum := sha512.Sum512([]byte(network + containerID))
	return "bwp" + hex.EncodeToString(sum[:])[:12]
}

// wantShaped checks the qdiscs of a limited container: a TBF at the ingress
// rate at the root of the host end of its veth, an ingress qdisc there whose
// u32 filter redirects everything to the IFB, and a TBF at the egress rate at
// the root of the IFB. Rates are in bit/s; the kernel keeps bytes/s.
func wantShaped(l *life, ingressRate, egressRate uint64) {
	t := l.t
	var peer int
	l.container.Do(func() error {
		link, err := netlink.LinkByName("eth0")
		if err == nil {
			peer = link.Attrs().ParentIndex
		}
		return err
	})
	h := l.host.Handle()
	veth, err := h.LinkByIndex(peer)
	if err != nil {
		t.Fatalf("host end of eth0 (index %d): %v", peer, err)
	}
	ifb, err := h.LinkByName(ifbName(l.network(), l.containerID()))
	if err != nil || ifb.Type() != "ifb" {
		t.Fatalf("egress IFB %s: %v %v", ifbName(l.network(), l.containerID()), err, ifb)
	}
	rootTBF := func(link netlink.Link) *netlink.Tbf {
		qdiscs, err := h.QdiscList(link)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range qdiscs {
			if tbf, ok := q.(*netlink.Tbf); ok && q.Attrs().Parent == netlink.HANDLE_ROOT {
				return tbf
			}
		}
		t.Fatalf("no root TBF on %s: %v", link.Attrs().Name, qdiscs)
		return nil
	}
	if got := rootTBF(veth).Rate; got != ingressRate/8 {
		t.Errorf("ingress TBF on %s at %d B/s, want %d", veth.Attrs().Name, got, ingressRate/8)
	}
	if got := rootTBF(ifb).Rate; got != egressRate/8 {
		t.Errorf("egress TBF on %s at %d B/s, want %d", ifb.Attrs().Name, got, egressRate/8)
	}
	filters, err := h.FilterList(veth, netlink.HANDLE_INGRESS)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range filters {
		if u32, ok := f.(*netlink.U32); ok {
			for _, a := range u32.Actions {
				if m, ok := a.(*netlink.MirredAction); ok && m.MirredAction == netlink.TCA_EGRESS_REDIR && m.Ifindex == ifb.Attrs().Index {
					return
				}
			}
		}
	}
	t.Errorf("no u32 filter on %s's ingress redirecting to %s: %s", veth.Attrs().Name, ifb.Attrs().Name, fmt.Sprint(filters))
}
