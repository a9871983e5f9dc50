package ptp

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/nstest"
	"github.com/cnikit/cnikit/internal/plugintest"
	"github.com/cnikit/cnikit/netns"
)

// TestDelCleansUp: every way a DEL can arrive leaves no link, host route,
// masquerade element or IPAM reservation behind, and a second DEL succeeds.
func TestDelCleansUp(t *testing.T) {
	cases := []struct {
		name string
		// del runs the first DEL; withPrev has prevResult, bare has none.
		del func(t *testing.T, e *env, nsPath string, withPrev, bare []byte)
	}{
		{"with prevResult", func(t *testing.T, e *env, nsPath string, withPrev, bare []byte) {
			e.host.MustInvoke(plugintest.Call{Verb: "DEL", Conf: withPrev, Netns: nsPath})
		}},
		{"without prevResult", func(t *testing.T, e *env, nsPath string, withPrev, bare []byte) {
			e.host.MustInvoke(plugintest.Call{Verb: "DEL", Conf: bare, Netns: nsPath})
		}},
		{"empty CNI_NETNS", func(t *testing.T, e *env, nsPath string, withPrev, bare []byte) {
			e.host.MustInvoke(plugintest.Call{Verb: "DEL", Conf: withPrev, Netns: ""})
		}},
		{"empty CNI_NETNS, without prevResult", func(t *testing.T, e *env, nsPath string, withPrev, bare []byte) {
			e.host.MustInvoke(plugintest.Call{Verb: "DEL", Conf: bare, Netns: ""})
		}},
		{"netns gone", func(t *testing.T, e *env, nsPath string, withPrev, bare []byte) {
			if err := netns.RemoveAt(nsPath); err != nil {
				t.Fatal(err)
			}
			e.host.MustInvoke(plugintest.Call{Verb: "DEL", Conf: bare, Netns: nsPath})
		}},
		{"interface gone", func(t *testing.T, e *env, nsPath string, withPrev, bare []byte) {
			if err := netns.DoPath(nsPath, func() error { return runIP("link", "del", "eth0") }); err != nil {
				t.Fatal(err)
			}
			e.host.MustInvoke(plugintest.Call{Verb: "DEL", Conf: bare, Netns: nsPath})
		}},
		{"host end gone, with prevResult", func(t *testing.T, e *env, nsPath string, withPrev, bare []byte) {
			var m map[string]any
			_ = json.Unmarshal(withPrev, &m)
			host := m["prevResult"].(map[string]any)["interfaces"].([]any)[0].(map[string]any)["name"].(string)
			e.host.MustRun("ip", "link", "del", host)
			e.host.MustInvoke(plugintest.Call{Verb: "DEL", Conf: withPrev, Netns: nsPath})
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			nsPath := filepath.Join(t.TempDir(), "cont")
			if err := netns.CreateAt(nsPath); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = netns.RemoveAt(nsPath) })
			bare := netConf(t, "delnet", e.hostLocal("10.23.0.0/24", "fd23::/64"), map[string]any{"ipMasq": true})
			res, raw := e.host.MustAdd(plugintest.Call{Conf: bare, Netns: nsPath})
			hostName := res.Interfaces[0].Name
			if len(e.masqueraded()) != 2 {
				t.Fatalf("after ADD: masqueraded %v", e.masqueraded())
			}
			withPrev := plugintest.WithPrevResult(t, bare, raw)
			tc.del(t, e, nsPath, withPrev, bare)
			for i := range 2 {
				if i == 1 {
					e.host.MustInvoke(plugintest.Call{Verb: "DEL", Conf: withPrev, Netns: nsPath})
				}
				mustf(t, !slices.Contains(e.host.LinkNames(), hostName), "DEL %d: host end %s left", i+1, hostName)
				for _, r := range e.hostRoutes() {
					mustf(t, !strings.HasPrefix(r, "10.23.0.2/32") && !strings.HasPrefix(r, "fd23::2/128"), "DEL %d: host route %s left", i+1, r)
				}
				mustf(t, len(e.masqueraded()) == 0, "DEL %d: masquerade left: %v", i+1, e.masqueraded())
				for _, ip := range []string{"10.23.0.2", "fd23::2"} {
					_, err := os.Stat(filepath.Join(e.dataDir, "delnet", ip))
					mustf(t, err != nil, "DEL %d: address %s still reserved", i+1, ip)
				}
				if _, err := os.Stat(nsPath); err == nil {
					_ = netns.DoPath(nsPath, func() error {
						mustf(t, runIP("link", "show", "eth0") != nil, "DEL %d: container interface left", i+1)
						return nil
					})
				}
			}
		})
	}
}

// TestDelOfReferenceAttachment: an attachment the reference ptp plugin made
// (a host end without cnikit's name) is removed by cnikit's DEL, through
// CNI_NETNS or, without it, through the host end prevResult names.
func TestDelOfReferenceAttachment(t *testing.T) {
	for _, tc := range []struct {
		name      string
		withNetns bool
	}{{"with CNI_NETNS", true}, {"empty CNI_NETNS", false}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			requireReference(t)
			cont := nstest.New(t)
			c := netConf(t, "refnet", e.hostLocal("10.24.0.0/24"), nil)
			raw := e.runReference(t, "ADD", c, cont.Path())
			res, err := cni.ParseResult(raw, "1.0.0")
			if err != nil {
				t.Fatalf("reference result %s: %v", raw, err)
			}
			hostName := res.Interfaces[0].Name
			nsPath := ""
			if tc.withNetns {
				nsPath = cont.Path()
			}
			e.host.MustInvoke(plugintest.Call{Verb: "DEL", Conf: plugintest.WithPrevResult(t, c, raw), Netns: nsPath})
			mustf(t, !slices.Contains(e.host.LinkNames(), hostName), "host end %s left", hostName)
			_, err = cont.Handle().LinkByName("eth0")
			mustf(t, err != nil, "container interface left")
			_, err = os.Stat(filepath.Join(e.dataDir, "refnet", "10.24.0.2"))
			mustf(t, err != nil, "address still reserved")
		})
	}
}

// TestFailedAddCleansUp: an ADD that fails after IPAM or after the veth
// leaves neither links nor reservations.
func TestFailedAddCleansUp(t *testing.T) {
	cases := []struct {
		name string
		ipam func(e *env) map[string]any
		// before prepares the container.
		before func(t *testing.T, cont *nstest.NS)
		code   cni.Code
		msg    string
	}{
		{"interface exists in the container", func(e *env) map[string]any { return e.hostLocal("10.25.1.0/24") },
			func(t *testing.T, cont *nstest.NS) {
				cont.MustRun("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0peer")
			}, cni.CodeInvalidEnvironment, `container interface "eth0"`},
		{"IPAM address without gateway", func(e *env) map[string]any {
			return map[string]any{"type": "static", "addresses": []map[string]string{{"address": "10.25.2.5/24"}}}
		}, nil, cni.CodeInvalidNetworkConfig, "IPAM address 10.25.2.5/24 has no gateway"},
		{"IPAM route via an unreachable gateway", func(e *env) map[string]any {
			m := e.hostLocal("10.25.3.0/24")
			m["routes"] = []map[string]string{{"dst": "10.99.0.0/16", "gw": "10.25.3.200"}}
			return m
		}, nil, cni.CodeInternal, "adding route 10.99.0.0/16 via 10.25.3.200"},
		{"IPAM fails", func(e *env) map[string]any { return map[string]any{"type": "static", "addresses": "bogus"} },
			nil, cni.CodeInvalidNetworkConfig, "static: invalid configuration"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			cont := nstest.New(t)
			if tc.before != nil {
				tc.before(t, cont)
			}
			before := e.host.LinkNames()
			_, cerr := e.host.Invoke(plugintest.Call{Verb: "ADD", Conf: netConf(t, "failnet", tc.ipam(e), map[string]any{"ipMasq": true}), Netns: cont.Path()})
			if cerr == nil {
				t.Fatal("ADD succeeded")
			}
			if cerr.Code != tc.code || !strings.Contains(cerr.Msg, tc.msg) {
				t.Errorf("got code %d %q, want code %d containing %q", cerr.Code, cerr.Msg, tc.code, tc.msg)
			}
			mustf(t, len(e.host.LinkNames()) == len(before), "host links %v, before %v", e.host.LinkNames(), before)
			mustf(t, len(e.masqueraded()) == 0, "masquerade left: %v", e.masqueraded())
			entries, _ := os.ReadDir(filepath.Join(e.dataDir, "failnet"))
			for _, en := range entries {
				mustf(t, !strings.HasPrefix(en.Name(), "10.25."), "reservation %s left", en.Name())
			}
			if tc.before == nil {
				_, err := cont.Handle().LinkByName("eth0")
				mustf(t, err != nil, "container interface left")
			}
		})
	}
}

// TestAddReplacesLeakedHostEnd: a second ADD of the same attachment into
// another namespace (the first never got its DEL) takes the attachment's
// name from the leaked host end, which goes; the new one works.
func TestAddReplacesLeakedHostEnd(t *testing.T) {
	e := newEnv(t)
	old, cont := nstest.New(t), nstest.New(t)
	c := netConf(t, "leaknet", staticIPAM([2]string{"10.26.0.5/24", "10.26.0.1"}), nil)
	first, _ := e.host.MustAdd(plugintest.Call{Conf: c, Netns: old.Path()})
	second, _ := e.host.MustAdd(plugintest.Call{Conf: c, Netns: cont.Path()})
	mustf(t, !slices.Contains(e.host.LinkNames(), first.Interfaces[0].Name), "leaked host end %s still there", first.Interfaces[0].Name)
	_, err := old.Handle().LinkByName("eth0")
	mustf(t, err != nil, "the leaked container end is still there")
	mustf(t, hostEndOf(t, e, "leaknet", "ctr1").Attrs().Name == second.Interfaces[0].Name, "the name is not on the new host end")
	mustf(t, e.host.Ping("10.26.0.5") == nil, "the new container is unreachable")
}

// TestGC removes exactly what belongs to attachments that are not valid:
// masquerade elements, host ends (whose containers outlived their runtime)
// and IPAM reservations; another network is untouched.
func TestGC(t *testing.T) {
	e := newEnv(t)
	c := netConf(t, "gcnet", e.hostLocal("10.27.0.0/24"), map[string]any{"ipMasq": true})
	other := netConf(t, "othernet", e.hostLocal("10.28.0.0/24"), map[string]any{"ipMasq": true})
	hosts := map[string]string{}
	for _, cid := range []string{"keep1", "stale1", "stale2"} {
		res, _ := e.host.MustAdd(plugintest.Call{Conf: c, Netns: nstest.New(t).Path(), ContainerID: cid})
		hosts[cid] = res.Interfaces[0].Name
	}
	otherRes, _ := e.host.MustAdd(plugintest.Call{Conf: other, Netns: nstest.New(t).Path(), ContainerID: "stale-other-net"})

	var m map[string]any
	_ = json.Unmarshal(c, &m)
	m["cni.dev/valid-attachments"] = []map[string]string{{"containerID": "keep1", "ifname": "eth0"}}
	gcConf, _ := json.Marshal(m)
	e.host.MustInvoke(plugintest.Call{Verb: "GC", Conf: gcConf})

	left := e.masqueraded()
	mustf(t, len(left) == 2 && slices.Contains(left, "10.27.0.2") && slices.Contains(left, "10.28.0.2"),
		"masquerade left for %v, want keep1's 10.27.0.2 and the other network's 10.28.0.2", left)
	links := e.host.LinkNames()
	for cid, name := range hosts {
		mustf(t, slices.Contains(links, name) == (cid == "keep1"), "host end of %s present: %v", cid, slices.Contains(links, name))
	}
	mustf(t, slices.Contains(links, otherRes.Interfaces[0].Name), "the other network's host end is gone")
	for ip, reserved := range map[string]bool{"10.27.0.2": true, "10.27.0.3": false, "10.27.0.4": false} {
		_, err := os.Stat(filepath.Join(e.dataDir, "gcnet", ip))
		mustf(t, (err == nil) == reserved, "address %s: reserved %v, want %v", ip, err == nil, reserved)
	}
	mustf(t, e.host.Ping("10.27.0.2") == nil, "the kept container is unreachable")
}

func TestStatus(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name string
		ipam map[string]any
		ok   bool
	}{
		{"host-local", e.hostLocal("10.29.0.0/24"), true},
		{"static", staticIPAM([2]string{"10.29.1.5/24", "10.29.1.1"}), true},
		{"IPAM plugin missing", map[string]any{"type": "no-such-ipam"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, cerr := e.host.Invoke(plugintest.Call{Verb: "STATUS", Conf: netConf(t, "statusnet", tc.ipam, nil)})
			if (cerr == nil) != tc.ok {
				t.Errorf("STATUS: %v, want success %v", cerr, tc.ok)
			}
		})
	}
}
