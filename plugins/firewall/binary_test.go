package firewall

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/cnikit/cnikit/internal/plugintest"
)

// TestBinary runs the firewall as the cnikit binary does, by name from
// CNI_PATH, in a 0.4.0 chain (what podman writes): VERSION, ADD, DEL.
func TestBinary(t *testing.T) {
	e := newEnv(t)
	bin := filepath.Join(plugintest.BinDir(t), "firewall")
	n := network{name: "bin", bridge: "br-bin", subnets: []string{"10.67.1.0/24"}, fw: map[string]any{"backend": backendNftables}}
	c := e.attach(n, "c1")
	run := func(verb string, stdin []byte) string {
		t.Helper()
		return string(e.host.MustExec(bin, plugintest.Call{Verb: verb, ContainerID: c.cid, Netns: c.ns.Path(), Conf: stdin}))
	}
	if out := run("VERSION", []byte(`{"cniVersion":"0.4.0"}`)); !strings.Contains(out, `"0.4.0"`) || !strings.Contains(out, `"1.1.0"`) {
		t.Errorf("VERSION: %s", out)
	}
	conf := strings.Replace(string(e.fwConf(n, nil)), `"cniVersion":"1.1.0"`, `"cniVersion":"0.4.0"`, 1)
	withPrev := strings.TrimSuffix(conf, "}") + `,"prevResult":` + string(resultAs(t, c.result, "0.4.0")) + "}"
	if out := run("ADD", []byte(withPrev)); !strings.Contains(out, `"cniVersion": "0.4.0"`) && !strings.Contains(out, `"cniVersion":"0.4.0"`) {
		t.Errorf("ADD printed %s", out)
	}
	if !e.entries(backendNftables, c) {
		t.Error("no entries after the binary's ADD")
	}
	run("CHECK", []byte(withPrev))
	run("DEL", []byte(conf))
	if e.entries(backendNftables, c) {
		t.Error("entries left after the binary's DEL")
	}
}
