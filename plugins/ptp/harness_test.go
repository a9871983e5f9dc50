package ptp

import (
	"bytes"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/cnikit/cnikit/internal/nft"
	"github.com/cnikit/cnikit/internal/nstest"
	"github.com/cnikit/cnikit/internal/plugintest"
)

// env is a throw-away "host" namespace in which the plugin runs in-process,
// with cnikit's plugins (host-local, static) on CNI_PATH and a temp IPAM
// data dir.
type env struct {
	t       testing.TB
	host    *plugintest.Host
	dataDir string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	host := plugintest.NewHost(t, "ptp")
	host.Defaults.Path = plugintest.BinDir(t)
	return &env{t: t, host: host, dataDir: t.TempDir()}
}

// hostLocal is a host-local ipam section over subnets, in the env's data dir.
func (e *env) hostLocal(subnets ...string) map[string]any {
	return plugintest.HostLocal(e.dataDir, subnets...)
}

// staticIPAM is a static ipam section with addresses "cidr gw".
func staticIPAM(addrs ...[2]string) map[string]any {
	var list []map[string]string
	for _, a := range addrs {
		list = append(list, map[string]string{"address": a[0], "gateway": a[1]})
	}
	return map[string]any{"type": "static", "addresses": list}
}

// netConf builds a configuration: the common keys, the ipam section (nil:
// none), and extra keys.
func netConf(t testing.TB, name string, ipam map[string]any, extra map[string]any) []byte {
	t.Helper()
	keys := map[string]any{"ipam": ipam}
	maps.Copy(keys, extra)
	return plugintest.Conf(t, "ptp", name, keys)
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
	return e.host.MustExec(filepath.Join(plugintest.ReferenceDir, "ptp"), plugintest.Call{Verb: verb, Conf: conf, Netns: nsPath})
}
