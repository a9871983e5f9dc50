package firewall

import (
	"encoding/json"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/iptables"
	"github.com/cnikit/cnikit/internal/link"
	"github.com/cnikit/cnikit/internal/nft"
	"github.com/cnikit/cnikit/internal/nstest"
	"github.com/cnikit/cnikit/internal/plugintest"

	// The tests attach containers with the bridge plugin, which delegates
	// to host-local; both run in-process (CNI_PATH links to the test binary).
	_ "github.com/cnikit/cnikit/plugins/bridge"
	_ "github.com/cnikit/cnikit/plugins/host-local"
	_ "github.com/cnikit/cnikit/plugins/loopback"
)

// Addresses of the "outside" namespace, routed through the host.
const (
	outside4 = "192.168.240.2"
	outside6 = "fd00:240::2"
)

// env is a throw-away "host" namespace where the plugins run in-process, an
// "outside" namespace routed through it, and temp dirs for IPAM and the
// plugin's state. PATH starts with wrappers that count iptables-restore
// processes, and D-Bus points nowhere unless a test starts firewalld.
type env struct {
	t         testing.TB
	host      *plugintest.Host
	outsideNS *nstest.NS
	dataDir   string
	stateDir  string
	spawnLog  string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	host := plugintest.NewHost(t, "firewall")
	host.Defaults.Path = plugintest.InProcessPath(t, "host-local")
	e := &env{t: t, host: host, dataDir: t.TempDir(), stateDir: t.TempDir()}
	e.installRestoreWrappers()
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path="+filepath.Join(t.TempDir(), "no-bus.sock"))
	return e
}

// outside returns the outside namespace, creating and connecting it on
// first use (it costs about a second, see connectOutside).
func (e *env) outside() *nstest.NS {
	if e.outsideNS == nil {
		e.outsideNS = nstest.New(e.t)
		e.connectOutside()
	}
	return e.outsideNS
}

// installRestoreWrappers puts iptables-restore and ip6tables-restore
// wrappers first in PATH; each logs one line per process it stands for.
func (e *env) installRestoreWrappers() {
	dir := e.t.TempDir()
	e.spawnLog = filepath.Join(dir, "spawned.log")
	for _, f := range []iptables.Family{iptables.IPv4, iptables.IPv6} {
		real := "/usr/sbin/" + f.RestoreCommand()
		script := "#!/bin/sh\necho " + f.RestoreCommand() + " >> " + e.spawnLog + "\nexec " + real + " \"$@\"\n"
		if err := os.WriteFile(filepath.Join(dir, f.RestoreCommand()), []byte(script), 0o755); err != nil {
			e.t.Fatal(err)
		}
	}
	e.t.Setenv("PATH", dir+":"+os.Getenv("PATH"))
}

// spawned returns how many restore processes of each family ran since the
// last call.
func (e *env) spawned() (v4, v6 int) {
	data, _ := os.ReadFile(e.spawnLog)
	os.Remove(e.spawnLog)
	for _, l := range strings.Split(string(data), "\n") {
		switch l {
		case "iptables-restore":
			v4++
		case "ip6tables-restore":
			v6++
		}
	}
	return v4, v6
}

// connectOutside links the outside namespace to the host with a veth pair,
// routes both ways, and turns on forwarding in the host.
func (e *env) connectOutside() {
	// No DAD: tentative link-local addresses delay the first neighbour
	// discovery by a second, longer than a probe waits.
	for _, ns := range []*nstest.NS{e.host.NS, e.outsideNS} {
		ns.Do(func() error {
			for _, conf := range []string{"all", "default"} {
				if err := link.SetSysctl("net/ipv6/conf/"+conf+"/accept_dad", "0"); err != nil {
					return err
				}
			}
			return nil
		})
	}
	h := e.host.Handle()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "to-out"}, PeerName: "eth0",
		PeerNamespace: netlink.NsFd(e.outsideNS.Fd())}
	if err := h.LinkAdd(veth); err != nil {
		e.t.Fatal(err)
	}
	for _, side := range []struct {
		h        *netlink.Handle
		name     string
		v4, v6   string
		gw4, gw6 string
	}{
		{h, "to-out", "192.168.240.1/24", "fd00:240::1/64", "", ""},
		{e.outsideNS.Handle(), "eth0", outside4 + "/24", outside6 + "/64", "192.168.240.1", "fd00:240::1"},
	} {
		l, err := side.h.LinkByName(side.name)
		if err != nil {
			e.t.Fatal(err)
		}
		for _, a := range []string{side.v4, side.v6} {
			addr, _ := netlink.ParseAddr(a)
			addr.Flags = unix.IFA_F_NODAD
			if err := side.h.AddrAdd(l, addr); err != nil {
				e.t.Fatal(err)
			}
		}
		if err := side.h.LinkSetUp(l); err != nil {
			e.t.Fatal(err)
		}
		for _, gw := range []string{side.gw4, side.gw6} {
			if gw == "" {
				continue
			}
			if err := side.h.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: net.ParseIP(gw)}); err != nil {
				e.t.Fatal(err)
			}
		}
	}
	// The new link's IPv6 becomes usable only once the kernel has seen its
	// carrier (up to a second later): wait for an answer (ping -w returns
	// on the first one).
	for _, addr := range []string{outside4, outside6} {
		if out, err := e.host.Run("ping", "-c", "1", "-w", "10", addr); err != nil {
			e.t.Fatalf("the outside namespace does not answer at %s: %v\n%s", addr, err, out)
		}
	}
	e.host.Do(func() error {
		if err := link.SetSysctl("net/ipv4/ip_forward", "1"); err != nil {
			return err
		}
		return link.SetSysctl("net/ipv6/conf/all/forwarding", "1")
	})
}

// network is a bridge network with the firewall chained after it.
type network struct {
	name    string
	bridge  string
	subnets []string
	// fw holds the firewall's keys (backend, ingressPolicy, ...).
	fw map[string]any
}

// container is a namespace attached to a network by the bridge plugin.
type container struct {
	ns     *nstest.NS
	cid    string
	result []byte // the bridge's result: the firewall's prevResult
	ips    []string
}

// invoke runs one verb of plugin in the host namespace, as a runtime would.
func (e *env) invoke(plugin, verb, cid, netnsPath string, conf []byte) ([]byte, *cni.Error) {
	return e.host.Invoke(plugintest.Call{Plugin: plugin, Verb: verb, ContainerID: cid, Netns: netnsPath, Conf: conf})
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func (e *env) bridgeConf(n network) []byte {
	return plugintest.Conf(e.t, "bridge", n.name, map[string]any{"bridge": n.bridge, "isDefaultGateway": true,
		"ipam": plugintest.HostLocal(e.dataDir, n.subnets...)})
}

// attach creates a container namespace and attaches it with the bridge
// plugin (the firewall is not run).
func (e *env) attach(n network, cid string) *container {
	e.t.Helper()
	c := &container{ns: nstest.New(e.t), cid: cid}
	out, cerr := e.invoke("bridge", "ADD", cid, c.ns.Path(), e.bridgeConf(n))
	if cerr != nil {
		e.t.Fatalf("bridge ADD of %s: %v", cid, cerr)
	}
	c.result = out
	res, err := cni.ParseResult(out, "1.1.0")
	if err != nil {
		e.t.Fatal(err)
	}
	for _, ip := range res.IPs {
		c.ips = append(c.ips, ip.Address.IP.String())
	}
	return c
}

// fwConf is the firewall's configuration for n, with prevResult when given.
func (e *env) fwConf(n network, prevResult []byte) []byte {
	keys := map[string]any{"stateDir": e.stateDir}
	maps.Copy(keys, n.fw)
	if prevResult != nil {
		keys["prevResult"] = json.RawMessage(prevResult)
	}
	return plugintest.Conf(e.t, "firewall", n.name, keys)
}

// fw runs a firewall verb for container c of network n; withPrev sends the
// bridge's result as prevResult.
func (e *env) fw(verb string, n network, c *container, withPrev bool) *cni.Error {
	var prev []byte
	if withPrev {
		prev = c.result
	}
	_, cerr := e.invoke("firewall", verb, c.cid, c.ns.Path(), e.fwConf(n, prev))
	return cerr
}

func (e *env) mustFw(verb string, n network, c *container) {
	e.t.Helper()
	if cerr := e.fw(verb, n, c, true); cerr != nil {
		e.t.Fatalf("firewall %s of %s: %v", verb, c.cid, cerr)
	}
}

// probe reports whether from reaches addr. Expecting an answer, it allows
// a retry (see reaches); expecting none, it sends one ping, since a dropped
// ping costs the whole timeout.
func probe(from *nstest.NS, addr string, expect bool) bool {
	if expect {
		return reaches(from, addr)
	}
	_, err := from.Run("ping", "-c", "1", "-W", "1", addr)
	return err == nil
}

// reaches reports whether from gets an answer to one ping to addr.
func reaches(from *nstest.NS, addr string) bool {
	_, err := from.Run("ping", "-c", "1", "-W", "1", addr)
	if err == nil {
		return true
	}
	// One retry: the first packet may have waited for neighbour discovery.
	_, err = from.Run("ping", "-c", "1", "-W", "1", addr)
	return err == nil
}

// nftElements lists the host's firewall map elements.
func (e *env) nftElements() []nft.FirewallElement {
	var elems []nft.FirewallElement
	e.host.Do(func() error {
		c, err := nft.Open()
		if err != nil {
			return err
		}
		defer c.Close()
		elems, err = c.ListFirewall()
		return err
	})
	return elems
}

// iptablesRules returns the host's CNI-FORWARD rules of a family, as specs.
func (e *env) iptablesRules(f iptables.Family, chain string) []string {
	var specs []string
	e.host.Do(func() error {
		t, err := iptables.Read(f, "filter", chain)
		if err != nil {
			return err
		}
		if c := t.Chain(chain); c != nil {
			for _, r := range c.Rules {
				specs = append(specs, r.Spec())
			}
		}
		return nil
	})
	return specs
}

func containsSub(list []string, sub string) bool {
	for _, s := range list {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

func splitFields(s string) []string { return strings.Fields(s) }

// splitLines returns the lines of s that contain sub.
func splitLines(s, sub string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return out
}

// attachmentKey is the identity of container c on network n.
func attachmentKey(n network, c *container) nft.Attachment {
	return nft.Attachment{Network: n.name, ContainerID: c.cid, IfName: "eth0"}
}

// resultAs re-encodes a result in another version.
func resultAs(t testing.TB, result []byte, version string) []byte {
	t.Helper()
	r, err := cni.ParseResult(result, "1.1.0")
	if err != nil {
		t.Fatal(err)
	}
	out, err := r.Marshal(version)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
