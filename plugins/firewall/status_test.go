package firewall

import (
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/cnikit/cnikit/cni"
)

// TestStatus: STATUS fails with code 50 when the backend's mechanism is not
// usable (firewalld with D-Bus/firewalld missing in TestFirewalld).
func TestStatus(t *testing.T) {
	cases := []struct {
		name     string
		keys     map[string]any
		noPath   bool // PATH without iptables-restore
		wantCode cni.Code
	}{
		{"nftables", map[string]any{"backend": backendNftables}, false, 0},
		{"default backend on a plain host", map[string]any{}, false, 0},
		{"iptables", map[string]any{"backend": backendIptables}, false, 0},
		{"iptables without iptables-restore", map[string]any{"backend": backendIptables}, true, cni.CodePluginNotAvailable},
		{"firewalld without a system bus", map[string]any{"backend": backendFirewalld}, false, cni.CodePluginNotAvailable},
		{"bad configuration", map[string]any{"backend": "ufw"}, false, cni.CodeInvalidNetworkConfig},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			if tc.noPath {
				t.Setenv("PATH", t.TempDir())
			}
			_, cerr := e.invoke("firewall", "STATUS", "", "", e.fwConf(network{name: "st", fw: tc.keys}, nil))
			switch {
			case tc.wantCode == 0 && cerr != nil:
				t.Errorf("STATUS failed: %v", cerr)
			case tc.wantCode != 0 && (cerr == nil || cerr.Code != tc.wantCode):
				t.Errorf("STATUS: %v, want code %d", cerr, tc.wantCode)
			}
		})
	}
}

// TestCheckDetectsTampering: CHECK fails when an entry ADD made is gone.
func TestCheckDetectsTampering(t *testing.T) {
	cases := []struct {
		name    string
		backend string
		policy  string
		tamper  func(e *env, n network, c *container)
		wantMsg string
	}{
		{"nftables element deleted", backendNftables, policyOpen, func(e *env, n network, c *container) {
			e.host.MustRun("nft", "delete", "element", "inet", "cnikit", "firewall4", "{", c.ips[0], "}")
		}, "has no element"},
		{"nftables bridge no longer isolating", backendNftables, policySameBridge, func(e *env, n network, c *container) {
			e.host.MustRun("nft", "delete", "element", "inet", "cnikit", "isolating", "{", `"`+n.bridge+`"`, "}")
		}, "not in nftables set"},
		{"iptables rule deleted", backendIptables, policyOpen, func(e *env, n network, c *container) {
			e.host.MustRun("iptables", "-D", "CNI-FORWARD", "-s", c.ips[0]+"/32", "-m", "comment", "--comment",
				ruleComment(&attachment{Attachment: attachmentKey(n, c)}), "-j", "ACCEPT")
		}, "lacks rule -s " + "10.66.9.2"},
		{"iptables isolation deleted", backendIptables, policySameBridge, func(e *env, n network, c *container) {
			e.host.MustRun("iptables", "-F", isolationStage2)
		}, "CNI-ISOLATION-STAGE-2 lacks"},
		{"port no longer isolated", backendNftables, policyIsolated, func(e *env, n network, c *container) {
			l, err := e.host.Handle().LinkByIndex(hostPortIndex(e, n))
			if err != nil {
				e.t.Fatal(err)
			}
			e.host.Do(func() error { return netlink.LinkSetIsolated(l, false) })
		}, "is not isolated"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			n := network{name: "chk", bridge: "br-chk", subnets: []string{"10.66.9.0/24"},
				fw: map[string]any{"backend": tc.backend, "ingressPolicy": tc.policy}}
			c := e.attach(n, "c1")
			e.mustFw("ADD", n, c)
			e.mustFw("CHECK", n, c)
			tc.tamper(e, n, c)
			cerr := e.fw("CHECK", n, c, true)
			if cerr == nil || !strings.Contains(cerr.Msg, tc.wantMsg) {
				t.Errorf("CHECK after tampering: %v, want an error containing %q", cerr, tc.wantMsg)
			}
		})
	}
}

// hostPortIndex returns the index of the bridge's only port.
func hostPortIndex(e *env, n network) int {
	links, err := e.host.Handle().LinkList()
	if err != nil {
		e.t.Fatal(err)
	}
	br, err := e.host.Handle().LinkByName(n.bridge)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, l := range links {
		if l.Attrs().MasterIndex == br.Attrs().Index {
			return l.Attrs().Index
		}
	}
	e.t.Fatalf("bridge %s has no port", n.bridge)
	return 0
}
