package tuning

import (
	"testing"

	"github.com/cnikit/cnikit/internal/plugintest"
)

// BenchmarkAddDel measures an in-process ADD followed by its DEL, the
// backup file written and removed, for typical configurations.
func BenchmarkAddDel(b *testing.B) {
	cases := []struct {
		name  string
		extra map[string]any
	}{
		{"nothing configured", nil},
		{"two sysctls", map[string]any{"sysctl": map[string]string{"net.core.somaxconn": "1024", "net.ipv4.conf.IFNAME.arp_ignore": "1"}}},
		{"sysctl and every link setting", map[string]any{"sysctl": map[string]string{"net.core.somaxconn": "1024"},
			"mac": "02:00:00:00:00:10", "mtu": 1400, "txQLen": 500, "promisc": true, "allmulti": true, "alias": "bench"}},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			e := newEnv(b)
			conf := e.conf(tc.extra)
			for b.Loop() {
				e.host.MustInvoke(plugintest.Call{Verb: "ADD", Conf: conf, Netns: e.cont.Path()})
				e.host.MustInvoke(plugintest.Call{Verb: "DEL", Conf: conf, Netns: e.cont.Path()})
			}
		})
	}
}
