package bandwidth

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cnikit/cnikit/internal/plugintest"
)

// BenchmarkAddDel measures an in-process ADD followed by its DEL on a veth,
// next to n IFBs of other attachments: every kernel request names one
// device, so the cost should not grow with n.
func BenchmarkAddDel(b *testing.B) {
	cases := []struct {
		name  string
		extra map[string]any
	}{
		{"no limits", nil},
		{"ingress", map[string]any{"ingressRate": 16_000_000, "ingressBurst": 1_000_000}},
		{"ingress and egress", map[string]any{"ingressRate": 16_000_000, "ingressBurst": 1_000_000, "egressRate": 8_000_000, "egressBurst": 800_000}},
	}
	for _, existing := range []int{0, 1000} {
		for _, tc := range cases {
			b.Run(fmt.Sprintf("%s/existing=%d", tc.name, existing), func(b *testing.B) {
				e := newEnv(b)
				e.addIFBs(existing)
				conf := e.conf("bwnet", tc.extra)
				for b.Loop() {
					e.host.MustInvoke(plugintest.Call{Verb: "ADD", Conf: conf, Netns: e.cont.Path()})
					e.host.MustInvoke(plugintest.Call{Verb: "DEL", Conf: conf, Netns: e.cont.Path()})
				}
			})
		}
	}
}

// addIFBs creates n IFBs in the host namespace with one ip -batch.
func (e *env) addIFBs(n int) {
	if n == 0 {
		return
	}
	var batch strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&batch, "link add bwpexisting%04d type ifb\n", i)
	}
	file := filepath.Join(e.t.TempDir(), "batch")
	if err := os.WriteFile(file, []byte(batch.String()), 0o600); err != nil {
		e.t.Fatal(err)
	}
	e.host.MustRun("ip", "-batch", file)
}
