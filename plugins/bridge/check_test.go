package bridge

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/nstest"
	"github.com/cnikit/cnikit/internal/plugintest"
)

// TestCheckDetectsDamage: CHECK passes on a fresh attachment and fails, with
// a message naming what is wrong, once any part of it is damaged; GC brings
// back what it can rebuild (the nftables programs), after which CHECK passes
// again.
func TestCheckDetectsDamage(t *testing.T) {
	requireTool(t, "nft")
	cases := []struct {
		name   string
		damage func(e *env, res *cni.Result, cont *nstest.NS)
		msg    string
		// repaired: GC restores it.
		repaired bool
	}{
		{"container address", func(e *env, res *cni.Result, cont *nstest.NS) {
			cont.MustRun("ip", "addr", "del", "10.21.0.2/24", "dev", "eth0")
		}, `"eth0" lacks address 10.21.0.2/24`, false},
		{"route to the subnet", func(e *env, res *cni.Result, cont *nstest.NS) {
			cont.MustRun("ip", "route", "del", "10.21.0.0/24", "dev", "eth0")
		}, `"eth0" lacks route to 10.21.0.0/24`, false},
		{"default route", func(e *env, res *cni.Result, cont *nstest.NS) {
			cont.MustRun("ip", "route", "del", "default")
		}, "lacks route to 0.0.0.0/0 via 10.21.0.1", false},
		{"masquerade element", func(e *env, res *cni.Result, cont *nstest.NS) {
			e.host.MustRun("nft", "delete", "element", "inet", "cnikit", "masq6", "{ fd21::2 }")
		}, "no masquerade for fd21::2", false},
		{"MAC spoof element", func(e *env, res *cni.Result, cont *nstest.NS) {
			e.host.MustRun("nft", "delete", "element", "bridge", "cnikit", "macspoof", `{ "`+res.Interfaces[1].Name+`" }`)
		}, "no MAC spoof check for ctr1/eth0", false},
		{"masquerade program", func(e *env, res *cni.Result, cont *nstest.NS) {
			e.host.MustRun("nft", "flush", "chain", "inet", "cnikit", "postrouting")
		}, "postrouting is missing or was changed (GC restores it)", true},
		{"MAC spoof program", func(e *env, res *cni.Result, cont *nstest.NS) {
			e.host.MustRun("nft", "flush", "chain", "bridge", "cnikit", "prerouting")
		}, "prerouting is missing or was changed (GC restores it)", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			cont := nstest.New(t)
			conf := e.conf("checknet", []string{"10.21.0.0/24", "fd21::/64"},
				map[string]any{"isDefaultGateway": true, "ipMasq": true, "macspoofchk": true})
			res, raw := e.host.MustAdd(plugintest.Call{Conf: conf, Netns: cont.Path()})
			withPrev := plugintest.WithPrevResult(t, conf, raw)
			e.host.MustInvoke(plugintest.Call{Verb: "CHECK", Conf: withPrev, Netns: cont.Path()})
			tc.damage(e, res, cont)
			_, cerr := e.host.Invoke(plugintest.Call{Verb: "CHECK", Conf: withPrev, Netns: cont.Path()})
			if cerr == nil || !strings.Contains(cerr.Msg, tc.msg) {
				t.Fatalf("CHECK after damage: %v, want an error containing %q", cerr, tc.msg)
			}
			var m map[string]any
			_ = json.Unmarshal(conf, &m)
			m["cni.dev/valid-attachments"] = []map[string]string{{"containerID": "ctr1", "ifname": "eth0"}}
			gcConf, _ := json.Marshal(m)
			e.host.MustInvoke(plugintest.Call{Verb: "GC", Conf: gcConf})
			_, cerr = e.host.Invoke(plugintest.Call{Verb: "CHECK", Conf: withPrev, Netns: cont.Path()})
			if tc.repaired && cerr != nil {
				t.Errorf("CHECK after GC: %v", cerr)
			}
			if !tc.repaired && cerr == nil {
				t.Errorf("CHECK after GC passes, but GC cannot have restored that")
			}
		})
	}
}
