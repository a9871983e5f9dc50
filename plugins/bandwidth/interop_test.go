package bandwidth

import (
	"path/filepath"
	"testing"

	"github.com/cnikit/cnikit/internal/plugintest"
)

// TestReferenceInterop: the reference plugin (v1.1.1 in /usr/lib/cni) and
// cnikit's binary make the same TBFs and the same IFB name, so each one's
// CHECK passes on what the other's ADD made, and each one's DEL removes it.
func TestReferenceInterop(t *testing.T) {
	plugintest.RequireReference(t)
	reference := filepath.Join(plugintest.ReferenceDir, "bandwidth")
	cnikit := filepath.Join(plugintest.BinDir(t), "bandwidth")
	cases := []struct{ name, adder, other string }{
		{"reference ADD, cnikit CHECK and DEL", reference, cnikit},
		{"cnikit ADD, reference CHECK and DEL", cnikit, reference},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			conf := e.conf("bwnet", map[string]any{"cniVersion": "1.0.0",
				"ingressRate": 16_000_000, "ingressBurst": 1_000_000, "egressRate": 8_000_000, "egressBurst": 800_000})
			if _, err := e.host.Exec(tc.adder, plugintest.Call{Verb: "ADD", Conf: conf, Netns: e.cont.Path()}); err != nil {
				t.Fatalf("ADD: %v", err)
			}
			ifb := ifbName("bwnet", "ctr1")
			if !e.host.HasLink(ifb) {
				t.Fatalf("no %s after ADD", ifb)
			}
			if _, err := e.host.Exec(tc.other, plugintest.Call{Verb: "CHECK", Conf: conf, Netns: e.cont.Path()}); err != nil {
				t.Errorf("CHECK: %v", err)
			}
			if _, err := e.host.Exec(tc.other, plugintest.Call{Verb: "DEL", Conf: conf, Netns: e.cont.Path()}); err != nil {
				t.Fatalf("DEL: %v", err)
			}
			if e.host.HasLink(ifb) {
				t.Errorf("%s left after DEL", ifb)
			}
		})
	}
}
