package nft

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Masquerade program, in table inet cnikit:
//
//	map masq4 { type ipv4_addr : verdict }   # container IP : jump <subnet chain>
//	map masq6 { type ipv6_addr : verdict }
//	chain postrouting { type nat hook postrouting priority srcnat
//	    ip daddr 224.0.0.0/4 return
//	    ip6 daddr ff00::/8 return
//	    ip saddr vmap @masq4
//	    ip6 saddr vmap @masq6 }
//	chain masq-<net hash>-<subnet hash> {      # one per (network, subnet)
//	    ip daddr != <subnet> masquerade }
//
// An attachment adds one map element per IP, commented with Attachment.Comment.
// An ADD sends only those elements, plus a subnet chain that is missing and
// the table, maps and base chain when they are absent (SetAttachmentRules);
// GC rewrites the base chain and the network's subnet chains, so that a
// damaged program converges again. Subnet chains are never removed, like the
// bridge itself.
const (
	// MasqueradeChain is the nat postrouting base chain.
	MasqueradeChain = "postrouting"
	// MasqueradeMap4 and MasqueradeMap6 map container addresses to their
	// subnet's chain.
	MasqueradeMap4 = "masq4"
	MasqueradeMap6 = "masq6"
	// masqSubnetPrefix starts the name of each (network, subnet) chain.
	masqSubnetPrefix = "masq-"
)

var inetTable = &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}

// The program's maps. They are only read: a batch that creates them adds
// copies (addSetCopy).
var (
	masqMap4 = &nftables.Set{Table: inetTable, Name: MasqueradeMap4, IsMap: true, KeyType: nftables.TypeIPAddr, DataType: nftables.TypeVerdict}
	masqMap6 = &nftables.Set{Table: inetTable, Name: MasqueradeMap6, IsMap: true, KeyType: nftables.TypeIP6Addr, DataType: nftables.TypeVerdict}
)

// lastSetID numbers the sets that batches create. google/nftables numbers
// the sets it is given without an ID from a package variable it does not
// guard, which plugins running in-process at the same time would race on.
var lastSetID atomic.Uint32

// addSetCopy queues the creation of a copy of s with an ID of its own (a
// no-op in the kernel when the set exists), and returns the copy, whose ID
// the batch's rules refer to. s itself is never written.
func (c *Conn) addSetCopy(s *nftables.Set) (*nftables.Set, error) {
	set := *s
	set.ID = lastSetID.Add(1)
	if err := c.nft.AddSet(&set, nil); err != nil {
		return nil, fmt.Errorf("queueing set %s: %w", s.Name, err)
	}
	return &set, nil
}

// MasqElement is one masquerade map element: a container address, the chain
// it jumps to and its comment.
type MasqElement struct {
	IP      net.IP
	Chain   string
	Comment string
}

// SubnetChain names the chain that masquerades traffic of network's subnet.
func SubnetChain(network string, subnet *net.IPNet) string {
	return masqSubnetPrefix + NetworkKey(network) + "-" + hash16(subnet.String())
}

// masqTarget is an address to masquerade and the chain of its subnet.
type masqTarget struct {
	ip     net.IP
	subnet *net.IPNet
	chain  string
}

// masqTargets pairs each of network's addresses (with their prefix length)
// with its subnet's chain.
func masqTargets(network string, addrs []net.IPNet) []masqTarget {
	out := make([]masqTarget, 0, len(addrs))
	for _, addr := range addrs {
		subnet := &net.IPNet{IP: addr.IP.Mask(addr.Mask), Mask: addr.Mask}
		out = append(out, masqTarget{ip: addr.IP, subnet: subnet, chain: SubnetChain(network, subnet)})
	}
	return out
}

// queueMasqueradeBase queues the table, the maps and the base chain,
// rewritten (flushed and filled in the same transaction) so that it
// converges to the program above.
func (c *Conn) queueMasqueradeBase() error {
	c.nft.AddTable(inetTable)
	m4, err := c.addSetCopy(masqMap4)
	if err != nil {
		return err
	}
	m6, err := c.addSetCopy(masqMap6)
	if err != nil {
		return err
	}
	base := c.nft.AddChain(&nftables.Chain{
		Table: inetTable, Name: MasqueradeChain, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource,
	})
	c.nft.FlushChain(base)
	v4, v6 := []byte{unix.NFPROTO_IPV4}, []byte{unix.NFPROTO_IPV6}
	rules := [][]expr.Any{
		// ip daddr 224.0.0.0/4 return
		append(nfproto(v4),
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte{0xf0, 0, 0, 0}, Xor: []byte{0, 0, 0, 0}},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0xe0, 0, 0, 0}},
			&expr.Verdict{Kind: expr.VerdictReturn}),
		// ip6 daddr ff00::/8 return
		append(nfproto(v6),
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 24, Len: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0xff}},
			&expr.Verdict{Kind: expr.VerdictReturn}),
		// ip saddr vmap @masq4
		append(nfproto(v4),
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
			&expr.Lookup{SourceRegister: 1, SetName: m4.Name, SetID: m4.ID, IsDestRegSet: true, DestRegister: 0}),
		// ip6 saddr vmap @masq6
		append(nfproto(v6),
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 8, Len: 16},
			&expr.Lookup{SourceRegister: 1, SetName: m6.Name, SetID: m6.ID, IsDestRegSet: true, DestRegister: 0}),
	}
	for _, exprs := range rules {
		c.nft.AddRule(&nftables.Rule{Table: inetTable, Chain: base, Exprs: exprs})
	}
	c.queued++
	return nil
}

// masqueradeBaseRules is the number of rules of the base chain.
const masqueradeBaseRules = 4

func nfproto(family []byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: family},
	}
}

// queueSubnetChain queues network's chain for subnet, rewritten: masquerade
// what leaves the subnet.
func (c *Conn) queueSubnetChain(network string, subnet *net.IPNet) {
	chain := c.nft.AddChain(&nftables.Chain{Table: inetTable, Name: SubnetChain(network, subnet)})
	c.nft.FlushChain(chain)
	offset, size := uint32(16), uint32(4) // ip daddr
	family := []byte{unix.NFPROTO_IPV4}
	addr := subnet.IP.To4()
	if addr == nil {
		offset, size, addr = 24, 16, subnet.IP.To16()
		family = []byte{unix.NFPROTO_IPV6}
	}
	mask := subnet.Mask
	if len(mask) != len(addr) {
		mask = net.CIDRMask(maskOnes(subnet.Mask), len(addr)*8)
	}
	// The family match is redundant (only the family's map jumps here) but
	// lets nft print the rule as "ip daddr != <subnet> masquerade".
	c.nft.AddRule(&nftables.Rule{Table: inetTable, Chain: chain, Exprs: append(nfproto(family),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: size},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: size, Mask: []byte(mask), Xor: make([]byte, size)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte(addr.Mask(mask))},
		&expr.Masq{},
	)})
	c.queued++
}

func maskOnes(m net.IPMask) int {
	ones, _ := m.Size()
	return ones
}

// queueMasqueradeProgram queues the parts of the program that targets need.
// With all, everything is queued (and rewritten); otherwise only what does
// not exist, found with one lookup per chain.
func (c *Conn) queueMasqueradeProgram(network string, targets []masqTarget, all bool) error {
	baseExists := false
	if !all {
		var err error
		if _, baseExists, err = LookupChain(unix.NFPROTO_INET, TableName, MasqueradeChain); err != nil {
			return err
		}
	}
	if !baseExists {
		if err := c.queueMasqueradeBase(); err != nil {
			return err
		}
	}
	queued := map[string]bool{}
	for _, t := range targets {
		if queued[t.chain] {
			continue
		}
		queued[t.chain] = true
		if baseExists {
			_, exists, err := LookupChain(unix.NFPROTO_INET, TableName, t.chain)
			if err != nil {
				return err
			}
			if exists {
				continue
			}
		}
		c.queueSubnetChain(network, t.subnet)
	}
	return nil
}

// queueMasqueradeEntries queues the attachment's elements, one message per
// map: an address without an element gets one; one whose element belongs
// to someone else (another attachment's comment, another subnet's chain: a
// leaked attachment that held the address) gets it deleted and added again
// with this attachment's comment; one already in place is left alone. Each
// address is looked up first (one request on a blocking socket), which costs
// less than the delete and add that would otherwise make sure of the
// comment: the kernel keeps an existing element with the same verdict as it
// is, comment included.
//
// The Flush fails with an error IsNotFound recognises when the program is
// not there (queueMasqueradeProgram), and with IsNotFound or IsClash when an
// element changed after its lookup: queue everything again then.
func (c *Conn) queueMasqueradeEntries(a Attachment, targets []masqTarget) error {
	comment := a.Comment()
	adds, dels := map[*nftables.Set][]nftables.SetElement{}, map[*nftables.Set][]nftables.SetElement{}
	for _, t := range targets {
		set, key := familyMap(t.ip, masqMap4, masqMap6)
		held, found, err := lookupElement(unix.NFPROTO_INET, TableName, set.Name, key)
		if err != nil {
			return fmt.Errorf("looking up the masquerade of %s: %w", t.ip, err)
		}
		if found && held.chain == t.chain && held.comment == comment {
			continue
		}
		if found {
			dels[set] = append(dels[set], nftables.SetElement{Key: key})
		}
		jump := &expr.Verdict{Kind: expr.VerdictJump, Chain: t.chain}
		adds[set] = append(adds[set], nftables.SetElement{Key: key, VerdictData: jump, Comment: comment})
	}
	for _, set := range []*nftables.Set{masqMap4, masqMap6} {
		if list := dels[set]; len(list) > 0 {
			if err := c.nft.SetDeleteElements(set, list); err != nil {
				return fmt.Errorf("queueing removal of %d masquerade elements: %w", len(list), err)
			}
			c.queued++
		}
		if list := adds[set]; len(list) > 0 {
			if err := c.nft.SetAddElements(set, list); err != nil {
				return fmt.Errorf("queueing masquerade of %s: %w", a.ContainerID, err)
			}
			c.queued++
		}
	}
	return nil
}

// IsClash reports whether a Flush failed because an element to add already
// exists with other data.
func IsClash(err error) bool { return isClash(err) }

// delMasqueradeIPs queues the deletion of the elements of ips. The Flush
// fails with an error IsNotFound recognises when one of them is missing;
// fall back to delMasqueradeOf then.
func (c *Conn) delMasqueradeIPs(ips []net.IP) error {
	elems := make([]MasqElement, len(ips))
	for i, ip := range ips {
		elems[i] = MasqElement{IP: ip}
	}
	return c.queueMasqDelete(elems)
}

// delMasqueradeOf finds the attachment's elements by their comment and
// queues their deletion. It reports how many it found.
func (c *Conn) delMasqueradeOf(a Attachment) (int, error) {
	elems, err := c.findMasquerade(a)
	if err != nil {
		return 0, err
	}
	return len(elems), c.queueMasqDelete(elems)
}

// queueMasqDelete queues one message per map.
func (c *Conn) queueMasqDelete(elems []MasqElement) error {
	keys := map[*nftables.Set][]nftables.SetElement{}
	for _, e := range elems {
		set, key := familyMap(e.IP, masqMap4, masqMap6)
		keys[set] = append(keys[set], nftables.SetElement{Key: key})
	}
	for _, set := range []*nftables.Set{masqMap4, masqMap6} {
		if list := keys[set]; len(list) > 0 {
			if err := c.nft.SetDeleteElements(set, list); err != nil {
				return fmt.Errorf("queueing removal of %d masquerade elements: %w", len(list), err)
			}
			c.queued++
		}
	}
	return nil
}

// findMasquerade returns the attachment's elements, found by their comment.
func (c *Conn) findMasquerade(a Attachment) ([]MasqElement, error) {
	elems, err := c.ListMasquerade()
	key := a.Key()
	return slices.DeleteFunc(elems, func(e MasqElement) bool { return !strings.HasPrefix(e.Comment, key) }), err
}

// ListMasquerade returns every element of both masquerade maps; none when the
// table does not exist.
func (c *Conn) ListMasquerade() ([]MasqElement, error) {
	return listAddrVerdicts[MasqElement](c, masqMap4, masqMap6)
}

// gcMasquerade queues the deletion of network's elements (of elems, the
// maps' elements) whose attachment is not in keep, and reports how many.
func (c *Conn) gcMasquerade(elems []MasqElement, network string, keep KeepSet) (int, error) {
	var stale []MasqElement
	for _, e := range elems {
		if keep.stale(network, e.Comment) {
			stale = append(stale, e)
		}
	}
	return len(stale), c.queueMasqDelete(stale)
}

// restoreMasquerade queues the rewrite of the program when its maps exist:
// the base chain, and the chains of network's subnets that elements of kept
// attachments (of elems, the maps' elements) jump to. GC uses it, so that a
// program someone changed converges again without making every ADD pay for
// the rewrite.
func (c *Conn) restoreMasquerade(elems []MasqElement, network string, keep KeepSet) error {
	if inUse, err := c.hasSet(inetTable, MasqueradeMap4); err != nil || !inUse {
		return err
	}
	if err := c.queueMasqueradeBase(); err != nil {
		return err
	}
	prefix := masqSubnetPrefix + NetworkKey(network) + "-"
	done := map[string]bool{}
	for _, e := range elems {
		if done[e.Chain] || !strings.HasPrefix(e.Chain, prefix) || keep.stale(network, e.Comment) {
			continue
		}
		done[e.Chain] = true
		if subnet := subnetOfChain(network, e.IP, e.Chain); subnet != nil {
			c.queueSubnetChain(network, subnet)
		}
	}
	return nil
}

// subnetOfChain finds the subnet of ip whose chain of network is named
// chain, trying each prefix length: chain names carry only a hash of it.
func subnetOfChain(network string, ip net.IP, chain string) *net.IPNet {
	bits := 128
	if v4 := ip.To4(); v4 != nil {
		ip, bits = v4, 32
	}
	for ones := bits; ones >= 0; ones-- {
		mask := net.CIDRMask(ones, bits)
		subnet := &net.IPNet{IP: ip.Mask(mask), Mask: mask}
		if SubnetChain(network, subnet) == chain {
			return subnet
		}
	}
	return nil
}

// hasSet reports whether table has a set called name.
func (c *Conn) hasSet(table *nftables.Table, name string) (bool, error) {
	_, err := c.nft.GetSetByName(table, name)
	if IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("looking up nftables set %s %s: %w", table.Name, name, err)
	}
	return true, nil
}

// verdictChain extracts the chain name from an element's verdict, as
// google/nftables returns it: the attributes inside NFTA_DATA_VERDICT.
func verdictChain(data []byte) string {
	for len(data) >= 4 {
		l := int(data[0]) | int(data[1])<<8
		typ := (int(data[2]) | int(data[3])<<8) & 0x3fff
		if l < 4 || l > len(data) {
			return ""
		}
		if typ == unix.NFTA_VERDICT_CHAIN {
			return strings.TrimRight(string(data[4:l]), "\x00")
		}
		next := (l + 3) &^ 3
		if next > len(data) {
			return ""
		}
		data = data[next:]
	}
	return ""
}

// masqueradeProgramIntact reports whether the base chain has its rules, the
// last two being the lookups in the maps.
func (c *Conn) masqueradeProgramIntact() (bool, error) {
	rules, err := c.nft.GetRules(inetTable, &nftables.Chain{Table: inetTable, Name: MasqueradeChain})
	if IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("listing nftables chain inet %s %s: %w", TableName, MasqueradeChain, err)
	}
	return len(rules) == masqueradeBaseRules && endsWithLookup(rules[2], MasqueradeMap4) && endsWithLookup(rules[3], MasqueradeMap6), nil
}

// checkSubnetChain verifies that the chain of t's subnet masquerades what
// leaves the subnet: one rule, comparing the destination with the subnet,
// then masquerade.
func (c *Conn) checkSubnetChain(t masqTarget) error {
	rules, err := c.nft.GetRules(inetTable, &nftables.Chain{Table: inetTable, Name: t.chain})
	if IsNotFound(err) {
		return fmt.Errorf("nftables chain inet %s %s (masquerade of %s) is missing", TableName, t.chain, t.subnet)
	}
	if err != nil {
		return fmt.Errorf("listing nftables chain inet %s %s: %w", TableName, t.chain, err)
	}
	network := t.subnet.IP
	if v4 := network.To4(); v4 != nil {
		network = v4
	}
	intact := len(rules) == 1 && len(rules[0].Exprs) >= 2
	if intact {
		exprs := rules[0].Exprs
		cmp, isCmp := exprs[len(exprs)-2].(*expr.Cmp)
		_, isMasq := exprs[len(exprs)-1].(*expr.Masq)
		intact = isCmp && cmp.Op == expr.CmpOpNeq && net.IP(cmp.Data).Equal(network) && isMasq
	}
	if !intact {
		return fmt.Errorf("nftables chain inet %s %s does not masquerade what leaves %s (GC restores it)", TableName, t.chain, t.subnet)
	}
	return nil
}
