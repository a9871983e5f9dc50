package bridge

import (
	"strings"
	"testing"

	"github.com/cnikit/cnikit/internal/nstest"
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
	_, outA := e.mustAdd(call{conf: confA, netns: container.Path(), ifname: "eth0"})
	_, outB := e.mustAdd(call{conf: confB, netns: container.Path(), ifname: "eth1"})

	routes := container.MustRun("ip", "-4", "route", "show", "default")
	if !strings.Contains(routes, "via 10.141.0.1 dev eth0") || !strings.Contains(routes, "via 10.142.0.1 dev eth1") {
		t.Fatalf("want a default route per network, got:\n%s", routes)
	}
	for _, gwIP := range []string{"10.141.0.1", "10.142.0.1"} {
		if err := container.Ping(gwIP); err != nil {
			t.Fatal(err)
		}
	}
	e.mustRun(call{verb: "CHECK", conf: withPrevResult(t, confA, outA), netns: container.Path(), ifname: "eth0"})
	e.mustRun(call{verb: "CHECK", conf: withPrevResult(t, confB, outB), netns: container.Path(), ifname: "eth1"})
	e.mustRun(call{verb: "DEL", conf: withPrevResult(t, confB, outB), netns: container.Path(), ifname: "eth1"})
	e.mustRun(call{verb: "CHECK", conf: withPrevResult(t, confA, outA), netns: container.Path(), ifname: "eth0"})
	e.mustRun(call{verb: "DEL", conf: withPrevResult(t, confA, outA), netns: container.Path(), ifname: "eth0"})
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
