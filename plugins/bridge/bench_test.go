package bridge

import (
	"fmt"
	"testing"

	"github.com/cnikit/cnikit/internal/nstest"
	"github.com/cnikit/cnikit/internal/plugintest"
	_ "github.com/cnikit/cnikit/plugins/host-local"
)

// benchCase is a network to measure, next to a number of existing
// attachments of the same network (in one namespace of their own, one
// interface each).
type benchCase struct {
	name     string
	subnets  []string
	extra    map[string]any
	existing int
}

var benchCases = []benchCase{
	{"ipam", []string{"10.50.0.0/16"}, nil, 0},
	{"ipMasq", []string{"10.51.0.0/16"}, map[string]any{"ipMasq": true}, 0},
	{"macspoofchk", []string{"10.52.0.0/16"}, map[string]any{"macspoofchk": true}, 0},
	{"ipMasq+macspoofchk", []string{"10.53.0.0/16"}, map[string]any{"ipMasq": true, "macspoofchk": true}, 0},
	{"dual-stack+ipMasq+macspoofchk", []string{"10.54.0.0/16", "fd54::/64"}, map[string]any{"ipMasq": true, "macspoofchk": true}, 0},
	{"ipMasq+macspoofchk/existing=1000", []string{"10.55.0.0/16"}, map[string]any{"ipMasq": true, "macspoofchk": true}, 1000},
}

// setup prepares a benchmark case: IPAM in-process, the network's
// configuration, its existing attachments and a container namespace.
func (bc benchCase) setup(b *testing.B) (*env, []byte, *nstest.NS) {
	e := newEnv(b)
	// IPAM in-process, as in the cnikit binary: the benchmarks measure the
	// bridge plugin and IPAM, not process starts.
	e.host.Defaults.Path = plugintest.InProcessPath(b, "host-local")
	conf := e.conf("bench", bc.subnets, bc.extra)
	others := nstest.New(b)
	for i := range bc.existing {
		e.host.MustAdd(plugintest.Call{Conf: conf, Netns: others.Path(), ContainerID: fmt.Sprintf("existing%d", i), IfName: fmt.Sprintf("e%d", i)})
	}
	return e, conf, nstest.New(b)
}

// BenchmarkAdd measures one in-process ADD, IPAM included; each attachment
// is deleted again outside the timer.
func BenchmarkAdd(b *testing.B) {
	for _, bc := range benchCases {
		b.Run(bc.name, func(b *testing.B) {
			e, conf, cont := bc.setup(b)
			e.host.BenchmarkAdd(b, plugintest.Call{Conf: conf, Netns: cont.Path()})
		})
	}
}

// BenchmarkDel measures one in-process DEL with prevResult, as a runtime
// sends it, IPAM included.
func BenchmarkDel(b *testing.B) {
	for _, bc := range benchCases {
		b.Run(bc.name, func(b *testing.B) {
			e, conf, cont := bc.setup(b)
			e.host.BenchmarkDel(b, plugintest.Call{Conf: conf, Netns: cont.Path()})
		})
	}
}
