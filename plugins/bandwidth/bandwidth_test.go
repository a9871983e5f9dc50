package bandwidth

import (
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/link"
	"github.com/cnikit/cnikit/internal/nft"
	"github.com/cnikit/cnikit/internal/plugintest"
)

func mustTBF(t testing.TB, rate, burst uint64) link.TBF {
	t.Helper()
	tbf, err := link.NewTBF(rate, burst)
	if err != nil {
		t.Fatal(err)
	}
	return tbf
}

// rootTBF reads a host link's root TBF.
func (e *env) rootTBF(name string) (link.TBF, error) {
	index := e.host.Link(name).Attrs().Index
	var tbf link.TBF
	var err error
	e.host.Do(func() error { tbf, err = link.RootTBF(index); return nil })
	return tbf, err
}

// TestAddCheckDel: both directions through ADD, CHECK, DEL and DEL again.
func TestAddCheckDel(t *testing.T) {
	e := newEnv(t)
	conf := e.conf("bwnet", map[string]any{"ingressRate": 16_000_000, "ingressBurst": 1_000_000, "egressRate": 8_000_000, "egressBurst": 800_000})
	out := e.host.MustInvoke(plugintest.Call{Verb: "ADD", Conf: conf, Netns: e.cont.Path()})
	ifb := ifbName("bwnet", "ctr1")

	res, err := cni.ParseResult(out, "1.1.0")
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Interfaces) != 3 || res.Interfaces[2].Name != ifb || res.Interfaces[2].Mac != e.host.Link(ifb).Attrs().HardwareAddr.String() {
		t.Errorf("result interfaces: %s", out)
	}
	if len(res.IPs) != 1 || res.Interfaces[0].Name != "vethhost" {
		t.Errorf("prevResult not passed on: %s", out)
	}
	if got, err := e.rootTBF("vethhost"); err != nil || got != mustTBF(t, 16_000_000, 1_000_000) {
		t.Errorf("host veth TBF %+v, %v", got, err)
	}
	if got, err := e.rootTBF(ifb); err != nil || got != mustTBF(t, 8_000_000, 800_000) {
		t.Errorf("ifb TBF %+v, %v", got, err)
	}
	l := e.host.Link(ifb)
	wantAlias := aliasPrefix + nft.Attachment{Network: "bwnet", ContainerID: "ctr1", IfName: "eth0"}.Comment()
	if l.Type() != "ifb" || l.Attrs().Alias != wantAlias || l.Attrs().MTU != e.host.Link("vethhost").Attrs().MTU || l.Attrs().Flags&1 == 0 {
		t.Errorf("ifb %s %+v", l.Type(), l.Attrs())
	}
	if filters := e.host.MustRun("tc", "filter", "show", "dev", "vethhost", "ingress"); !strings.Contains(filters, "Redirect to device "+ifb) {
		t.Errorf("no redirect to %s:\n%s", ifb, filters)
	}

	withResult := plugintest.WithPrevResult(t, conf, out)
	e.host.MustInvoke(plugintest.Call{Verb: "CHECK", Conf: withResult, Netns: e.cont.Path()})
	e.host.MustInvoke(plugintest.Call{Verb: "DEL", Conf: withResult, Netns: e.cont.Path()})
	if e.host.HasLink(ifb) {
		t.Error("ifb left after DEL")
	}
	if q := e.hostQdiscs("vethhost"); slices.Contains(q, "tbf") || slices.Contains(q, "ingress") {
		t.Errorf("host veth qdiscs after DEL: %v", q)
	}
	e.host.MustInvoke(plugintest.Call{Verb: "DEL", Conf: withResult, Netns: e.cont.Path()})
}

// TestDelWithoutPrevResultOrNetns: the IFB's name comes from the network
// and container alone.
func TestDelWithoutPrevResultOrNetns(t *testing.T) {
	cases := []struct {
		name  string
		netns func(e *env) string
	}{
		{"empty netns", func(e *env) string { return "" }},
		{"netns gone", func(e *env) string { return filepath.Join(t.TempDir(), "gone") }},
		{"interface gone", func(e *env) string { e.cont.MustRun("ip", "link", "del", "eth0"); return e.cont.Path() }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.host.MustInvoke(plugintest.Call{Verb: "ADD", Conf: e.conf("bwnet", map[string]any{"egressRate": 8_000_000, "egressBurst": 800_000}), Netns: e.cont.Path()})
			ifb := ifbName("bwnet", "ctr1")
			if !e.host.HasLink(ifb) {
				t.Fatal("no ifb after ADD")
			}
			del := e.conf("bwnet", map[string]any{"prevResult": nil, "egressRate": 8_000_000, "egressBurst": 800_000})
			netnsPath := tc.netns(e)
			for i := 0; i < 2; i++ {
				if _, cerr := e.host.Invoke(plugintest.Call{Verb: "DEL", Conf: del, Netns: netnsPath}); cerr != nil {
					t.Fatalf("DEL %d: %v", i+1, cerr)
				}
			}
			if e.host.HasLink(ifb) {
				t.Error("ifb left after DEL")
			}
		})
	}
}

// TestNoLimits: without limits ADD passes prevResult on and changes nothing.
func TestNoLimits(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		name  string
		extra map[string]any
	}{
		{"no keys", nil},
		{"zero keys", map[string]any{"ingressRate": 0, "ingressBurst": 0}},
		{"empty capability", map[string]any{"runtimeConfig": map[string]any{"bandwidth": map[string]any{}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			out := e.host.MustInvoke(plugintest.Call{Verb: "ADD", Conf: e.conf("bwnet", tc.extra), Netns: e.cont.Path()})
			if !strings.Contains(string(out), "vethhost") || strings.Contains(string(out), ifbPrefix) {
				t.Errorf("result %s", out)
			}
			if q := e.hostQdiscs("vethhost"); slices.Contains(q, "tbf") || slices.Contains(q, "ingress") {
				t.Errorf("qdiscs %v", q)
			}
		})
	}
	out := e.host.MustInvoke(plugintest.Call{Verb: "ADD", Conf: e.conf("bwnet", map[string]any{"prevResult": nil}), Netns: e.cont.Path()})
	if res, err := cni.ParseResult(out, "1.1.0"); err != nil || len(res.Interfaces) != 0 {
		t.Errorf("without prevResult: %s, %v", out, err)
	}
}

// TestCapability: runtimeConfig.bandwidth is used only when no top-level
// key is present, and its missing or absurd bursts are made sane.
func TestCapability(t *testing.T) {
	e := newEnv(t)
	kubelet := uint64(math.MaxInt32) // kubelet's "no limit" burst, in bits
	cases := []struct {
		name        string
		extra       map[string]any
		wantIngress *link.TBF
		wantEgress  *link.TBF
	}{
		{"top-level wins", map[string]any{"ingressRate": 16_000_000, "ingressBurst": 1_000_000,
			"runtimeConfig": map[string]any{"bandwidth": map[string]any{"egressRate": 8_000_000, "egressBurst": 800_000}}},
			ptr(mustTBF(t, 16_000_000, 1_000_000)), nil},
		{"capability as given", map[string]any{"runtimeConfig": map[string]any{"bandwidth": map[string]any{
			"ingressRate": 10_000_000, "ingressBurst": 800_000, "egressRate": 10_000_000, "egressBurst": 600_000}}},
			ptr(mustTBF(t, 10_000_000, 800_000)), ptr(mustTBF(t, 10_000_000, 600_000))},
		{"kubelet's burst capped at 100 ms", map[string]any{"runtimeConfig": map[string]any{"bandwidth": map[string]any{
			"ingressRate": 10_000_000, "ingressBurst": kubelet}}},
			ptr(mustTBF(t, 10_000_000, 1_000_000)), nil},
		{"missing burst", map[string]any{"runtimeConfig": map[string]any{"bandwidth": map[string]any{"egressRate": 20_000_000}}},
			nil, ptr(mustTBF(t, 20_000_000, 2_000_000))},
		{"burst below a packet raised", map[string]any{"runtimeConfig": map[string]any{"bandwidth": map[string]any{
			"ingressRate": 2048, "ingressBurst": 1600}}},
			ptr(mustTBF(t, 2048, 20480)), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			conf := e.conf("bwnet", tc.extra)
			out := e.host.MustInvoke(plugintest.Call{Verb: "ADD", Conf: conf, Netns: e.cont.Path()})
			got, err := e.rootTBF("vethhost")
			if tc.wantIngress == nil && err == nil || tc.wantIngress != nil && got != *tc.wantIngress {
				t.Errorf("ingress TBF %+v, %v, want %+v", got, err, tc.wantIngress)
			}
			ifb := ifbName("bwnet", "ctr1")
			if tc.wantEgress == nil && e.host.HasLink(ifb) {
				t.Errorf("ifb made without an egress limit")
			} else if tc.wantEgress != nil {
				if got, err := e.rootTBF(ifb); err != nil || got != *tc.wantEgress {
					t.Errorf("egress TBF %+v, %v, want %+v", got, err, *tc.wantEgress)
				}
			}
			e.host.MustInvoke(plugintest.Call{Verb: "CHECK", Conf: plugintest.WithPrevResult(t, conf, out), Netns: e.cont.Path()})
			e.host.MustInvoke(plugintest.Call{Verb: "DEL", Conf: conf, Netns: e.cont.Path()})
		})
	}
}

func ptr[T any](v T) *T { return &v }

// TestCapabilityBurst is the burst rule for capability rates, without
// privileges.
func TestCapabilityBurst(t *testing.T) {
	cases := []struct {
		name              string
		rate, burst, want uint64
	}{
		{"missing: 100 ms at the rate", 100_000_000, 0, 10_000_000},
		{"missing at a low rate: 64 KiB", 1_000_000, 0, 524288},
		{"kubelet's at 10 Mbit/s", 10_000_000, math.MaxInt32, 1_000_000},
		{"kubelet's at 100 Gbit/s is kept", 100_000_000_000, math.MaxInt32, math.MaxInt32},
		{"sane is kept", 10_000_000, 800_000, 800_000},
		{"below a packet", 10_000_000, 1600, 524288},
		{"tiny rate: 10 s worth", 1000, 0, 10000},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := capabilityBurst(tc.rate, tc.burst); got != tc.want {
				t.Errorf("capabilityBurst(%d, %d) = %d, want %d", tc.rate, tc.burst, got, tc.want)
			}
		})
	}
}

// TestBadConfigs: invalid limits are refused with code 7 naming the value,
// and nothing is made.
func TestBadConfigs(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		name   string
		extra  map[string]any
		ifname string
		code   cni.Code
		msg    string
	}{
		{"rate without burst", map[string]any{"ingressRate": 1000000}, "", cni.CodeInvalidNetworkConfig, "ingressRate 1000000 is set but ingressBurst is not"},
		{"burst without rate", map[string]any{"egressBurst": 1000000}, "", cni.CodeInvalidNetworkConfig, "egressBurst 1000000 is set but egressRate is not"},
		{"burst of 4 GiB", map[string]any{"ingressRate": 1 << 40, "ingressBurst": uint64(8 * math.MaxUint32)}, "", cni.CodeInvalidNetworkConfig, "ingressBurst 34359738360 is 4 GiB or more"},
		{"rate below a byte", map[string]any{"egressRate": 7, "egressBurst": 8000}, "", cni.CodeInvalidNetworkConfig, "egressRate 7"},
		{"burst too long to drain", map[string]any{"ingressRate": 8000, "ingressBurst": 80_000_000}, "", cni.CodeInvalidNetworkConfig, "takes 10000 s"},
		{"negative rate", map[string]any{"ingressRate": -1, "ingressBurst": 1000}, "", cni.CodeInvalidNetworkConfig, "ingressRate: number -1"},
		{"rate not a number", map[string]any{"egressRate": "fast", "egressBurst": 1000}, "", cni.CodeInvalidNetworkConfig, "egressRate"},
		{"capability burst without rate", map[string]any{"runtimeConfig": map[string]any{"bandwidth": map[string]any{"ingressBurst": 1000}}},
			"", cni.CodeInvalidNetworkConfig, "runtimeConfig.bandwidth.ingressBurst 1000 is set but ingressRate is not"},
		{"no prevResult", map[string]any{"prevResult": nil, "ingressRate": 1000000, "ingressBurst": 100000}, "", cni.CodeInvalidNetworkConfig, "prevResult is required"},
		{"not a veth", map[string]any{"ingressRate": 1000000, "ingressBurst": 100000}, "lo", cni.CodeInvalidNetworkConfig, `"lo" is a device link`},
		{"host end not in prevResult", map[string]any{"ingressRate": 1000000, "ingressBurst": 100000,
			"prevResult": map[string]any{"cniVersion": "1.1.0", "interfaces": []map[string]any{{"name": "other"}}}},
			"", cni.CodeInvalidNetworkConfig, `host end "vethhost" of "eth0" is not an interface of prevResult`},
		{"version 0.2.0", map[string]any{"cniVersion": "0.2.0", "prevResult": nil}, "", cni.CodeIncompatibleVersion, "0.2.0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			_, cerr := e.host.Invoke(plugintest.Call{Verb: "ADD", Conf: e.conf("bwnet", tc.extra), Netns: e.cont.Path(), IfName: tc.ifname})
			if cerr == nil {
				t.Fatal("ADD succeeded")
			}
			if cerr.Code != tc.code || !strings.Contains(cerr.Error(), tc.msg) {
				t.Errorf("got code %d %q, want code %d containing %q", cerr.Code, cerr.Error(), tc.code, tc.msg)
			}
			if q := e.hostQdiscs("vethhost"); slices.Contains(q, "tbf") || slices.Contains(q, "ingress") {
				t.Errorf("qdiscs made: %v", q)
			}
			if e.host.HasLink(ifbName("bwnet", "ctr1")) {
				t.Error("ifb made")
			}
		})
	}
}

// TestCheckNoticesDrift: CHECK compares the TBFs' parameters and the
// redirect with the configuration.
func TestCheckNoticesDrift(t *testing.T) {
	e := newEnv(t)
	conf := e.conf("bwnet", map[string]any{"ingressRate": 16_000_000, "ingressBurst": 1_000_000, "egressRate": 8_000_000, "egressBurst": 800_000})
	conf = plugintest.WithPrevResult(t, conf, e.host.MustInvoke(plugintest.Call{Verb: "ADD", Conf: conf, Netns: e.cont.Path()}))
	ifb := ifbName("bwnet", "ctr1")
	cases := []struct {
		name string
		cmd  []string
		msg  string
	}{
		{"ingress rate", []string{"tc", "qdisc", "change", "dev", "vethhost", "root", "handle", "1:", "tbf", "rate", "1mbit", "burst", "10kb", "latency", "25ms"},
			`ingress limit on "vethhost" is rate 125000 B/s`},
		{"egress TBF gone", []string{"tc", "qdisc", "del", "dev", ifb, "root"}, "egress limit on \"" + ifb + "\""},
		{"redirect gone", []string{"tc", "qdisc", "del", "dev", "vethhost", "ingress"}, "is not redirected"},
		{"ifb gone", []string{"ip", "link", "del", ifb}, "ifb \"" + ifb + "\""},
	}
	e.host.MustInvoke(plugintest.Call{Verb: "CHECK", Conf: conf, Netns: e.cont.Path()})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			e.host.MustRun(tc.cmd[0], tc.cmd[1:]...)
			_, cerr := e.host.Invoke(plugintest.Call{Verb: "CHECK", Conf: conf, Netns: e.cont.Path()})
			if cerr == nil || !strings.Contains(cerr.Msg, tc.msg) {
				t.Errorf("CHECK: %v, want an error containing %q", cerr, tc.msg)
			}
			// Repair by running ADD again, which replaces everything.
			e.host.MustInvoke(plugintest.Call{Verb: "ADD", Conf: conf, Netns: e.cont.Path()})
			e.host.MustInvoke(plugintest.Call{Verb: "CHECK", Conf: conf, Netns: e.cont.Path()})
		})
	}
}

// TestGC: GC deletes this network's IFBs whose attachment is not valid, and
// leaves the valid ones, other networks' and IFBs without cnikit's alias.
func TestGC(t *testing.T) {
	e := newEnv(t)
	limits := map[string]any{"egressRate": 8_000_000, "egressBurst": 800_000}
	// Several attachments share the one veth: ADD only needs it to exist.
	for _, a := range []struct{ network, cid string }{{"bwnet", "keep"}, {"bwnet", "stale1"}, {"bwnet", "stale2"}, {"othernet", "other"}} {
		e.host.MustInvoke(plugintest.Call{Verb: "ADD", Conf: e.conf(a.network, limits), ContainerID: a.cid, Netns: e.cont.Path()})
	}
	reference := ifbName("bwnet", "reference")
	e.host.MustRun("ip", "link", "add", reference, "type", "ifb")
	e.host.MustRun("ip", "link", "add", "bwpforeign0001", "type", "ifb")
	e.host.MustRun("ip", "link", "set", "bwpforeign0001", "alias", "someone else's")

	gc := e.conf("bwnet", map[string]any{"prevResult": nil,
		"cni.dev/valid-attachments": []map[string]string{{"containerID": "keep", "ifname": "eth0"}, {"containerID": "stale2", "ifname": "net9"}}})
	e.host.MustInvoke(plugintest.Call{Verb: "GC", Conf: gc, Netns: e.cont.Path()})
	for name, want := range map[string]bool{
		ifbName("bwnet", "keep"): true, ifbName("bwnet", "stale1"): false, ifbName("bwnet", "stale2"): false,
		ifbName("othernet", "other"): true, reference: true, "bwpforeign0001": true,
	} {
		if got := e.host.HasLink(name); got != want {
			t.Errorf("%s exists %v, want %v", name, got, want)
		}
	}
}

// TestStatus: STATUS checks the configuration.
func TestStatus(t *testing.T) {
	e := newEnv(t)
	e.host.MustInvoke(plugintest.Call{Verb: "STATUS", Conf: e.conf("bwnet", map[string]any{"prevResult": nil, "ingressRate": 1000000, "ingressBurst": 100000}), Netns: e.cont.Path()})
	_, cerr := e.host.Invoke(plugintest.Call{Verb: "STATUS", Conf: e.conf("bwnet", map[string]any{"prevResult": nil, "ingressRate": 1000000})})
	if cerr == nil || cerr.Code != cni.CodeInvalidNetworkConfig {
		t.Errorf("STATUS of a bad configuration: %v, want code 7", cerr)
	}
}

// TestIFBName matches the reference's naming.
func TestIFBName(t *testing.T) {
	// printf mynetabc | sha512sum | cut -c1-12
	if got := ifbName("mynet", "abc"); got != "bwpe88f49d94512" {
		t.Errorf("ifbName = %q, want bwpe88f49d94512", got)
	}
	if ifbName("a", "bc") != ifbName("ab", "c") {
		t.Error("the reference hashes network and container ID concatenated")
	}
}
