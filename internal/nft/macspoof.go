package nft

import (
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
// commented with Attachment.Comment; DEL and GC remove both.
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
	// Names are strings, which nft stores and prints in host byte order.
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

// AddMacSpoof queues the MAC spoof check of the attachment whose host port is
// port and whose container interface has mac.
func (c *Conn) AddMacSpoof(a Attachment, port string, mac net.HardwareAddr) error {
	c.nft.AddTable(bridgeTable)
	spoofMap.ID = 0
	if err := c.nft.AddSet(spoofMap, nil); err != nil {
		return fmt.Errorf("queueing map %s: %w", spoofMap.Name, err)
	}
	policy := nftables.ChainPolicyAccept
	base := c.nft.AddChain(&nftables.Chain{
		Table: bridgeTable, Name: MacSpoofChain, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRef(-300), Policy: &policy,
	})
	c.nft.FlushChain(base)
	c.nft.AddRule(&nftables.Rule{Table: bridgeTable, Chain: base, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Lookup{SourceRegister: 1, SetName: spoofMap.Name, SetID: spoofMap.ID, IsDestRegSet: true, DestRegister: 0},
	}})

	name := MacSpoofChainName(a)
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
	key := ifnameKey(port)
	if err := c.nft.SetAddElements(spoofMap, []nftables.SetElement{{Key: key, VerdictData: jump, Comment: a.Comment()}}); err != nil {
		return fmt.Errorf("queueing MAC spoof check of %s: %w", port, err)
	}
	c.queued++
	return nil
}

// EvictMacSpoof queues the deletion of the element of port if there is one
// (a stale attachment whose host port had the same name), for the retry after
// IsClash.
func (c *Conn) EvictMacSpoof(port string) error {
	elems, err := c.ListMacSpoof()
	if err != nil {
		return err
	}
	for _, e := range elems {
		if e.Port == port {
			return c.queueSpoofDelete([]SpoofElement{e}, false)
		}
	}
	return nil
}

// DelMacSpoof queues the deletion of the attachment's element (host port
// port) and chain. The Flush fails with an error IsNotFound recognises when
// either is missing; fall back to DelMacSpoofOf then.
func (c *Conn) DelMacSpoof(a Attachment, port string) error {
	return c.queueSpoofDelete([]SpoofElement{{Port: port, Chain: MacSpoofChainName(a)}}, true)
}

// DelMacSpoofOf finds the attachment's element by its comment, and its chain
// by name, and queues the deletion of what exists. It reports how many
// objects it found.
func (c *Conn) DelMacSpoofOf(a Attachment) (int, error) {
	elems, err := c.ListMacSpoof()
	if err != nil {
		return 0, err
	}
	key := a.Key()
	var mine []SpoofElement
	for _, e := range elems {
		if strings.HasPrefix(e.Comment, key) {
			mine = append(mine, e)
		}
	}
	if err := c.queueSpoofDelete(mine, false); err != nil {
		return 0, err
	}
	name := MacSpoofChainName(a)
	if _, err := c.nft.ListChain(bridgeTable, name); err != nil {
		if IsNotFound(err) {
			return len(mine), nil
		}
		return 0, fmt.Errorf("looking up nftables chain %s: %w", name, err)
	}
	c.nft.DelChain(&nftables.Chain{Table: bridgeTable, Name: name})
	c.queued++
	return len(mine) + 1, nil
}

// GCMacSpoof queues the deletion of network's elements and chains whose
// attachment is not in keep, and reports how many attachments that is.
func (c *Conn) GCMacSpoof(network string, keep KeepSet) (int, error) {
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

// queueSpoofDelete queues the removal of elements, and of their chains too
// when withChains (after the element, which holds a reference to the chain).
func (c *Conn) queueSpoofDelete(elems []SpoofElement, withChains bool) error {
	for _, e := range elems {
		if err := c.nft.SetDeleteElements(spoofMap, []nftables.SetElement{{Key: ifnameKey(e.Port)}}); err != nil {
			return fmt.Errorf("queueing removal of MAC spoof check of %s: %w", e.Port, err)
		}
		c.queued++
		if withChains && strings.HasPrefix(e.Chain, macSpoofPrefix) {
			c.nft.DelChain(&nftables.Chain{Table: bridgeTable, Name: e.Chain})
		}
	}
	return nil
}

// FindMacSpoof returns the attachment's elements, found by their comment.
func (c *Conn) FindMacSpoof(a Attachment) ([]SpoofElement, error) {
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
