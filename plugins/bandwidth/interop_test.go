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
			if err := e.execPlugin(tc.adder, "ADD", conf); err != nil {
				t.Fatalf("ADD: %v", err)
			}
			ifb := ifbName("bwnet", "ctr1")
			if !e.hasHostLink(ifb) {
				t.Fatalf("no %s after ADD", ifb)
			}
			if err := e.execPlugin(tc.other, "CHECK", conf); err != nil {
				t.Errorf("CHECK: %v", err)
			}
			if err := e.execPlugin(tc.other, "DEL", conf); err != nil {
				t.Fatalf("DEL: %v", err)
			}
			if e.hasHostLink(ifb) {
				t.Errorf("%s left after DEL", ifb)
			}
		})
	}
}
