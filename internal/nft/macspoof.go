package nft

import (
	"bytes"
	"fmt"
	"net"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// MAC spoof check program, in table bridge cnikit:
//
//	map macspoof { type ifname : verdict }    # host port : jump <port chain>
//	chain prerouting { type filter hook prerouting priority -300
//	    iifname vmap @macspoof }
//	chain spoof-<attachment key> {             # one per attachment
//	    ether saddr <container MAC> return
//	    drop }
//
// Frames a container sends into the bridge through its host port must carry
// the container's MAC. An attachment adds its chain and one map element,
// commented with Attachment.Comment; DEL and GC remove both. An ADD sends
// only those, plus the table, map and base chain when they are absent
// (SetAttachmentRules); GC rewrites the base chain.
const (
	// MacSpoofChain is the bridge prerouting base chain.
	MacSpoofChain = "prerouting"
	// MacSpoofMap maps host port names to their attachment's chain.
	MacSpoofMap = "macspoof"
	// macSpoofPrefix starts the name of each attachment's chain.
	macSpoofPrefix = "spoof-"
)

var (
	bridgeTable = &nftables.Table{Family: nftables.TableFamilyBridge, Name: TableName}
	// The program's map: only read, a batch that creates it adds a copy
	// (addSetCopy). Names are strings, which nft stores and prints in host
	// byte order.
	spoofMap = &nftables.Set{Table: bridgeTable, Name: MacSpoofMap, IsMap: true, KeyType: nftables.TypeIFName,
		DataType: nftables.TypeVerdict, KeyByteOrder: binaryutil.NativeEndian}
)

// SpoofElement is one element of the MAC spoof check map.
type SpoofElement struct {
	Port    string // the host port (veth) name
	Chain   string
	Comment string
}

// MacSpoofChainName names the attachment's chain.
func MacSpoofChainName(a Attachment) string { return macSpoofPrefix + a.Key() }

// ifnameKey is a name as nftables' ifname type stores it: 16 bytes, NUL padded.
func ifnameKey(name string) []byte {
	key := make([]byte, unix.IFNAMSIZ)
	copy(key, name)
	return key
}

// queueMacSpoofBase queues the table, the map and the base chain, rewritten
// so that it converges to the program above.
func (c *Conn) queueMacSpoofBase() error {
	c.nft.AddTable(bridgeTable)
	m, err := c.addSetCopy(spoofMap)
	if err != nil {
		return err
	}
	policy := nftables.ChainPolicyAccept
	base := c.nft.AddChain(&nftables.Chain{
		Table: bridgeTable, Name: MacSpoofChain, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRef(-300), Policy: &policy,
	})
	c.nft.FlushChain(base)
	c.nft.AddRule(&nftables.Rule{Table: bridgeTable, Chain: base, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Lookup{SourceRegister: 1, SetName: m.Name, SetID: m.ID, IsDestRegSet: true, DestRegister: 0},
	}})
	c.queued++
	return nil
}

// queueMacSpoofProgram queues the table, map and base chain: all of them
// (rewritten) with all, otherwise only when the base chain does not exist.
func (c *Conn) queueMacSpoofProgram(all bool) error {
	if !all {
		_, exists, err := LookupChain(unix.NFPROTO_BRIDGE, TableName, MacSpoofChain)
		if err != nil || exists {
			return err
		}
	}
	return c.queueMacSpoofBase()
}

// queueMacSpoofEntries queues the attachment's chain (rewritten) and its
// element for port, the host port of the container interface that has mac.
// The Flush fails with an error IsNotFound recognises when the program is
// not there (queueMacSpoofProgram), and with one IsClash recognises when
// port's element jumps to another attachment's chain (a leaked attachment
// whose host port had the same name): queue again with evict then, which
// looks port's element up and deletes it first.
func (c *Conn) queueMacSpoofEntries(a Attachment, port string, mac net.HardwareAddr, evict bool) error {
	name := MacSpoofChainName(a)
	key := ifnameKey(port)
	if evict {
		if _, found, err := lookupElement(unix.NFPROTO_BRIDGE, TableName, MacSpoofMap, key); err != nil {
			return fmt.Errorf("looking up the MAC spoof check of %s: %w", port, err)
		} else if found {
			if err := c.nft.SetDeleteElements(spoofMap, []nftables.SetElement{{Key: key}}); err != nil {
				return fmt.Errorf("queueing removal of MAC spoof check of %s: %w", port, err)
			}
			c.queued++
		}
	}
	chain := c.nft.AddChain(&nftables.Chain{Table: bridgeTable, Name: name})
	c.nft.FlushChain(chain)
	c.nft.AddRule(&nftables.Rule{Table: bridgeTable, Chain: chain, Exprs: []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: 6, Len: 6},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte(mac)},
		&expr.Verdict{Kind: expr.VerdictReturn},
	}})
	c.nft.AddRule(&nftables.Rule{Table: bridgeTable, Chain: chain, Exprs: []expr.Any{
		&expr.Verdict{Kind: expr.VerdictDrop},
	}})
	jump := &expr.Verdict{Kind: expr.VerdictJump, Chain: name}
	if err := c.nft.SetAddElements(spoofMap, []nftables.SetElement{{Key: key, VerdictData: jump, Comment: a.Comment()}}); err != nil {
		return fmt.Errorf("queueing MAC spoof check of %s: %w", port, err)
	}
	c.queued++
	return nil
}

// delMacSpoof queues the deletion of the attachment's element (host port
// port) and chain. The Flush fails with an error IsNotFound recognises when
// either is missing; fall back to delMacSpoofOf then.
func (c *Conn) delMacSpoof(a Attachment, port string) error {
	return c.queueSpoofDelete([]SpoofElement{{Port: port, Chain: MacSpoofChainName(a)}}, true)
}

// delMacSpoofOf finds the attachment's element by its comment, and its chain
// by name, and queues the deletion of what exists. It reports how many
// objects it found.
func (c *Conn) delMacSpoofOf(a Attachment) (int, error) {
	mine, err := c.findMacSpoof(a)
	if err != nil {
		return 0, err
	}
	if err := c.queueSpoofDelete(mine, false); err != nil {
		return 0, err
	}
	name := MacSpoofChainName(a)
	_, exists, err := LookupChain(unix.NFPROTO_BRIDGE, TableName, name)
	if err != nil || !exists {
		return len(mine), err
	}
	c.nft.DelChain(&nftables.Chain{Table: bridgeTable, Name: name})
	c.queued++
	return len(mine) + 1, nil
}

// gcMacSpoof queues the deletion of network's elements and chains whose
// attachment is not in keep, and reports how many attachments that is.
func (c *Conn) gcMacSpoof(network string, keep KeepSet) (int, error) {
	elems, err := c.ListMacSpoof()
	if err != nil {
		return 0, err
	}
	var stale []SpoofElement
	for _, e := range elems {
		if keep.stale(network, e.Comment) {
			stale = append(stale, e)
		}
	}
	return len(stale), c.queueSpoofDelete(stale, true)
}

// restoreMacSpoof queues the rewrite of the base chain when the map exists
// (GC uses it; see restoreMasquerade).
func (c *Conn) restoreMacSpoof() error {
	if inUse, err := c.hasSet(bridgeTable, MacSpoofMap); err != nil || !inUse {
		return err
	}
	return c.queueMacSpoofBase()
}

// queueSpoofDelete queues the removal of elements (one message), and of
// their chains too when withChains (after the elements, which hold a
// reference to them).
func (c *Conn) queueSpoofDelete(elems []SpoofElement, withChains bool) error {
	if len(elems) == 0 {
		return nil
	}
	keys := make([]nftables.SetElement, len(elems))
	for i, e := range elems {
		keys[i] = nftables.SetElement{Key: ifnameKey(e.Port)}
	}
	if err := c.nft.SetDeleteElements(spoofMap, keys); err != nil {
		return fmt.Errorf("queueing removal of %d MAC spoof checks: %w", len(keys), err)
	}
	c.queued++
	if withChains {
		for _, e := range elems {
			if strings.HasPrefix(e.Chain, macSpoofPrefix) {
				c.nft.DelChain(&nftables.Chain{Table: bridgeTable, Name: e.Chain})
			}
		}
	}
	return nil
}

// findMacSpoof returns the attachment's elements, found by their comment.
func (c *Conn) findMacSpoof(a Attachment) ([]SpoofElement, error) {
	elems, err := c.ListMacSpoof()
	if err != nil {
		return nil, err
	}
	var mine []SpoofElement
	for _, e := range elems {
		if strings.HasPrefix(e.Comment, a.Key()) {
			mine = append(mine, e)
		}
	}
	return mine, nil
}

// ListMacSpoof returns every element of the MAC spoof check map; none when the
// table does not exist.
func (c *Conn) ListMacSpoof() ([]SpoofElement, error) {
	elems, err := c.nft.GetSetElements(spoofMap)
	if IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing nftables map bridge %s %s: %w", TableName, MacSpoofMap, err)
	}
	out := make([]SpoofElement, 0, len(elems))
	for _, e := range elems {
		se := SpoofElement{Port: strings.TrimRight(string(e.Key), "\x00"), Comment: e.Comment, Chain: verdictChain(e.Val)}
		if e.VerdictData != nil {
			se.Chain = e.VerdictData.Chain
		}
		out = append(out, se)
	}
	return out, nil
}

// checkMacSpoofChain verifies that the attachment's chain lets exactly mac
// through: its rules are "ether saddr <mac> return" and "drop".
func (c *Conn) checkMacSpoofChain(a Attachment, mac net.HardwareAddr) error {
	name := MacSpoofChainName(a)
	rules, err := c.nft.GetRules(bridgeTable, &nftables.Chain{Table: bridgeTable, Name: name})
	if IsNotFound(err) {
		return fmt.Errorf("nftables chain bridge %s %s (MAC spoof check of %s/%s) is missing", TableName, name, a.ContainerID, a.IfName)
	}
	if err != nil {
		return fmt.Errorf("listing nftables chain bridge %s %s: %w", TableName, name, err)
	}
	intact := len(rules) == 2 && len(rules[0].Exprs) == 3 && len(rules[1].Exprs) == 1
	if intact {
		cmp, isCmp := rules[0].Exprs[1].(*expr.Cmp)
		ret, isRet := rules[0].Exprs[2].(*expr.Verdict)
		drop, isDrop := rules[1].Exprs[0].(*expr.Verdict)
		intact = isCmp && cmp.Op == expr.CmpOpEq && bytes.Equal(cmp.Data, mac) &&
			isRet && ret.Kind == expr.VerdictReturn && isDrop && drop.Kind == expr.VerdictDrop
	}
	if !intact {
		return fmt.Errorf("nftables chain bridge %s %s does not let exactly MAC %s through", TableName, name, mac)
	}
	return nil
}

// macSpoofProgramIntact reports whether the base chain has its one rule,
// the lookup in the map.
func (c *Conn) macSpoofProgramIntact() (bool, error) {
	rules, err := c.nft.GetRules(bridgeTable, &nftables.Chain{Table: bridgeTable, Name: MacSpoofChain})
	if IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("listing nftables chain bridge %s %s: %w", TableName, MacSpoofChain, err)
	}
	return len(rules) == 1 && endsWithLookup(rules[0], MacSpoofMap), nil
}

// endsWithLookup reports whether rule ends with a verdict map lookup in set.
func endsWithLookup(rule *nftables.Rule, set string) bool {
	if len(rule.Exprs) == 0 {
		return false
	}
	l, ok := rule.Exprs[len(rule.Exprs)-1].(*expr.Lookup)
	return ok && l.SetName == set && l.IsDestRegSet
}
