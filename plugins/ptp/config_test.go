package ptp

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/nstest"
	"github.com/cnikit/cnikit/internal/plugintest"
)

func TestBadConfigs(t *testing.T) {
	e := newEnv(t)
	cont := nstest.New(t)
	ipam := e.hostLocal("10.30.0.0/24")
	cases := []struct {
		name  string
		conf  []byte
		netns string
		code  cni.Code
		msg   string
	}{
		{"no ipam", netConf(t, "bad", nil, nil), "", cni.CodeInvalidNetworkConfig, "ipam.type is required"},
		{"ipam without type", netConf(t, "bad", map[string]any{"subnet": "10.30.0.0/24"}, nil), "", cni.CodeInvalidNetworkConfig, "ipam.type is required"},
		{"mtu negative", netConf(t, "bad", ipam, map[string]any{"mtu": -1}), "", cni.CodeInvalidNetworkConfig, "mtu -1 is out of range"},
		{"mtu too small", netConf(t, "bad", ipam, map[string]any{"mtu": 67}), "", cni.CodeInvalidNetworkConfig, "mtu 67 is out of range"},
		{"mtu too big", netConf(t, "bad", ipam, map[string]any{"mtu": 65536}), "", cni.CodeInvalidNetworkConfig, "mtu 65536 is out of range"},
		{"mtu not a number", netConf(t, "bad", ipam, map[string]any{"mtu": "big"}), "", cni.CodeInvalidNetworkConfig, `mtu: JSON string where int is expected`},
		{"ipMasq not a bool", netConf(t, "bad", ipam, map[string]any{"ipMasq": "yes"}), "", cni.CodeInvalidNetworkConfig, "ipMasq: JSON string"},
		{"ipMasqBackend", netConf(t, "bad", ipam, map[string]any{"ipMasqBackend": "ipfw"}), "", cni.CodeInvalidNetworkConfig, `ipMasqBackend "ipfw" is not supported`},
		{"prevResult not a result", netConf(t, "bad", ipam, map[string]any{"prevResult": map[string]any{"ips": "x"}}), "", cni.CodeDecodingFailure, "could not parse prevResult"},
		{"not JSON", []byte(`{"cniVersion":"1.1.0","name":"bad","type":"ptp",`), "", cni.CodeDecodingFailure, "unmarshal"},
		{"netns missing", netConf(t, "bad", ipam, nil), "/nonexistent/netns", cni.CodeUnknownContainer, `network namespace "/nonexistent/netns" does not exist`},
	}
	before := e.host.LinkNames()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			netns := tc.netns
			if netns == "" {
				netns = cont.Path()
			}
			_, cerr := e.host.Invoke(plugintest.Call{Verb: "ADD", Conf: tc.conf, Netns: netns})
			if cerr == nil {
				t.Fatal("ADD succeeded")
			}
			if cerr.Code != tc.code || !strings.Contains(cerr.Msg, tc.msg) {
				t.Errorf("got code %d %q, want code %d containing %q", cerr.Code, cerr.Msg, tc.code, tc.msg)
			}
		})
	}
	if after := e.host.LinkNames(); len(after) != len(before) {
		t.Errorf("bad configurations created links: %v -> %v", before, after)
	}
	if out := e.host.MustRun("nft", "list", "ruleset"); strings.TrimSpace(out) != "" {
		t.Errorf("bad configurations created nftables objects:\n%s", out)
	}
}

// TestVersions: ADD, CHECK (0.4.0 and later) and DEL for every version; the
// result has the version's shape.
func TestVersions(t *testing.T) {
	e := newEnv(t)
	for i, version := range cni.AllVersions {
		t.Run(version, func(t *testing.T) {
			cont := nstest.New(t)
			ipam := staticIPAM([2]string{fmt.Sprintf("10.31.%d.5/24", i), fmt.Sprintf("10.31.%d.1", i)})
			var m map[string]any
			_ = json.Unmarshal(netConf(t, "vnet", ipam, nil), &m)
			m["cniVersion"] = version
			c, _ := json.Marshal(m)
			out, cerr := e.host.Invoke(plugintest.Call{Verb: "ADD", Conf: c, Netns: cont.Path()})
			if cerr != nil {
				t.Fatalf("ADD: %v", cerr)
			}
			res, err := cni.ParseResult(out, version)
			if err != nil || res.CNIVersion != version || len(res.IPs) != 1 {
				t.Fatalf("result %s: %v", out, err)
			}
			withPrev := plugintest.WithPrevResult(t, c, out)
			if cni.SupportsCheck(version) {
				e.host.MustInvoke(plugintest.Call{Verb: "CHECK", Conf: withPrev, Netns: cont.Path()})
			}
			e.host.MustInvoke(plugintest.Call{Verb: "DEL", Conf: withPrev, Netns: cont.Path()})
			_, err = cont.Handle().LinkByName("eth0")
			mustf(t, err != nil, "container interface left")
		})
	}
}

// TestCheckDetectsDamage: CHECK passes on a fresh attachment and fails, with
// a message naming what is wrong, once any part of it is damaged.
func TestCheckDetectsDamage(t *testing.T) {
	cases := []struct {
		name   string
		damage func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS)
		msg    string
	}{
		{"container address", func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
			cont.MustRun("ip", "addr", "del", "10.32.0.2/24", "dev", "eth0")
		}, "lacks address 10.32.0.2/24"},
		{"container route to the subnet", func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
			cont.MustRun("ip", "route", "del", "10.32.0.0/24")
		}, "lacks route to 10.32.0.0/24 via 10.32.0.1"},
		{"IPAM route", func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
			cont.MustRun("ip", "route", "del", "default")
		}, "lacks route to 0.0.0.0/0 via 10.32.0.1"},
		{"host gateway address", func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
			e.host.MustRun("ip", "addr", "del", "10.32.0.1/32", "dev", res.Interfaces[0].Name)
		}, "host end: \"" + "veth"},
		{"host route", func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
			e.host.MustRun("ip", "route", "del", "10.32.0.2/32")
		}, "lacks route to 10.32.0.2/32"},
		{"masquerade", func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
			e.host.MustRun("nft", "delete", "element", "inet", "cnikit", "masq4", "{ 10.32.0.2 }")
		}, "no masquerade for 10.32.0.2"},
		{"container MAC", func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
			cont.MustRun("ip", "link", "set", "eth0", "address", "02:00:00:00:32:02")
		}, "has MAC 02:00:00:00:32:02"},
		{"container interface", func(t *testing.T, e *env, res *cni.Result, cont *nstest.NS) {
			cont.MustRun("ip", "link", "del", "eth0")
		}, `container interface "eth0"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			cont := nstest.New(t)
			ipam := e.hostLocal("10.32.0.0/24")
			ipam["routes"] = []map[string]string{{"dst": "0.0.0.0/0"}}
			c := netConf(t, "checknet", ipam, map[string]any{"ipMasq": true})
			res, raw := e.host.MustAdd(plugintest.Call{Conf: c, Netns: cont.Path()})
			withPrev := plugintest.WithPrevResult(t, c, raw)
			e.host.MustInvoke(plugintest.Call{Verb: "CHECK", Conf: withPrev, Netns: cont.Path()})
			tc.damage(t, e, res, cont)
			_, cerr := e.host.Invoke(plugintest.Call{Verb: "CHECK", Conf: withPrev, Netns: cont.Path()})
			if cerr == nil || !strings.Contains(cerr.Msg, tc.msg) {
				t.Errorf("CHECK after damage: %v, want an error containing %q", cerr, tc.msg)
			}
		})
	}
	t.Run("no prevResult", func(t *testing.T) {
		e := newEnv(t)
		cont := nstest.New(t)
		c := netConf(t, "checknet", e.hostLocal("10.32.1.0/24"), nil)
		e.host.MustAdd(plugintest.Call{Conf: c, Netns: cont.Path()})
		_, cerr := e.host.Invoke(plugintest.Call{Verb: "CHECK", Conf: c, Netns: cont.Path()})
		if cerr == nil || cerr.Code != cni.CodeInvalidNetworkConfig || !strings.Contains(cerr.Msg, "prevResult is required") {
			t.Errorf("CHECK: %v", cerr)
		}
	})
}
