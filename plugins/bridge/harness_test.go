package bridge

import (
	"maps"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/cnikit/cnikit/internal/nft"
	"github.com/cnikit/cnikit/internal/nstest"
	"github.com/cnikit/cnikit/internal/plugintest"
)

// env is a throw-away "host" namespace in which the plugin runs in-process,
// with cnikit's plugins (host-local) on CNI_PATH and a temp IPAM data dir.
type env struct {
	t       testing.TB
	host    *plugintest.Host
	dataDir string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	host := plugintest.NewHost(t, "bridge")
	host.Defaults.Path = plugintest.BinDir(t)
	return &env{t: t, host: host, dataDir: t.TempDir()}
}

// conf builds a configuration: the common keys, host-local IPAM over
// subnets (none: no IPAM), and extra keys.
func (e *env) conf(name string, subnets []string, extra map[string]any) []byte {
	keys := map[string]any{}
	if len(subnets) > 0 {
		keys["ipam"] = plugintest.HostLocal(e.dataDir, subnets...)
	}
	maps.Copy(keys, extra)
	return plugintest.Conf(e.t, "bridge", name, keys)
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

// containerAddrs returns the global addresses of a container link, as
// "address/prefix".
func containerAddrs(t testing.TB, ns *nstest.NS, ifname string) []string {
	t.Helper()
	var out []string
	for _, a := range plugintest.GlobalAddrs(t, ns, ifname) {
		out = append(out, a.IPNet.String())
	}
	return out
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
