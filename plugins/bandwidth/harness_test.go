package bandwidth

import (
	"maps"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/cnikit/cnikit/internal/nstest"
	"github.com/cnikit/cnikit/internal/plugintest"
)

// env is a throw-away "host" namespace in which the plugin runs in-process
// and a "container" namespace, joined by a veth as the bridge or ptp plugin
// would leave them: vethhost (10.99.0.1/24) in the host, eth0 (10.99.0.2/24)
// in the container.
type env struct {
	t    testing.TB
	host *plugintest.Host
	cont *nstest.NS
}

const (
	hostAddr = "10.99.0.1"
	contAddr = "10.99.0.2"
)

func newEnv(t testing.TB) *env {
	t.Helper()
	host := plugintest.NewHost(t, "bandwidth")
	host.Defaults.Path = "/nonexistent"
	e := &env{t: t, host: host, cont: nstest.New(t)}
	e.host.Do(func() error {
		return netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "vethhost", TxQLen: -1},
			PeerName: "eth0", PeerNamespace: netlink.NsFd(e.cont.Fd())})
	})
	e.host.MustRun("ip", "addr", "add", hostAddr+"/24", "dev", "vethhost")
	e.host.MustRun("ip", "link", "set", "vethhost", "up")
	e.cont.MustRun("ip", "addr", "add", contAddr+"/24", "dev", "eth0")
	e.cont.MustRun("ip", "link", "set", "eth0", "up")
	return e
}

// prevResult is what the interface plugin returned.
func (e *env) prevResult(version string) map[string]any {
	return map[string]any{
		"cniVersion": version,
		"interfaces": []map[string]any{
			{"name": "vethhost", "mac": e.host.Link("vethhost").Attrs().HardwareAddr.String()},
			{"name": "eth0", "mac": "02:00:00:00:00:02", "sandbox": e.cont.Path()},
		},
		"ips": []map[string]any{{"address": contAddr + "/24", "interface": 1}},
	}
}

// conf builds a configuration for network name with extra keys; a nil value
// removes a key.
func (e *env) conf(name string, extra map[string]any) []byte {
	e.t.Helper()
	keys := map[string]any{}
	if _, given := extra["prevResult"]; !given {
		version := "1.1.0"
		if v, given := extra["cniVersion"]; given {
			version = v.(string)
		}
		keys["prevResult"] = e.prevResult(version)
	}
	maps.Copy(keys, extra)
	return plugintest.Conf(e.t, "bandwidth", name, keys)
}

// hostQdiscs lists the qdisc kinds of a host link.
func (e *env) hostQdiscs(name string) []string {
	e.t.Helper()
	qs, err := e.host.Handle().QdiscList(e.host.Link(name))
	if err != nil {
		e.t.Fatal(err)
	}
	var kinds []string
	for _, q := range qs {
		kinds = append(kinds, q.Type())
	}
	return kinds
}
