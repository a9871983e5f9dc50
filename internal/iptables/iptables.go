// Package iptables reads the rules of an iptables table without starting a
// process and changes them with one iptables-restore --noflush call, which
// is all the firewall plugin's iptables backend needs on hosts whose
// FORWARD policy is owned by iptables.
//
// Reading goes to the kernel directly: over nftables netlink for the
// iptables-nft flavour, and with the IPT_SO_GET_ENTRIES socket option for the
// legacy one. The flavour is the one of the iptables-restore binary that
// Restore runs, so what is read is what gets changed. Rules are modelled only
// as far as the firewall plugin needs (addresses, interfaces, conntrack
// state, comment, target); other rules are listed but marked Opaque.
package iptables

import (
	"fmt"
	"net"
	"strings"
)

// Family is an address family: IPv4 (iptables) or IPv6 (ip6tables).
type Family int

// The two families.
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

// String names the family's command: "iptables" or "ip6tables".
func (f Family) String() string {
	if f == IPv6 {
		return "ip6tables"
	}
	return "iptables"
}

// FamilyOf returns the family of ip.
func FamilyOf(ip net.IP) Family {
	if ip.To4() != nil {
		return IPv4
	}
	return IPv6
}

// RestoreCommand is the program Restore runs for the family.
func (f Family) RestoreCommand() string { return f.String() + "-restore" }

// Rule is one rule, as far as this package models it.
type Rule struct {
	Source      *net.IPNet
	Destination *net.IPNet
	InIface     string
	NotInIface  bool
	OutIface    string
	NotOutIface bool
	// CtState lists the conntrack states matched, in iptables' order and
	// spelling ("RELATED,ESTABLISHED"); empty when not matched.
	CtState string
	Comment string
	// Target is ACCEPT, DROP, RETURN or the name of the chain jumped to.
	Target string
	// Opaque is set when the rule has matches or a target this package does
	// not model; Spec then does not describe it.
	Opaque bool
}

// Spec is the rule in iptables(-restore) syntax, options in the order
// iptables prints them, so that a "-D <chain> <spec>" line matches it.
func (r Rule) Spec() string {
	var b strings.Builder
	if r.Source != nil {
		fmt.Fprintf(&b, " -s %s", r.Source)
	}
	if r.Destination != nil {
		fmt.Fprintf(&b, " -d %s", r.Destination)
	}
	if r.InIface != "" {
		if r.NotInIface {
			b.WriteString(" !")
		}
		fmt.Fprintf(&b, " -i %s", r.InIface)
	}
	if r.OutIface != "" {
		if r.NotOutIface {
			b.WriteString(" !")
		}
		fmt.Fprintf(&b, " -o %s", r.OutIface)
	}
	if r.CtState != "" {
		fmt.Fprintf(&b, " -m conntrack --ctstate %s", r.CtState)
	}
	if r.Comment != "" {
		fmt.Fprintf(&b, " -m comment --comment %q", r.Comment)
	}
	if r.Target != "" {
		fmt.Fprintf(&b, " -j %s", r.Target)
	}
	return strings.TrimPrefix(b.String(), " ")
}

// Chain is a chain of a table with its rules in order.
type Chain struct {
	Name string
	// Policy is ACCEPT or DROP for a built-in chain, "" for a user chain.
	Policy string
	Rules  []Rule
}

// Table is the content of one table of one family.
type Table struct {
	Family Family
	Name   string
	Chains map[string]*Chain
}

// Chain returns the named chain, or nil when it does not exist.
func (t *Table) Chain(name string) *Chain {
	if t == nil {
		return nil
	}
	return t.Chains[name]
}

// HostNet is ip as a single-address network (/32 or /128), the form
// iptables prints a lone address in.
func HostNet(ip net.IP) *net.IPNet {
	if v4 := ip.To4(); v4 != nil {
		return &net.IPNet{IP: v4, Mask: net.CIDRMask(32, 32)}
	}
	return &net.IPNet{IP: ip.To16(), Mask: net.CIDRMask(128, 128)}
}

// ValidName reports whether name can be written into a restore script as a
// chain or interface name: no spaces, quotes, wildcards or option-like
// prefixes, at most maxLen bytes.
func ValidName(name string, maxLen int) bool {
	if name == "" || len(name) > maxLen || name[0] == '-' || name[0] == '!' {
		return false
	}
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case r == '-' || r == '_' || r == '.' || r == '@':
		default:
			return false
		}
	}
	return true
}

// MaxChainName is the longest chain name iptables accepts.
const MaxChainName = 28
