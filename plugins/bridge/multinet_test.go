package bridge

import (
	"strings"
	"testing"

	"github.com/cnikit/cnikit/internal/nstest"
	"github.com/cnikit/cnikit/internal/plugintest"
)

// One container on two networks (podman run --network a,b; podman network
// connect): each bridge ADD brings a default route, and the second must not
// fail on the first's (the kernel keeps both, the first wins), as with the
// reference plugins. CHECK and DEL of each attachment then work.
func TestContainerOnTwoNetworks(t *testing.T) {
	e := newEnv(t)
	container := nstest.New(t)
	gw := map[string]any{"isDefaultGateway": true}
	confA := e.conf("neta", []string{"10.141.0.0/24"}, merge(gw, map[string]any{"bridge": "br-a"}))
	confB := e.conf("netb", []string{"10.142.0.0/24"}, merge(gw, map[string]any{"bridge": "br-b"}))
	_, outA := e.host.MustAdd(plugintest.Call{Conf: confA, Netns: container.Path(), IfName: "eth0"})
	_, outB := e.host.MustAdd(plugintest.Call{Conf: confB, Netns: container.Path(), IfName: "eth1"})

	routes := container.MustRun("ip", "-4", "route", "show", "default")
	if !strings.Contains(routes, "via 10.141.0.1 dev eth0") || !strings.Contains(routes, "via 10.142.0.1 dev eth1") {
		t.Fatalf("want a default route per network, got:\n%s", routes)
	}
	for _, gwIP := range []string{"10.141.0.1", "10.142.0.1"} {
		if err := container.Ping(gwIP); err != nil {
			t.Fatal(err)
		}
	}
	e.host.MustInvoke(plugintest.Call{Verb: "CHECK", Conf: plugintest.WithPrevResult(t, confA, outA), Netns: container.Path(), IfName: "eth0"})
	e.host.MustInvoke(plugintest.Call{Verb: "CHECK", Conf: plugintest.WithPrevResult(t, confB, outB), Netns: container.Path(), IfName: "eth1"})
	e.host.MustInvoke(plugintest.Call{Verb: "DEL", Conf: plugintest.WithPrevResult(t, confB, outB), Netns: container.Path(), IfName: "eth1"})
	e.host.MustInvoke(plugintest.Call{Verb: "CHECK", Conf: plugintest.WithPrevResult(t, confA, outA), Netns: container.Path(), IfName: "eth0"})
	e.host.MustInvoke(plugintest.Call{Verb: "DEL", Conf: plugintest.WithPrevResult(t, confA, outA), Netns: container.Path(), IfName: "eth0"})
}

func merge(maps ...map[string]any) map[string]any {
	out := map[string]any{}
	for _, m := range maps {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}
