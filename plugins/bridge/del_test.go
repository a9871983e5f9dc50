package bridge

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cnikit/cnikit/internal/nft"
	"github.com/cnikit/cnikit/internal/nstest"
	"github.com/cnikit/cnikit/internal/plugintest"
)

// TestDelCleansUp: every way a DEL can arrive leaves no masquerade or MAC
// spoof element behind (reference bug plugins#810), and a second DEL succeeds.
func TestDelCleansUp(t *testing.T) {
	requireTool(t, "nft")
	cases := []struct {
		name string
		// del runs the first DEL; conf has prevResult, bare has none.
		del func(t *testing.T, e *env, cont *nstest.NS, conf, bare []byte)
	}{
		{"with prevResult", func(t *testing.T, e *env, cont *nstest.NS, conf, bare []byte) {
			e.host.MustInvoke(plugintest.Call{Verb: "DEL", Conf: conf, Netns: cont.Path()})
		}},
		{"without prevResult", func(t *testing.T, e *env, cont *nstest.NS, conf, bare []byte) {
			e.host.MustInvoke(plugintest.Call{Verb: "DEL", Conf: bare, Netns: cont.Path()})
		}},
		{"empty CNI_NETNS", func(t *testing.T, e *env, cont *nstest.NS, conf, bare []byte) {
			e.host.MustInvoke(plugintest.Call{Verb: "DEL", Conf: conf, Netns: ""})
		}},
		{"netns gone", func(t *testing.T, e *env, cont *nstest.NS, conf, bare []byte) {
			path := cont.Path()
			e.host.MustInvoke(plugintest.Call{Verb: "DEL", Conf: bare, Netns: path + "-gone"})
		}},
		{"interface gone", func(t *testing.T, e *env, cont *nstest.NS, conf, bare []byte) {
			cont.MustRun("ip", "link", "del", "eth0")
			e.host.MustInvoke(plugintest.Call{Verb: "DEL", Conf: bare, Netns: cont.Path()})
		}},
		{"interface gone, with prevResult", func(t *testing.T, e *env, cont *nstest.NS, conf, bare []byte) {
			cont.MustRun("ip", "link", "del", "eth0")
			e.host.MustInvoke(plugintest.Call{Verb: "DEL", Conf: conf, Netns: cont.Path()})
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			cont := nstest.New(t)
			bare := e.conf("delnet", []string{"10.14.0.0/24", "fd10:14::/64"}, map[string]any{"ipMasq": true, "macspoofchk": true})
			_, raw := e.host.MustAdd(plugintest.Call{Conf: bare, Netns: cont.Path()})
			masq, spoof := e.nftElements()
			if len(masq) != 2 || len(spoof) != 1 {
				t.Fatalf("after ADD: %d masquerade, %d spoof elements", len(masq), len(spoof))
			}
			conf := plugintest.WithPrevResult(t, bare, raw)
			tc.del(t, e, cont, conf, bare)
			masq, spoof = e.nftElements()
			if len(masq) != 0 || len(spoof) != 0 {
				t.Errorf("after DEL: left %+v %+v", masq, spoof)
			}
			if out := e.host.MustRun("nft", "list", "table", "bridge", "cnikit"); containsSub([]string{out}, "chain spoof-") {
				t.Errorf("MAC spoof chain left:\n%s", out)
			}
			e.host.MustInvoke(plugintest.Call{Verb: "DEL", Conf: conf, Netns: cont.Path()})
			// IPAM released the addresses.
			for _, ip := range []string{"10.14.0.2", "fd10:14::2"} {
				if _, err := os.Stat(filepath.Join(e.dataDir, "delnet", ip)); err == nil {
					t.Errorf("address %s still reserved", ip)
				}
			}
		})
	}
}

// TestDelRemovesReferenceRules: an attachment made by the reference plugins'
// nftables backend is cleaned up by cnikit's DEL (the upgrade path).
func TestDelRemovesReferenceRules(t *testing.T) {
	requireTool(t, "nft")
	e := newEnv(t)
	cont := nstest.New(t)
	bare := e.conf("upgraded", []string{"10.15.0.0/24"}, map[string]any{"ipMasq": true})
	_, raw := e.host.MustAdd(plugintest.Call{Conf: bare, Netns: cont.Path()})
	mine := nft.Attachment{Network: "upgraded", ContainerID: "ctr1", IfName: "eth0"}
	other := nft.Attachment{Network: "upgraded", ContainerID: "other", IfName: "eth0"}
	rules := "add table inet cni_plugins_masquerade\nadd chain inet cni_plugins_masquerade masq_checks\n" +
		`add rule inet cni_plugins_masquerade masq_checks ip saddr 10.15.0.2 ip daddr != 10.15.0.0/24 masquerade comment "` + mine.Comment() + "\"\n" +
		`add rule inet cni_plugins_masquerade masq_checks ip saddr 10.15.0.9 ip daddr != 10.15.0.0/24 masquerade comment "` + other.Comment() + "\"\n"
	file := t.TempDir() + "/ref.nft"
	if err := writeFile(file, rules); err != nil {
		t.Fatal(err)
	}
	e.host.MustRun("nft", "-f", file)
	e.host.MustInvoke(plugintest.Call{Verb: "DEL", Conf: plugintest.WithPrevResult(t, bare, raw), Netns: cont.Path()})
	out := e.host.MustRun("nft", "list", "chain", "inet", "cni_plugins_masquerade", "masq_checks")
	if containsSub([]string{out}, "10.15.0.2") || !containsSub([]string{out}, "10.15.0.9") {
		t.Errorf("want only the other attachment's reference rule left:\n%s", out)
	}
}

// TestGC removes exactly the elements of attachments that are not valid.
func TestGC(t *testing.T) {
	e := newEnv(t)
	conf := e.conf("gcnet", []string{"10.16.0.0/24"}, map[string]any{"ipMasq": true, "macspoofchk": true})
	otherConf := e.conf("othernet", []string{"10.17.0.0/24"}, map[string]any{"bridge": "br-other", "ipMasq": true})
	for _, cid := range []string{"keep1", "stale1", "stale2"} {
		e.host.MustAdd(plugintest.Call{Conf: conf, Netns: nstest.New(t).Path(), ContainerID: cid})
	}
	e.host.MustAdd(plugintest.Call{Conf: otherConf, Netns: nstest.New(t).Path(), ContainerID: "stale-other-net"})

	var m map[string]any
	_ = json.Unmarshal(conf, &m)
	m["cni.dev/valid-attachments"] = []map[string]string{{"containerID": "keep1", "ifname": "eth0"}}
	gcConf, _ := json.Marshal(m)
	e.host.MustInvoke(plugintest.Call{Verb: "GC", Conf: gcConf})

	masq, spoof := e.nftElements()
	var left []string
	for _, x := range masq {
		left = append(left, x.IP.String())
	}
	if len(left) != 2 || !slices.Contains(left, "10.16.0.2") || !slices.Contains(left, "10.17.0.2") {
		t.Errorf("masquerade left for %v, want keep1's 10.16.0.2 and the other network's 10.17.0.2", left)
	}
	if len(spoof) != 1 || !containsSub([]string{spoof[0].Comment}, "id: keep1") {
		t.Errorf("spoof elements left: %+v", spoof)
	}
	// host-local got the GC too: the stale addresses are free again.
	for ip, reserved := range map[string]bool{"10.16.0.2": true, "10.16.0.3": false, "10.16.0.4": false} {
		_, err := os.Stat(filepath.Join(e.dataDir, "gcnet", ip))
		if (err == nil) != reserved {
			t.Errorf("address %s: reserved %v, want %v", ip, err == nil, reserved)
		}
	}
}

// BenchmarkAddDel measures one ADD and one DEL, in-process, with host-local
// IPAM (executed) and masquerade.
func BenchmarkAddDel(b *testing.B) {
	for _, bc := range []struct {
		name  string
		extra map[string]any
	}{
		{"l2", map[string]any{}},
		{"ipam", nil},
		{"ipam+ipMasq", map[string]any{"ipMasq": true}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e := newEnv(b)
			cont := nstest.New(b)
			subnets := []string{"10.18.0.0/16"}
			if bc.extra != nil && len(bc.extra) == 0 {
				subnets = nil
			}
			conf := e.conf("bench", subnets, bc.extra)
			b.ResetTimer()
			for b.Loop() {
				if _, cerr := e.host.Invoke(plugintest.Call{Verb: "ADD", Conf: conf, Netns: cont.Path()}); cerr != nil {
					b.Fatal(cerr)
				}
				if _, cerr := e.host.Invoke(plugintest.Call{Verb: "DEL", Conf: conf, Netns: cont.Path()}); cerr != nil {
					b.Fatal(cerr)
				}
			}
		})
	}
}
