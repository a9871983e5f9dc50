package bandwidth

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/nstest"
	"github.com/cnikit/cnikit/invoke"
	"github.com/cnikit/cnikit/skel"
)

// env is a throw-away "host" namespace in which the plugin runs in-process
// and a "container" namespace, joined by a veth as the bridge or ptp plugin
// would leave them: vethhost (10.99.0.1/24) in the host, eth0 (10.99.0.2/24)
// in the container.
type env struct {
	t    testing.TB
	host *nstest.NS
	cont *nstest.NS
}

const (
	hostAddr = "10.99.0.1"
	contAddr = "10.99.0.2"
)

func newEnv(t testing.TB) *env {
	t.Helper()
	nstest.RequireRoot(t)
	e := &env{t: t, host: nstest.New(t), cont: nstest.New(t)}
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

// call is one plugin invocation; empty fields take run's defaults.
type call struct {
	verb   string
	conf   []byte
	netns  string
	ifname string
	cid    string
}

// run invokes the plugin inside the host namespace, as a runtime would.
func (e *env) run(c call) ([]byte, *cni.Error) {
	p, ok := skel.Lookup("bandwidth")
	if !ok {
		e.t.Fatal("bandwidth is not registered")
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
			Env:       invoke.Env{Command: c.verb, ContainerID: c.cid, Netns: c.netns, IfName: c.ifname, Path: "/nonexistent"},
			StdinData: c.conf,
		})
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return out, cerr
}

// mustRun runs a verb on the container's eth0 and fails on error.
func (e *env) mustRun(c call) []byte {
	e.t.Helper()
	if c.netns == "" {
		c.netns = e.cont.Path()
	}
	out, cerr := e.run(c)
	if cerr != nil {
		e.t.Fatalf("%s: %v", c.verb, cerr)
	}
	return out
}

// prevResult is what the interface plugin returned.
func (e *env) prevResult(version string) map[string]any {
	return map[string]any{
		"cniVersion": version,
		"interfaces": []map[string]any{
			{"name": "vethhost", "mac": e.hostLink("vethhost").Attrs().HardwareAddr.String()},
			{"name": "eth0", "mac": "02:00:00:00:00:02", "sandbox": e.cont.Path()},
		},
		"ips": []map[string]any{{"address": contAddr + "/24", "interface": 1}},
	}
}

// conf builds a configuration for network name with extra keys; a nil value
// removes a key.
func (e *env) conf(name string, extra map[string]any) []byte {
	e.t.Helper()
	m := map[string]any{"cniVersion": "1.1.0", "name": name, "type": "bandwidth"}
	if _, given := extra["cniVersion"]; given {
		m["cniVersion"] = extra["cniVersion"]
	}
	if _, given := extra["prevResult"]; !given {
		m["prevResult"] = e.prevResult(m["cniVersion"].(string))
	}
	for k, v := range extra {
		if v == nil {
			delete(m, k)
			continue
		}
		m[k] = v
	}
	data, err := json.Marshal(m)
	if err != nil {
		e.t.Fatal(err)
	}
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

// hasHostLink reports whether the host namespace has a link called name.
func (e *env) hasHostLink(name string) bool {
	_, err := e.host.Handle().LinkByName(name)
	return err == nil
}

// hostQdiscs lists the qdisc kinds of a host link.
func (e *env) hostQdiscs(name string) []string {
	e.t.Helper()
	qs, err := e.host.Handle().QdiscList(e.hostLink(name))
	if err != nil {
		e.t.Fatal(err)
	}
	var kinds []string
	for _, q := range qs {
		kinds = append(kinds, q.Type())
	}
	return kinds
}

// withPrevResult replaces a configuration's prevResult with an ADD result.
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

// execPlugin runs a plugin binary from the host namespace on eth0.
func (e *env) execPlugin(binary, verb string, conf []byte) error {
	env := invoke.Env{Command: verb, ContainerID: "ctr1", Netns: e.cont.Path(), IfName: "eth0", Path: filepath.Dir(binary)}
	return e.host.NS.Do(func() error {
		_, err := invoke.Exec(context.Background(), binary, conf, env.Environ(os.Environ()), os.Stderr)
		return err
	})
}
