package firewall

import (
	"encoding/json"
	"maps"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/iptables"
	"github.com/cnikit/cnikit/internal/plugintest"
)

// runReference runs the reference firewall plugin binary in the host
// namespace (it speaks cniVersion 1.0.0 at most).
func (e *env) runReference(t *testing.T, verb string, n network, c *container) {
	t.Helper()
	res, err := cni.ParseResult(c.result, "1.1.0")
	if err != nil {
		t.Fatal(err)
	}
	prev, err := res.Marshal("1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]any{"cniVersion": "1.0.0", "prevResult": json.RawMessage(prev)}
	maps.Copy(keys, n.fw)
	e.host.MustExec(filepath.Join(plugintest.ReferenceDir, "firewall"), plugintest.Call{Verb: verb, ContainerID: c.cid,
		Netns: c.ns.Path(), Conf: plugintest.Conf(t, "firewall", n.name, keys), NetnsOverride: true})
}

// TestReferenceRulesUnderstood: rules the reference plugin's iptables
// backend made (no comments, same chains) are recognised by cnikit's ADD
// (no duplicate jumps), removed by cnikit's DEL given prevResult (with the
// bridge's isolation once no container rule is left), and left alone by GC,
// which cannot tell whose they are.
func TestReferenceRulesUnderstood(t *testing.T) {
	plugintest.RequireReference(t)
	e := newEnv(t)
	ref := dualStack("ref", "br-ref", 7, map[string]any{"backend": backendIptables, "ingressPolicy": policySameBridge})
	refC, ours := e.attach(ref, "ref1"), e.attach(ref, "ours1")
	e.host.MustRun("iptables", "-P", "FORWARD", "DROP")
	e.host.MustRun("ip6tables", "-P", "FORWARD", "DROP")

	e.runReference(t, "ADD", ref, refC)
	if v4, v6 := e.reachesOutside(refC, true); !v4 || !v6 {
		t.Fatalf("the reference plugin's rules do not let traffic through (v4 %v, v6 %v)", v4, v6)
	}
	if !e.isolated(backendIptables, ref.bridge) {
		t.Fatal("the reference plugin made no isolation rules")
	}
	e.mustFw("ADD", ref, ours)
	e.mustFw("CHECK", ref, ours)
	for _, f := range []iptables.Family{iptables.IPv4, iptables.IPv6} {
		for chain, target := range map[string]string{"FORWARD": "-j " + forwardChain, forwardChain: "-j CNI-ADMIN"} {
			if got := len(splitLinesOf(e.iptablesRules(f, chain), target)); got != 1 {
				t.Errorf("%s %s has %d rules %q after both ADDs, want 1", f, chain, got, target)
			}
		}
	}

	// GC keeping only ours: the reference's rules have no owner to check.
	var conf map[string]any
	json.Unmarshal(e.fwConf(ref, nil), &conf)
	conf["cni.dev/valid-attachments"] = []map[string]string{{"containerID": ours.cid, "ifname": "eth0"}}
	if _, cerr := e.invoke("firewall", "GC", "", "", mustJSON(t, conf)); cerr != nil {
		t.Fatalf("GC: %v", cerr)
	}
	if !e.entries(backendIptables, refC) {
		t.Fatal("GC removed the reference plugin's rules")
	}

	e.mustFw("DEL", ref, ours)
	if !e.isolated(backendIptables, ref.bridge) {
		t.Error("DEL removed the isolation while a reference container rule is left")
	}
	e.mustFw("DEL", ref, refC)
	if e.entries(backendIptables, refC) {
		t.Errorf("cnikit's DEL left the reference plugin's rules: %v", e.iptablesRules(iptables.IPv4, forwardChain))
	}
	if v4, v6 := e.reachesOutside(refC, false); v4 || v6 {
		t.Error("traffic still passes after DEL")
	}
	if e.isolated(backendIptables, ref.bridge) {
		t.Errorf("the reference isolation rules of the bridge are left: %v", e.iptablesRules(iptables.IPv4, isolationStage1))
	}
}

func splitLinesOf(list []string, sub string) []string {
	var out []string
	for _, s := range list {
		if strings.Contains(s, sub) {
			out = append(out, s)
		}
	}
	return out
}
