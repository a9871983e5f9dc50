package iptables

import (
	"bytes"
	"fmt"
	"net"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
	"golang.org/x/sys/unix"

	"github.com/cnikit/cnikit/internal/nft"
)

// readNFT reads an iptables-nft table (nftables table ip/ip6 <name>): every
// chain with its policy, and the rules of the chains named in rulesOf.
func readNFT(f Family, name string, rulesOf []string) (*Table, error) {
	conn, err := nftables.New(nftables.AsLasting())
	if err != nil {
		return nil, fmt.Errorf("connecting to nftables: %w", err)
	}
	defer conn.CloseLasting()
	fam := nftables.TableFamilyIPv4
	if f == IPv6 {
		fam = nftables.TableFamilyIPv6
	}
	t := &Table{Family: f, Name: name, Chains: map[string]*Chain{}}
	chains, err := conn.ListChainsOfTableFamily(fam)
	if err != nil {
		return nil, fmt.Errorf("listing %s chains: %w", f, err)
	}
	for _, ch := range chains {
		if ch.Table == nil || ch.Table.Name != name {
			continue
		}
		c := &Chain{Name: ch.Name}
		if ch.Policy != nil {
			c.Policy = "ACCEPT"
			if *ch.Policy == nftables.ChainPolicyDrop {
				c.Policy = "DROP"
			}
		}
		t.Chains[ch.Name] = c
	}
	table := &nftables.Table{Family: fam, Name: name}
	for _, chainName := range rulesOf {
		c := t.Chains[chainName]
		if c == nil {
			continue
		}
		rules, err := conn.GetRules(table, &nftables.Chain{Name: chainName, Table: table})
		if err != nil {
			return nil, fmt.Errorf("listing %s chain %s: %w", f, chainName, err)
		}
		for _, r := range rules {
			c.Rules = append(c.Rules, ruleFromExprs(f, r.Exprs))
		}
	}
	return t, nil
}

// lookupNFTChains gets one chain of an iptables-nft table per family.
func lookupNFTChains(table, name string, families []Family, out map[Family]*Chain) error {
	for _, f := range families {
		family := uint8(unix.NFPROTO_IPV4)
		if f == IPv6 {
			family = unix.NFPROTO_IPV6
		}
		info, exists, err := nft.LookupChain(family, table, name)
		if err != nil {
			return fmt.Errorf("looking up %s chain %s: %w", f, name, err)
		}
		if !exists {
			out[f] = nil
			continue
		}
		c := &Chain{Name: name}
		if info.Policy != nil {
			c.Policy = "ACCEPT"
			if *info.Policy == 0 { // NF_DROP
				c.Policy = "DROP"
			}
		}
		out[f] = c
	}
	return nil
}

// ruleFromExprs recognises the expressions iptables-nft writes for the
// options this package models.
func ruleFromExprs(f Family, exprs []expr.Any) Rule {
	var r Rule
	srcOff, dstOff, addrLen := uint32(12), uint32(16), 4
	if f == IPv6 {
		srcOff, dstOff, addrLen = 8, 24, 16
	}
	for i := 0; i < len(exprs); i++ {
		switch e := exprs[i].(type) {
		case *expr.Counter:
		case *expr.Meta:
			cmp, ok := next[*expr.Cmp](exprs, i+1)
			if !ok || (e.Key != expr.MetaKeyIIFNAME && e.Key != expr.MetaKeyOIFNAME) {
				r.Opaque = true
				continue
			}
			i++
			name, not := ifaceOf(cmp)
			if e.Key == expr.MetaKeyIIFNAME {
				r.InIface, r.NotInIface = name, not
			} else {
				r.OutIface, r.NotOutIface = name, not
			}
		case *expr.Payload:
			if e.Base != expr.PayloadBaseNetworkHeader || (e.Offset != srcOff && e.Offset != dstOff) || int(e.Len) > addrLen {
				r.Opaque = true
				continue
			}
			ones := int(e.Len) * 8
			j := i + 1
			if bw, ok := next[*expr.Bitwise](exprs, j); ok {
				ones, _ = net.IPMask(bw.Mask).Size()
				j++
			}
			cmp, ok := next[*expr.Cmp](exprs, j)
			if !ok || cmp.Op != expr.CmpOpEq {
				r.Opaque = true // "! -s" is not modelled
				continue
			}
			i = j
			ip := make(net.IP, addrLen)
			copy(ip, cmp.Data)
			n := &net.IPNet{IP: ip, Mask: net.CIDRMask(ones, addrLen*8)}
			if e.Offset == srcOff {
				r.Source = n
			} else {
				r.Destination = n
			}
		case *expr.Ct:
			// Native "ct state" (newer iptables-nft): load, bitwise, cmp != 0.
			bw, ok1 := next[*expr.Bitwise](exprs, i+1)
			cmp, ok2 := next[*expr.Cmp](exprs, i+2)
			if e.Key != expr.CtKeySTATE || !ok1 || !ok2 || cmp.Op != expr.CmpOpNeq || len(bw.Mask) < 1 {
				r.Opaque = true
				continue
			}
			i += 2
			r.CtState = nftCtStates(bw.Mask)
		case *expr.Match:
			switch info := e.Info.(type) {
			case *xt.Comment:
				r.Comment = string(*info)
			case *xt.ConntrackMtinfo3:
				r.CtState = xtCtStates(&info.ConntrackMtinfo2)
			case *xt.ConntrackMtinfo2:
				r.CtState = xtCtStates(info)
			default:
				r.Opaque = true
			}
			if e.Name == "conntrack" && r.CtState == "" {
				r.Opaque = true
			}
		case *expr.Verdict:
			switch e.Kind {
			case expr.VerdictAccept:
				r.Target = "ACCEPT"
			case expr.VerdictDrop:
				r.Target = "DROP"
			case expr.VerdictReturn:
				r.Target = "RETURN"
			case expr.VerdictJump:
				r.Target = e.Chain
			default:
				r.Target, r.Opaque = e.Chain, true
			}
		case *expr.Target:
			r.Target, r.Opaque = e.Name, true
		default:
			r.Opaque = true
		}
	}
	return r
}

// next returns exprs[i] as a T, if it is one.
func next[T expr.Any](exprs []expr.Any, i int) (T, bool) {
	var zero T
	if i >= len(exprs) {
		return zero, false
	}
	e, ok := exprs[i].(T)
	return e, ok
}

// ifaceOf decodes an interface name comparison: a NUL-terminated name is
// exact, a bare prefix is iptables' "name+" wildcard.
func ifaceOf(cmp *expr.Cmp) (string, bool) {
	not := cmp.Op == expr.CmpOpNeq
	if i := bytes.IndexByte(cmp.Data, 0); i >= 0 {
		return string(cmp.Data[:i]), not
	}
	return string(cmp.Data) + "+", not
}

// stateNames are the conntrack states in the order iptables prints them,
// with their xt_conntrack bits.
var stateNames = []struct {
	name string
	xt   uint16
}{
	{"INVALID", 1}, {"NEW", 8}, {"RELATED", 4}, {"ESTABLISHED", 2},
	{"UNTRACKED", 256}, {"SNAT", 64}, {"DNAT", 128},
}

// xtCtStates renders the state match of an xt_conntrack info, or "" when it
// matches anything else (addresses, status, inverted states).
func xtCtStates(info *xt.ConntrackMtinfo2) string {
	const stateFlag = 1 // XT_CONNTRACK_STATE
	if info.MatchFlags != stateFlag || info.InvertFlags != 0 {
		return ""
	}
	var names []string
	for _, s := range stateNames {
		if info.StateMask&s.xt != 0 {
			names = append(names, s.name)
		}
	}
	return strings.Join(names, ",")
}

// nftCtStates renders a native ct state mask; its UNTRACKED bit differs
// from xt_conntrack's.
func nftCtStates(mask []byte) string {
	m := uint16(mask[0])
	if len(mask) > 1 {
		m |= uint16(mask[1]) << 8
	}
	xtMask := m &^ 64
	if m&64 != 0 {
		xtMask |= 256
	}
	return xtCtStates(&xt.ConntrackMtinfo2{ConntrackMtinfoBase: xt.ConntrackMtinfoBase{MatchFlags: 1}, StateMask: xtMask})
}
