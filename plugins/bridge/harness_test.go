package bridge

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/link"
	"github.com/cnikit/cnikit/internal/nft"
	"github.com/cnikit/cnikit/internal/nstest"
	"github.com/cnikit/cnikit/internal/plugintest"
	"github.com/cnikit/cnikit/invoke"
	"github.com/cnikit/cnikit/skel"
)

// env is a throw-away "host" namespace in which the plugin runs in-process,
// with cnikit's plugins (host-local) on CNI_PATH and a temp IPAM data dir.
type env struct {
	t       testing.TB
	host    *nstest.NS
	path    string
	dataDir string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	nstest.RequireRoot(t)
	return &env{t: t, host: nstest.New(t), path: plugintest.BinDir(t), dataDir: t.TempDir()}
}

// call is one plugin invocation.
type call struct {
	verb    string
	conf    []byte
	netns   string
	ifname  string
	cid     string
	cniArgs string
}

// run invokes the plugin inside the host namespace, as a runtime would.
func (e *env) run(c call) ([]byte, *cni.Error) {
	p, ok := skel.Lookup("bridge")
	if !ok {
		e.t.Fatal("bridge is not registered")
	}
	if c.ifname == "" {
		c.ifname = "eth0"
	}
	if c.cid == "" {
		c.cid = "ctr1"
	}
	var out []byte
	var cerr *cni.Error
	err := e.host.NS.Do(func() error {
		out, cerr = skel.Invoke(context.Background(), p, &skel.Args{
			Env: invoke.Env{Command: c.verb, ContainerID: c.cid, Netns: c.netns, IfName: c.ifname,
				CNIArgs: c.cniArgs, Path: e.path},
			StdinData: c.conf,
		})
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return out, cerr
}

// mustAdd runs ADD and returns the parsed result.
func (e *env) mustAdd(c call) (*cni.Result, []byte) {
	e.t.Helper()
	c.verb = "ADD"
	out, cerr := e.run(c)
	if cerr != nil {
		e.t.Fatalf("ADD: %v", cerr)
	}
	res, err := cni.ParseResult(out, "1.1.0")
	if err != nil {
		e.t.Fatalf("parsing ADD result %s: %v", out, err)
	}
	return res, out
}

func (e *env) mustRun(c call) {
	e.t.Helper()
	if _, cerr := e.run(c); cerr != nil {
		e.t.Fatalf("%s: %v", c.verb, cerr)
	}
}

// conf builds a configuration: the common keys, host-local IPAM over
// subnets (none: no IPAM), and extra keys.
func (e *env) conf(name string, subnets []string, extra map[string]any) []byte {
	m := map[string]any{"cniVersion": "1.1.0", "name": name, "type": "bridge"}
	if len(subnets) > 0 {
		var ranges [][]map[string]string
		for _, s := range subnets {
			ranges = append(ranges, []map[string]string{{"subnet": s}})
		}
		m["ipam"] = map[string]any{"type": "host-local", "ranges": ranges, "dataDir": e.dataDir}
	}
	for k, v := range extra {
		m[k] = v
	}
	data, err := json.Marshal(m)
	if err != nil {
		e.t.Fatal(err)
	}
	return data
}

// withPrevResult adds the ADD result to a configuration, as a runtime does
// for CHECK and DEL.
func withPrevResult(t testing.TB, conf, result []byte) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(conf, &m); err != nil {
		t.Fatal(err)
	}
	m["prevResult"] = json.RawMessage(result)
	data, _ := json.Marshal(m)
	return data
}

// hostLink returns a link of the host namespace.
func (e *env) hostLink(name string) netlink.Link {
	e.t.Helper()
	l, err := e.host.Handle().LinkByName(name)
	if err != nil {
		e.t.Fatalf("host link %q: %v", name, err)
	}
	return l
}

// hostLinks returns the names of the host namespace's links.
func (e *env) hostLinks() []string {
	links, err := e.host.Handle().LinkList()
	if err != nil {
		e.t.Fatal(err)
	}
	var names []string
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	return names
}

// sysctl reads a setting inside ns.
func sysctl(t testing.TB, ns *nstest.NS, name string) string {
	t.Helper()
	var v string
	ns.Do(func() error {
		var err error
		v, err = link.Sysctl(name)
		return err
	})
	return v
}

// nftElements lists the host's masquerade and MAC spoof elements.
func (e *env) nftElements() ([]nft.MasqElement, []nft.SpoofElement) {
	var masq []nft.MasqElement
	var spoof []nft.SpoofElement
	e.host.Do(func() error {
		c, err := nft.Open()
		if err != nil {
			return err
		}
		defer c.Close()
		if masq, err = c.ListMasquerade(); err != nil {
			return err
		}
		spoof, err = c.ListMacSpoof()
		return err
	})
	return masq, spoof
}

// masqueradedIPs returns the masqueraded addresses, as strings.
func (e *env) masqueradedIPs() []string {
	masq, _ := e.nftElements()
	var ips []string
	for _, m := range masq {
		ips = append(ips, m.IP.String())
	}
	return ips
}

func containerAddrs(t testing.TB, ns *nstest.NS, ifname string) []string {
	t.Helper()
	l, err := ns.Handle().LinkByName(ifname)
	if err != nil {
		t.Fatalf("container link %q: %v", ifname, err)
	}
	addrs, err := ns.Handle().AddrList(l, netlink.FAMILY_ALL)
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

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func containsSub(list []string, s string) bool {
	for _, x := range list {
		if strings.Contains(x, s) {
			return true
		}
	}
	return false
}

func cidrIP(t testing.TB, s string) net.IP {
	t.Helper()
	ip, _, err := net.ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	return ip
}

func mustf(t testing.TB, cond bool, format string, a ...any) {
	t.Helper()
	if !cond {
		t.Errorf(format, a...)
	}
}

var _ = fmt.Sprintf

// requireTool fails the test, saying so, when a program it uses to observe
// is not installed (scripts/setup.sh installs them; a QEMU guest of
// run-in-guest.sh has busybox's ip and ping, and nft only when copied in
// with -b /usr/sbin/nft).
func requireTool(t testing.TB, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("this test needs %s, which is not installed here: %v", name, err)
	}
}

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }
