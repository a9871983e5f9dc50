package tuning

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/link"
	"github.com/cnikit/cnikit/internal/nstest"
	"github.com/cnikit/cnikit/invoke"
	"github.com/cnikit/cnikit/skel"
)

// env is a throw-away "host" namespace in which the plugin runs in-process,
// and a "container" namespace holding eth0 (the attachment's interface) and
// eth1 (another interface the plugin must leave alone), with a temporary
// data directory and no allowlist.
type env struct {
	t       testing.TB
	host    *nstest.NS
	cont    *nstest.NS
	dataDir string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	nstest.RequireRoot(t)
	if tt, ok := t.(*testing.T); ok {
		tt.Setenv(AllowlistEnv, filepath.Join(t.TempDir(), "no-allowlist.conf"))
	} else {
		os.Setenv(AllowlistEnv, filepath.Join(t.TempDir(), "no-allowlist.conf"))
	}
	e := &env{t: t, host: nstest.New(t), cont: nstest.New(t), dataDir: t.TempDir()}
	e.cont.MustRun("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
	e.cont.MustRun("ip", "link", "add", "eth1", "type", "veth", "peer", "name", "peer1")
	return e
}

// call is one plugin invocation; empty fields take the defaults of run.
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
	p, ok := skel.Lookup("tuning")
	if !ok {
		e.t.Fatal("tuning is not registered")
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
			Env:       invoke.Env{Command: c.verb, ContainerID: c.cid, Netns: c.netns, IfName: c.ifname, CNIArgs: c.cniArgs},
			StdinData: c.conf,
		})
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return out, cerr
}

// mustRun runs a verb in the container namespace and fails on error.
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

// prevResult is what an interface plugin would have returned for eth0.
func (e *env) prevResult() map[string]any {
	return map[string]any{
		"cniVersion": "1.1.0",
		"interfaces": []map[string]any{
			{"name": "veth1234", "mac": "aa:aa:aa:aa:aa:aa"},
			{"name": "eth0", "mac": e.attrs("eth0").MAC.String(), "sandbox": e.cont.Path()},
		},
		"ips": []map[string]any{{"address": "10.1.0.2/24", "interface": 1}},
	}
}

// conf builds a configuration with a prevResult and extra keys; a nil value
// in extra removes the key.
func (e *env) conf(extra map[string]any) []byte {
	e.t.Helper()
	m := map[string]any{"cniVersion": "1.1.0", "name": "tunenet", "type": "tuning", "dataDir": e.dataDir}
	if _, given := extra["prevResult"]; !given {
		m["prevResult"] = e.prevResult()
	}
	for k, v := range extra {
		if v == nil {
			delete(m, k)
			continue
		}
		m[k] = v
	}
	if prev, ok := m["prevResult"].(map[string]any); ok {
		prev["cniVersion"] = m["cniVersion"]
	}
	data, err := json.Marshal(m)
	if err != nil {
		e.t.Fatal(err)
	}
	return data
}

// attrs returns an interface's attributes in the container.
func (e *env) attrs(name string) link.Attributes {
	e.t.Helper()
	l, err := e.cont.Handle().LinkByName(name)
	if err != nil {
		e.t.Fatalf("container link %q: %v", name, err)
	}
	return link.AttributesOf(l)
}

// sysctl reads a setting (slash form, below /proc/sys) in the container.
func (e *env) sysctl(path string) string {
	e.t.Helper()
	var v string
	e.cont.Do(func() error {
		data, err := os.ReadFile(filepath.Join("/proc/sys", path))
		v = strings.TrimSpace(string(data))
		return err
	})
	return v
}

// setSysctl writes a setting in the container.
func (e *env) setSysctl(path, value string) {
	e.t.Helper()
	e.cont.Do(func() error { return os.WriteFile(filepath.Join("/proc/sys", path), []byte(value), 0o644) })
}

// backupFiles lists the data directory.
func (e *env) backupFiles() []string {
	e.t.Helper()
	entries, err := os.ReadDir(e.dataDir)
	if err != nil && !os.IsNotExist(err) {
		e.t.Fatal(err)
	}
	var names []string
	for _, d := range entries {
		names = append(names, d.Name())
	}
	return names
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

// skelInvoke runs a verb that touches no namespace (GC, STATUS) in-process.
func skelInvoke(t testing.TB, verb string, conf []byte) *cni.Error {
	t.Helper()
	p, _ := skel.Lookup("tuning")
	_, cerr := skel.Invoke(context.Background(), p, &skel.Args{Env: invoke.Env{Command: verb, Path: "/nonexistent"}, StdinData: conf})
	return cerr
}

// errOrNil keeps a nil *cni.Error from becoming a non-nil error.
func errOrNil(e *cni.Error) error {
	if e == nil {
		return nil
	}
	return e
}
