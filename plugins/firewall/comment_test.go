package firewall

import (
	"strings"
	"testing"

	"github.com/cnikit/cnikit/internal/nft"
)

func TestRuleComment(t *testing.T) {
	cases := []struct {
		name       string
		a          attachment
		wantBridge string
	}{
		{"open", attachment{Attachment: nft.Attachment{Network: "n1", ContainerID: "c1", IfName: "eth0"}}, ""},
		{"isolating", attachment{Attachment: nft.Attachment{Network: "n1", ContainerID: "c1", IfName: "eth0"},
			Isolation: &nft.Isolation{Bridge: "cni-podman1"}}, "cni-podman1"},
		{"odd interface name", attachment{Attachment: nft.Attachment{Network: "n1", ContainerID: "c1", IfName: `e"\é`},
			Isolation: &nft.Isolation{Bridge: "br0"}}, "br0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := ruleComment(&tc.a)
			if !strings.HasPrefix(c, tc.a.Key()) || !isCnikitComment(c) {
				t.Errorf("%q does not start with the attachment key %s", c, tc.a.Key())
			}
			if got := bridgeOfComment(c); got != tc.wantBridge {
				t.Errorf("bridgeOfComment(%q) = %q, want %q", c, got, tc.wantBridge)
			}
			if strings.ContainsAny(c, "\"\\'") || strings.IndexFunc(c, func(r rune) bool { return r > 127 }) >= 0 {
				t.Errorf("%q holds characters an iptables-restore line could misread", c)
			}
		})
	}
	for _, c := range []string{"", "CNI firewall plugin rules", "0123456789abcdef-0123456789abcdeX, net"} {
		if isCnikitComment(c) {
			t.Errorf("isCnikitComment(%q) = true", c)
		}
	}
}
