package interop

import (
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/cnikit/cnikit/internal/nstest"
)

// What an attachment leaves in the host namespace and in the state dirs:
// assertAttached checks it is there while the container runs, which proves
// assertNothingLeft looks in the right places when it finds nothing.

// assertAttached checks the host state of a running container at containerIP:
// an nftables rule or element names it (ipMasq, port mappings, firewall), its
// IPAM reservation file exists, and the result cache holds an entry.
func assertAttached(t *testing.T, host *nstest.NS, containerIP net.IP, ipamDir, cacheDir string) {
	t.Helper()
	if out, _ := host.Run("nft", "list", "ruleset"); !namesIP(containerIP).MatchString(out) {
		t.Errorf("no nftables rule or element names the running container's %s:\n%s", containerIP, out)
	}
	if _, err := os.Stat(filepath.Join(ipamDir, containerIP.String())); err != nil {
		t.Errorf("no IPAM reservation of the running container: %v", err)
	}
	if results, _ := os.ReadDir(filepath.Join(cacheDir, "results")); len(results) == 0 {
		t.Errorf("no result cache entry in %s while the container runs", cacheDir)
	}
}

// namesIP matches ip as a whole address in text (10.0.0.1, not 10.0.0.12).
func namesIP(ip net.IP) *regexp.Regexp {
	return regexp.MustCompile(regexp.QuoteMeta(ip.String()) + `([^0-9]|$)`)
}

// assertNothingLeft checks the host namespace and the state dirs after the
// last DEL.
func assertNothingLeft(t *testing.T, host *nstest.NS, containerIP net.IP, ipamDir, cacheDir string) {
	t.Helper()
	h := host.Handle()
	links, err := h.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if l.Type() == "veth" || l.Type() == "ifb" {
			t.Errorf("%s link %s left in the host namespace", l.Type(), l.Attrs().Name)
		}
	}
	if out, _ := host.Run("nft", "list", "ruleset"); strings.Contains(out, "elements = ") {
		t.Errorf("nftables elements left:\n%s", out)
	}
	names := namesIP(containerIP)
	if out, _ := host.Run("nft", "list", "ruleset"); names.MatchString(out) {
		t.Errorf("nftables rules naming %s left:\n%s", containerIP, out)
	}
	if out, _ := host.Run("iptables-save"); names.MatchString(out) {
		t.Errorf("iptables rules naming %s left:\n%s", containerIP, out)
	}
	entries, _ := os.ReadDir(ipamDir)
	for _, e := range entries {
		if e.Name() != "lock" && !strings.HasPrefix(e.Name(), "last_reserved_ip") {
			t.Errorf("IPAM file %s left", e.Name())
		}
	}
	if results, _ := os.ReadDir(filepath.Join(cacheDir, "results")); len(results) != 0 {
		t.Errorf("%d result cache entries left", len(results))
	}
	for _, family := range []netlink.InetFamily{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		flows, err := h.ConntrackTableList(netlink.ConntrackTable, family)
		if err != nil {
			t.Fatalf("listing conntrack: %v", err)
		}
		for _, f := range flows {
			// Only UDP entries can outlive the container: one lives as long as
			// its client keeps sending and keeps steering that traffic to the
			// old container (plugins#123, #1190), so DEL must remove it. TCP
			// (closing, TIME_WAIT) and ping entries end by themselves, and a
			// new connection never reuses them.
			if f.Forward.Protocol != unix.IPPROTO_UDP {
				continue
			}
			if f.Forward.DstIP.Equal(containerIP) || f.Reverse.SrcIP.Equal(containerIP) {
				t.Errorf("conntrack entry of the container left: %s", f)
			}
		}
	}
}
