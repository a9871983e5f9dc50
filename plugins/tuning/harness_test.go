package tuning

import (
	"maps"
	"os"
	"path/filepath"
	"testing"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/link"
	"github.com/cnikit/cnikit/internal/nstest"
	"github.com/cnikit/cnikit/internal/plugintest"
)

// env is a throw-away "host" namespace in which the plugin runs in-process,
// and a "container" namespace holding eth0 (the attachment's interface) and
// eth1 (another interface the plugin must leave alone), with a temporary
// data directory and no allowlist.
type env struct {
	t       testing.TB
	host    *plugintest.Host
	cont    *nstest.NS
	dataDir string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	host := plugintest.NewHost(t, "tuning")
	if tt, ok := t.(*testing.T); ok {
		tt.Setenv(AllowlistEnv, filepath.Join(t.TempDir(), "no-allowlist.conf"))
	} else {
		os.Setenv(AllowlistEnv, filepath.Join(t.TempDir(), "no-allowlist.conf"))
	}
	e := &env{t: t, host: host, cont: nstest.New(t), dataDir: t.TempDir()}
	e.cont.MustRun("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
	e.cont.MustRun("ip", "link", "add", "eth1", "type", "veth", "peer", "name", "peer1")
	return e
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
	keys := map[string]any{"dataDir": e.dataDir}
	if _, given := extra["prevResult"]; !given {
		keys["prevResult"] = e.prevResult()
	}
	maps.Copy(keys, extra)
	if prev, ok := keys["prevResult"].(map[string]any); ok {
		version, given := keys["cniVersion"]
		if !given {
			version = "1.1.0"
		}
		prev["cniVersion"] = version
	}
	return plugintest.Conf(e.t, "tuning", "tunenet", keys)
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
	return plugintest.Sysctl(e.t, e.cont, path)
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

// errOrNil keeps a nil *cni.Error from becoming a non-nil error.
func errOrNil(e *cni.Error) error {
	if e == nil {
		return nil
	}
	return e
}
