package interop

import (
	"bytes"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
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

// hostDump is the packet filter configuration of a host namespace as the
// tools print it, read once for all the checks.
type hostDump struct{ nft, iptables, ip6tables string }

func dumpHost(t *testing.T, host *nstest.NS) hostDump {
	t.Helper()
	run := func(name string, args ...string) string {
		out, err := host.Run(name, args...)
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, out)
		}
		return out
	}
	return hostDump{nft: run("nft", "list", "ruleset"), iptables: run("iptables-save"), ip6tables: run("ip6tables-save")}
}

// assertNothingLeft checks the host namespace and the state dirs after the
// last DEL, and returns the packet filter configuration it read. A nil
// containerIP (an attachment without an address, such as loopback's) skips
// the checks that look for the address.
func assertNothingLeft(t *testing.T, host *nstest.NS, containerIP net.IP, ipamDir, cacheDir string) hostDump {
	t.Helper()
	dump := dumpHost(t, host)
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
	if strings.Contains(dump.nft, "elements = ") {
		t.Errorf("nftables elements left:\n%s", dump.nft)
	}
	if results, _ := os.ReadDir(filepath.Join(cacheDir, "results")); len(results) != 0 {
		t.Errorf("%d result cache entries left", len(results))
	}
	entries, _ := os.ReadDir(ipamDir)
	for _, e := range entries {
		if e.Name() != "lock" && !strings.HasPrefix(e.Name(), "last_reserved_ip") {
			t.Errorf("IPAM file %s left", e.Name())
		}
	}
	if containerIP == nil {
		return dump
	}
	names := namesIP(containerIP)
	if names.MatchString(dump.nft) {
		t.Errorf("nftables rules naming %s left:\n%s", containerIP, dump.nft)
	}
	if out := dump.iptables + dump.ip6tables; names.MatchString(out) {
		t.Errorf("iptables rules naming %s left:\n%s", containerIP, out)
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
	return dump
}

// hostLinks describes the host namespace's links other than lo, one a line:
// type, name and global addresses ("bridge br-io-0001 10.150.2.1/24"), sorted.
func hostLinks(t *testing.T, host *nstest.NS) []string {
	t.Helper()
	h := host.Handle()
	links, err := h.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range links {
		if l.Attrs().Name == "lo" {
			continue
		}
		addrs, err := h.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			t.Fatal(err)
		}
		line := l.Type() + " " + l.Attrs().Name
		for _, a := range addrs {
			if a.Scope == int(netlink.SCOPE_UNIVERSE) {
				line += " " + a.IPNet.String()
			}
		}
		out = append(out, line)
	}
	sort.Strings(out)
	return out
}

// iptablesRules lists the user chains and the rules of every iptables table
// of both families in dump, as iptables-save writes them, prefixed by family
// and table ("ip4 nat -A POSTROUTING ..."), sorted. Built-in chains and their
// policies are left out: listing or adding a rule creates a table with them.
func iptablesRules(dump hostDump) []string {
	var out []string
	for family, save := range map[string]string{"ip4": dump.iptables, "ip6": dump.ip6tables} {
		table := ""
		for _, line := range strings.Split(save, "\n") {
			switch {
			case strings.HasPrefix(line, "*"):
				table = line[1:]
			case strings.HasPrefix(line, ":"):
				// ":CHAIN POLICY [packets:bytes]": a user chain has policy "-".
				if f := strings.Fields(line[1:]); len(f) >= 2 && f[1] == "-" {
					out = append(out, family+" "+table+" -N "+f[0])
				}
			case strings.HasPrefix(line, "-A "):
				out = append(out, family+" "+table+" "+line)
			}
		}
	}
	sort.Strings(out)
	return out
}

// stateNaming returns the files and directories under root whose path or
// content contains one of names: what cnikit's plugins keep of an attachment
// under $CNIKIT_STATE_DIR (portmap records, tuning backups, firewall records),
// shared by all tests of the process, each with its own network and container
// ID.
func stateNaming(t *testing.T, root string, names ...string) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		var content []byte
		if d.Type().IsRegular() {
			// A file may be removed by a concurrent test while we walk.
			content, _ = os.ReadFile(path)
		}
		for _, name := range names {
			if strings.Contains(path, name) || bytes.Contains(content, []byte(name)) {
				found = append(found, path)
				break
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walking %s: %v", root, err)
	}
	return found
}
