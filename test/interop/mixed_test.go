package interop

import (
	"testing"

	"github.com/cnikit/cnikit/internal/plugintest"
)

// mixedChains chain cnikit's plugins and the reference ones in one list,
// each reading the other's results as prevResult, and delegating to the IPAM
// plugin of its own kind.
var mixedChains = []struct {
	lifeCase
	impls impls
}{
	{lifeCase{name: "reference bridge+host-local, cnikit portmap, cnikit tuning",
		plugins: []string{plainBridge, portmapPlugin, tuningPlugin}, capabilityArgs: portMappings,
		before: tuningBefore, attached: all(wantPublished, tuningAttached), after: tuningAfter},
		impls{def: cnikitImpl, except: map[string]impl{"bridge": referenceImpl, "host-local": referenceImpl}}},
	{lifeCase{name: "cnikit bridge+host-local, reference portmap, reference tuning",
		plugins: []string{plainBridge, portmapPlugin, tuningPlugin}, capabilityArgs: portMappings,
		before: tuningBefore, attached: all(wantPublished, tuningAttached), after: tuningAfter},
		impls{def: referenceImpl, except: map[string]impl{"bridge": cnikitImpl, "host-local": cnikitImpl}}},
	{lifeCase{name: "cnikit bridge, reference firewall",
		plugins: []string{
			`{"type":"bridge","bridge":"%BRIDGE%","isDefaultGateway":true,"ipam":%HOSTLOCAL%}`, `{"type":"firewall"}`},
		minVersion: map[impl]string{referenceImpl: "0.4.0"},
		attached: func(l *life) {
			wantRulesNamingContainer(l, "firewall")
			wantForwarded(l)
		}},
		impls{def: cnikitImpl, except: map[string]impl{"firewall": referenceImpl}}},
	{lifeCase{name: "reference ptp, cnikit bandwidth",
		plugins: []string{`{"type":"ptp","ipam":%HOSTLOCAL%}`,
			`{"type":"bandwidth","ingressRate":8000000,"ingressBurst":800000,"egressRate":4000000,"egressBurst":400000}`},
		attached: func(l *life) { wantShaped(l, 8000000, 4000000) }},
		impls{def: cnikitImpl, except: map[string]impl{"ptp": referenceImpl, "host-local": referenceImpl}}},
}

// Chains of cnikit and reference plugins work through either runtime
// library: each plugin takes the other's result as prevResult, the data plane
// works, and DEL leaves only what the reference plugins leave by design.
func TestMixedChains(t *testing.T) {
	plugintest.RequireReference(t)
	plugintest.BinDir(t)
	for _, kind := range []driverKind{byLibcni, byRuntime} {
		for _, c := range mixedChains {
			for _, version := range []string{"0.4.0", "1.0.0"} {
				t.Run(string(kind)+"/"+version+"/"+c.name, func(t *testing.T) {
					t.Parallel()
					newLife(t, c.lifeCase, version, c.impls, kind).run()
				})
			}
		}
	}
}
