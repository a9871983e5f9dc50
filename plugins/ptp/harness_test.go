package ptp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
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
// with cnikit's plugins (host-local, static) on CNI_PATH and a temp IPAM
// data dir.
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
	p, ok := skel.Lookup("ptp")
	if !ok {
		e.t.Fatal("ptp is not registered")
	}
	if c.ifname == "" {
		c.ifname = "eth0"
	}
	if c.cid == "" {
		c.cid = "ctr1"
	}
	var out []byte
	var cerr *cni.Error
	e.host.Do(func() error {
		out, cerr = skel.Invoke(context.Background(), p, &skel.Args{
			Env: invoke.Env{Command: c.verb, ContainerID: c.cid, Netns: c.netns, IfName: c.ifname,
				CNIArgs: c.cniArgs, Path: e.path},
			StdinData: c.conf,
		})
		return nil
	})
	return out, cerr
}

// mustAdd runs ADD and returns the parsed result and its bytes.
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

// hostLocal is a host-local ipam section over subnets, in the env's data dir.
func (e *env) hostLocal(subnets ...string) map[string]any {
	var ranges [][]map[string]string
	for _, s := range subnets {
		ranges = append(ranges, []map[string]string{{"subnet": s}})
	}
	return map[string]any{"type": "host-local", "ranges": ranges, "dataDir": e.dataDir}
}

// staticIPAM is a static ipam section with addresses "cidr gw".
func staticIPAM(addrs ...[2]string) map[string]any {
	var list []map[string]string
	for _, a := range addrs {
		list = append(list, map[string]string{"address": a[0], "gateway": a[1]})
	}
	return map[string]any{"type": "static", "addresses": list}
}

// netConf builds a configuration: the common keys, the ipam section, and extra
// keys.
func netConf(t testing.TB, name string, ipam map[string]any, extra map[string]any) []byte {
	t.Helper()
	m := map[string]any{"cniVersion": "1.1.0", "name": name, "type": "ptp"}
	if ipam != nil {
		m["ipam"] = ipam
	}
	for k, v := range extra {
		m[k] = v
	}
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
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

// hostRoutes returns the host's routes through links other than lo, as
// "dst dev".
func (e *env) hostRoutes() []string {
	routes, err := e.host.Handle().RouteList(nil, netlink.FAMILY_ALL)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, r := range routes {
		if r.Dst == nil || r.Dst.IP.IsLinkLocalUnicast() || r.Dst.IP.IsLinkLocalMulticast() || r.Dst.IP.IsMulticast() {
			continue
		}
		l, err := e.host.Handle().LinkByIndex(r.LinkIndex)
		if err != nil || l.Attrs().Name == "lo" {
			continue
		}
		out = append(out, r.Dst.String()+" "+l.Attrs().Name)
	}
	return out
}

// masqueraded returns the masqueraded addresses, as strings.
func (e *env) masqueraded() []string {
	var ips []string
	e.host.Do(func() error {
		c, err := nft.Open()
		if err != nil {
			return err
		}
		defer c.Close()
		elems, err := c.ListMasquerade()
		for _, m := range elems {
			ips = append(ips, m.IP.String())
		}
		return err
	})
	return ips
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

// addrsOf returns the global addresses of a link in ns, with their flags.
func addrsOf(t testing.TB, ns *nstest.NS, name string) []netlink.Addr {
	t.Helper()
	l, err := ns.Handle().LinkByName(name)
	if err != nil {
		t.Fatalf("link %q: %v", name, err)
	}
	addrs, err := ns.Handle().AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	var out []netlink.Addr
	for _, a := range addrs {
		if !a.IP.IsLinkLocalUnicast() {
			out = append(out, a)
		}
	}
	return out
}

// routesOf returns a link's routes in ns as "dst via gw src src scope s",
// the parts that are set.
func routesOf(t testing.TB, ns *nstest.NS, name string) []string {
	t.Helper()
	l, err := ns.Handle().LinkByName(name)
	if err != nil {
		t.Fatalf("link %q: %v", name, err)
	}
	routes, err := ns.Handle().RouteList(l, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range routes {
		if r.Dst != nil && (r.Dst.IP.IsLinkLocalUnicast() || r.Dst.IP.IsMulticast()) {
			continue
		}
		s := "default"
		if r.Dst != nil {
			if ones, _ := r.Dst.Mask.Size(); ones > 0 {
				s = r.Dst.String()
			}
		}
		if r.Gw != nil {
			s += " via " + r.Gw.String()
		}
		if r.Src != nil {
			s += " src " + r.Src.String()
		}
		if r.Scope == netlink.SCOPE_LINK && r.Family == netlink.FAMILY_V4 {
			s += " scope link"
		}
		out = append(out, s)
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

func mustf(t testing.TB, cond bool, format string, a ...any) {
	t.Helper()
	if !cond {
		t.Errorf(format, a...)
	}
}

func ipOf(t testing.TB, cidr string) net.IP {
	t.Helper()
	ip, _, err := net.ParseCIDR(cidr)
	if err != nil {
		t.Fatal(err)
	}
	return ip
}

// runIP runs the ip command in the calling thread's namespace (inside
// netns.Do, the container's).
func runIP(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %v: %v: %s", args, err, out)
	}
	return nil
}

func requireReference(t testing.TB) {
	t.Helper()
	plugintest.RequireReference(t)
	if _, err := os.Stat(filepath.Join(plugintest.ReferenceDir, "ptp")); err != nil {
		t.Skip("reference ptp plugin not installed")
	}
}

// runReference runs the reference ptp plugin (with the reference IPAM
// plugins on CNI_PATH) inside the host namespace and returns its output.
func (e *env) runReference(t testing.TB, verb string, conf []byte, nsPath string) []byte {
	t.Helper()
	conf = bytes.Replace(conf, []byte(`"1.1.0"`), []byte(`"1.0.0"`), 1)
	return e.exec(t, filepath.Join(plugintest.ReferenceDir, "ptp"), plugintest.ReferenceDir, verb, conf, nsPath)
}

// exec runs a plugin binary inside the host namespace, as a runtime would,
// and returns its output.
func (e *env) exec(t testing.TB, binary, cniPath, verb string, conf []byte, nsPath string) []byte {
	t.Helper()
	var out []byte
	e.host.Do(func() error {
		cmd := exec.Command(binary)
		cmd.Stdin = bytes.NewReader(conf)
		cmd.Env = append(os.Environ(), "CNI_COMMAND="+verb, "CNI_CONTAINERID=ctr1", "CNI_NETNS="+nsPath,
			"CNI_IFNAME=eth0", "CNI_PATH="+cniPath)
		var err error
		if out, err = cmd.Output(); err != nil {
			return fmt.Errorf("%s %s: %v: %s", binary, verb, err, out)
		}
		return nil
	})
	return out
}
