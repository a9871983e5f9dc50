package ptp

import (
	"fmt"
	"testing"

	"github.com/cnikit/cnikit/internal/nstest"
	"github.com/cnikit/cnikit/internal/plugintest"
	_ "github.com/cnikit/cnikit/plugins/host-local"
	_ "github.com/cnikit/cnikit/plugins/static"
)

// benchCase is a network to measure, next to a number of existing
// attachments of the same network.
type benchCase struct {
	name     string
	ipam     func(e *env) map[string]any
	extra    map[string]any
	existing int
}

var benchCases = []benchCase{
	{"static", func(e *env) map[string]any { return staticIPAM([2]string{"10.40.0.5/16", "10.40.0.1"}) }, nil, 0},
	{"host-local", func(e *env) map[string]any { return e.hostLocal("10.41.0.0/16") }, nil, 0},
	{"host-local+ipMasq", func(e *env) map[string]any { return e.hostLocal("10.42.0.0/16") }, map[string]any{"ipMasq": true}, 0},
	{"dual-stack+ipMasq", func(e *env) map[string]any { return e.hostLocal("10.43.0.0/16", "fd43::/64") }, map[string]any{"ipMasq": true}, 0},
	{"host-local+ipMasq/existing=1000", func(e *env) map[string]any { return e.hostLocal("10.44.0.0/16") }, map[string]any{"ipMasq": true}, 1000},
}

// setup prepares the environment of a benchmark case: the network's
// configuration and a container namespace. The existing attachments share
// one namespace of their own, each with its own interface and (static)
// address and gateway, since attachments of one gateway cannot share a
// namespace.
func (bc benchCase) setup(b *testing.B) (*env, []byte, *nstest.NS) {
	e := newEnv(b)
	// IPAM in-process, as in the cnikit binary: the benchmarks measure ptp
	// and IPAM, not process starts.
	e.host.Defaults.Path = plugintest.InProcessPath(b, "host-local", "static")
	c := netConf(b, "bench", bc.ipam(e), bc.extra)
	others := nstest.New(b)
	for i := range bc.existing {
		addr := fmt.Sprintf("10.45.%d.%d/32", i/250, i%250+2)
		gw := fmt.Sprintf("10.46.%d.%d", i/250, i%250+2)
		existing := netConf(b, "bench", staticIPAM([2]string{addr, gw}), bc.extra)
		e.host.MustAdd(plugintest.Call{Conf: existing, Netns: others.Path(), ContainerID: fmt.Sprintf("existing%d", i), IfName: fmt.Sprintf("e%d", i)})
	}
	return e, c, nstest.New(b)
}

// BenchmarkAdd measures one in-process ADD, IPAM included; each attachment
// is deleted again outside the timer.
func BenchmarkAdd(b *testing.B) {
	for _, bc := range benchCases {
		b.Run(bc.name, func(b *testing.B) {
			e, c, cont := bc.setup(b)
			e.host.BenchmarkAdd(b, plugintest.Call{Conf: c, Netns: cont.Path()})
		})
	}
}

// BenchmarkDel measures one in-process DEL with prevResult, as a runtime
// sends it, IPAM included. Most of it is the kernel unregistering the veth
// pair (RCU grace periods), which no plugin avoids.
func BenchmarkDel(b *testing.B) {
	for _, bc := range benchCases {
		b.Run(bc.name, func(b *testing.B) {
			e, c, cont := bc.setup(b)
			e.host.BenchmarkDel(b, plugintest.Call{Conf: c, Netns: cont.Path()})
		})
	}
}
