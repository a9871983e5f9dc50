package firewall

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/iptables"
)

// dualStack is a network with both families; fw is filled per case.
func dualStack(name, bridge string, n int, fw map[string]any) network {
	sub := string(rune('0' + n))
	return network{name: name, bridge: bridge, subnets: []string{"10.63." + sub + ".0/24", "fd63:" + sub + "::/64"}, fw: fw}
}

// reachesOutside probes the outside from c over both families, expecting
// expect.
func (e *env) reachesOutside(c *container, expect bool) (v4, v6 bool) {
	e.outside()
	return probe(c.ns, outside4, expect), probe(c.ns, outside6, expect)
}

// TestForwardDropNeedsIptables proves why the iptables backend exists: with
// iptables' FORWARD policy at DROP (as Docker sets it), accepting container
// traffic in cnikit's own nftables chain changes nothing, while rules in
// iptables' FORWARD chain let it through. Each iptables operation starts
// exactly one iptables-restore and one ip6tables-restore for a dual-stack
// container.
func TestForwardDropNeedsIptables(t *testing.T) {
	e := newEnv(t)
	nftNet := dualStack("drop", "br-drop", 1, map[string]any{"backend": backendNftables})
	iptNet := nftNet
	iptNet.fw = map[string]any{"backend": backendIptables}
	autoNet := nftNet
	autoNet.fw = map[string]any{}
	c := e.attach(nftNet, "c1")
	if v4, v6 := e.reachesOutside(c, true); !v4 || !v6 {
		t.Fatalf("before the DROP policy the container does not reach outside (v4 %v, v6 %v)", v4, v6)
	}
	e.host.MustRun("iptables", "-P", "FORWARD", "DROP")
	e.host.MustRun("ip6tables", "-P", "FORWARD", "DROP")
	e.spawned()

	steps := []struct {
		name      string
		n         network
		verb      string
		reachable bool
		spawned   int // per family
	}{
		{"no firewall", nftNet, "", false, 0},
		{"nftables ADD", nftNet, "ADD", false, 0},
		{"nftables DEL", nftNet, "DEL", false, 0},
		{"iptables ADD", iptNet, "ADD", true, 1},
		{"iptables CHECK", iptNet, "CHECK", true, 0},
		{"iptables DEL", iptNet, "DEL", false, 1},
		{"default backend ADD picks iptables", autoNet, "ADD", true, 1},
		{"default backend DEL", autoNet, "DEL", false, 1},
	}
	for _, s := range steps {
		if s.verb != "" {
			e.mustFw(s.verb, s.n, c)
		}
		v4n, v6n := e.spawned()
		if v4n != s.spawned || v6n != s.spawned {
			t.Errorf("%s: started %d iptables-restore and %d ip6tables-restore, want %d each", s.name, v4n, v6n, s.spawned)
		}
		v4, v6 := e.reachesOutside(c, s.reachable)
		if v4 != s.reachable || v6 != s.reachable {
			t.Errorf("%s: outside reachable over IPv4 %v, IPv6 %v; want %v", s.name, v4, v6, s.reachable)
		}
	}
}

// TestDefaultBackend: without "backend", the plugin takes firewalld when it
// runs (see TestFirewalld), else iptables when an iptables FORWARD chain
// drops by default, else nftables.
func TestDefaultBackend(t *testing.T) {
	cases := []struct {
		name  string
		setup []string
		want  string
	}{
		{"plain host", nil, backendNftables},
		{"iptables FORWARD policy ACCEPT", []string{"iptables -P FORWARD ACCEPT"}, backendNftables},
		{"iptables FORWARD policy DROP", []string{"iptables -P FORWARD DROP"}, backendIptables},
		{"ip6tables FORWARD policy DROP only", []string{"ip6tables -P FORWARD DROP"}, backendIptables},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			n := dualStack("auto", "br-auto", 2, map[string]any{})
			c := e.attach(n, "c1")
			for _, cmd := range tc.setup {
				args := splitFields(cmd)
				e.host.MustRun(args[0], args[1:]...)
			}
			e.mustFw("ADD", n, c)
			got := backendNftables
			if e.entries(backendIptables, c) {
				got = backendIptables
			}
			if e.entries(backendNftables, c) == (got == backendIptables) {
				t.Fatalf("entries in both or neither backend")
			}
			if got != tc.want {
				t.Errorf("picked %s, want %s", got, tc.want)
			}
			e.mustFw("DEL", n, c)
			if e.entries(backendNftables, c) || e.entries(backendIptables, c) {
				t.Error("entries left after DEL")
			}
		})
	}
}

// TestLegacyIptables runs the iptables backend with the legacy flavour
// (iptables-legacy-restore as iptables-restore): the rules are read back
// through IPT_SO_GET_ENTRIES, and a legacy FORWARD policy of DROP is what
// the default backend detects.
func TestLegacyIptables(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	for _, f := range []iptables.Family{iptables.IPv4, iptables.IPv6} {
		legacy := "/usr/sbin/" + f.String() + "-legacy-restore"
		if _, err := os.Stat(legacy); err != nil {
			t.Skipf("%s is not installed", legacy)
		}
		if err := os.Symlink(legacy, filepath.Join(dir, f.RestoreCommand())); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", dir+":"+os.Getenv("PATH"))
	n := dualStack("legacy", "br-legacy", 3, map[string]any{"ingressPolicy": policySameBridge})
	c := e.attach(n, "c1")
	e.host.MustRun("iptables-legacy", "-P", "FORWARD", "DROP")
	e.host.MustRun("ip6tables-legacy", "-P", "FORWARD", "DROP")
	if v4, v6 := e.reachesOutside(c, false); v4 || v6 {
		t.Fatal("the legacy DROP policy lets traffic through")
	}
	e.mustFw("ADD", n, c)
	if v4, v6 := e.reachesOutside(c, true); !v4 || !v6 {
		t.Errorf("after ADD: outside reachable over IPv4 %v, IPv6 %v", v4, v6)
	}
	e.mustFw("ADD", n, c) // idempotent: the rules read back are recognised
	e.mustFw("CHECK", n, c)
	save := e.host.MustRun("iptables-legacy-save")
	if count := len(splitLines(save, "-A CNI-FORWARD -s "+c.ips[0]+"/32")); count != 1 {
		t.Errorf("%d source rules after two ADDs:\n%s", count, save)
	}
	e.mustFw("DEL", n, c)
	if v4, v6 := e.reachesOutside(c, false); v4 || v6 {
		t.Error("traffic still flows after DEL")
	}
	save = e.host.MustRun("iptables-legacy-save")
	if len(splitLines(save, c.ips[0])) != 0 || len(splitLines(save, "-i br-legacy")) != 0 {
		t.Errorf("rules left after DEL:\n%s", save)
	}
}

// TestDefaultBackendSeesFirewalldRules: firewalld's rules in the kernel
// (its nftables table, or its iptables chains) make the default backend
// firewalld, which then wants the daemon on the bus: without it, ADD asks
// to try again later (code 11) and changes nothing.
func TestDefaultBackendSeesFirewalldRules(t *testing.T) {
	cases := []struct {
		name  string
		setup [][]string
	}{
		{"nftables table inet firewalld", [][]string{
			{"nft", "add", "table", "inet", "firewalld"},
			{"nft", "add", "chain", "inet", "firewalld", "filter_FORWARD", "{ type filter hook forward priority 10; }"},
		}},
		{"iptables chain FORWARD_direct", [][]string{{"iptables", "-N", "FORWARD_direct"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			n := dualStack("fwrules", "br-fwr", 2, map[string]any{})
			c := e.attach(n, "c1")
			for _, cmd := range tc.setup {
				e.host.MustRun(cmd[0], cmd[1:]...)
			}
			cerr := e.fw("ADD", n, c, true)
			if cerr == nil || cerr.Code != cni.CodeTryAgainLater {
				t.Fatalf("ADD: %v, want code 11 (firewalld not on the bus)", cerr)
			}
			if e.entries(backendNftables, c) || e.entries(backendIptables, c) {
				t.Error("a failed ADD left entries")
			}
		})
	}
}
