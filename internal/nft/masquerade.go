package nft

import (
	"fmt"
	"net"
	"strings"

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
// The subnet chains and the base chain are rewritten (flush + add, in the same
// transaction) by every ADD so they converge to this program; they are never
// removed, like the bridge itself.
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

var (
	masqMap4 = &nftables.Set{Table: inetTable, Name: MasqueradeMap4, IsMap: true, KeyType: nftables.TypeIPAddr, DataType: nftables.TypeVerdict}
	masqMap6 = &nftables.Set{Table: inetTable, Name: MasqueradeMap6, IsMap: true, KeyType: nftables.TypeIP6Addr, DataType: nftables.TypeVerdict}
)

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

// mapFor returns the map holding ip and ip's key bytes.
func mapFor(ip net.IP) (*nftables.Set, []byte) {
	if v4 := ip.To4(); v4 != nil {
		return masqMap4, []byte(v4)
	}
	return masqMap6, []byte(ip.To16())
}

// queueMasqueradeBase queues the table, maps and base chain.
func (c *Conn) queueMasqueradeBase() error {
	c.nft.AddTable(inetTable)
	for _, m := range []*nftables.Set{masqMap4, masqMap6} {
		m.ID = 0 // a fresh ID per batch, so references resolve within it
		if err := c.nft.AddSet(m, nil); err != nil {
			return fmt.Errorf("queueing map %s: %w", m.Name, err)
		}
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
			&expr.Lookup{SourceRegister: 1, SetName: masqMap4.Name, SetID: masqMap4.ID, IsDestRegSet: true, DestRegister: 0}),
		// ip6 saddr vmap @masq6
		append(nfproto(v6),
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 8, Len: 16},
			&expr.Lookup{SourceRegister: 1, SetName: masqMap6.Name, SetID: masqMap6.ID, IsDestRegSet: true, DestRegister: 0}),
	}
	for _, exprs := range rules {
		c.nft.AddRule(&nftables.Rule{Table: inetTable, Chain: base, Exprs: exprs})
	}
	c.queued++
	return nil
}

func nfproto(family []byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: family},
	}
}

// queueSubnetChain queues network's chain for subnet: masquerade what leaves it.
func (c *Conn) queueSubnetChain(network string, subnet *net.IPNet) string {
	name := SubnetChain(network, subnet)
	chain := c.nft.AddChain(&nftables.Chain{Table: inetTable, Name: name})
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
	return name
}

func maskOnes(m net.IPMask) int {
	ones, _ := m.Size()
	return ones
}

// AddMasquerade queues the masquerade of the attachment's addresses (each with
// its prefix length): traffic from the address to anywhere outside its subnet,
// except multicast, leaves with the host's address.
//
// An element that already exists with the same verdict (a leaked attachment
// of the same subnet) is replaced, so that it carries this attachment's
// comment. One that exists with another verdict makes the Flush fail with an
// error IsClash recognises; queue EvictMasquerade before AddMasquerade then.
func (c *Conn) AddMasquerade(a Attachment, addrs []net.IPNet) error {
	if len(addrs) == 0 {
		return nil
	}
	if err := c.queueMasqueradeBase(); err != nil {
		return err
	}
	comment := a.Comment()
	chains := map[string]string{}
	for _, addr := range addrs {
		subnet := &net.IPNet{IP: addr.IP.Mask(addr.Mask), Mask: addr.Mask}
		chain, ok := chains[subnet.String()]
		if !ok {
			chain = c.queueSubnetChain(a.Network, subnet)
			chains[subnet.String()] = chain
		}
		set, key := mapFor(addr.IP)
		jump := &expr.Verdict{Kind: expr.VerdictJump, Chain: chain}
		// Add (a no-op when present), delete, add: the element ends up new
		// whether it existed or not, with this attachment's comment.
		steps := []func() error{
			func() error { return c.nft.SetAddElements(set, []nftables.SetElement{{Key: key, VerdictData: jump}}) },
			func() error { return c.nft.SetDeleteElements(set, []nftables.SetElement{{Key: key}}) },
			func() error {
				return c.nft.SetAddElements(set, []nftables.SetElement{{Key: key, VerdictData: jump, Comment: comment}})
			},
		}
		for _, step := range steps {
			if err := step(); err != nil {
				return fmt.Errorf("queueing masquerade of %s: %w", addr.IP, err)
			}
		}
		c.queued++
	}
	return nil
}

// IsClash reports whether a Flush failed because an element to add already
// exists with other data.
func IsClash(err error) bool { return isClash(err) }

// EvictMasquerade queues the deletion of the elements that hold addrs' keys
// now, whoever added them. It lists both maps (a cost that grows with the
// number of containers), so it is meant for the rare retry after IsClash.
func (c *Conn) EvictMasquerade(addrs []net.IPNet) error {
	elems, err := c.ListMasquerade()
	if err != nil {
		return err
	}
	want := map[string]bool{}
	for _, a := range addrs {
		want[a.IP.String()] = true
	}
	var evict []MasqElement
	for _, e := range elems {
		if want[e.IP.String()] {
			evict = append(evict, e)
		}
	}
	return c.queueMasqDelete(evict)
}

// DelMasqueradeIPs queues the deletion of the elements of ips. The Flush fails
// with an error IsNotFound recognises when one of them is missing; fall back
// to DelMasqueradeOf then.
func (c *Conn) DelMasqueradeIPs(ips []net.IP) error {
	elems := make([]MasqElement, len(ips))
	for i, ip := range ips {
		elems[i] = MasqElement{IP: ip}
	}
	return c.queueMasqDelete(elems)
}

// DelMasqueradeOf finds the attachment's elements by their comment and queues
// their deletion. It reports how many it found.
func (c *Conn) DelMasqueradeOf(a Attachment) (int, error) {
	elems, err := c.FindMasquerade(a)
	if err != nil {
		return 0, err
	}
	return len(elems), c.queueMasqDelete(elems)
}

// GCMasquerade queues the deletion of network's elements whose attachment is
// not in keep, and reports how many there are.
func (c *Conn) GCMasquerade(network string, keep KeepSet) (int, error) {
	elems, err := c.ListMasquerade()
	if err != nil {
		return 0, err
	}
	var stale []MasqElement
	for _, e := range elems {
		if keep.stale(network, e.Comment) {
			stale = append(stale, e)
		}
	}
	return len(stale), c.queueMasqDelete(stale)
}

func (c *Conn) queueMasqDelete(elems []MasqElement) error {
	for _, e := range elems {
		set, key := mapFor(e.IP)
		if err := c.nft.SetDeleteElements(set, []nftables.SetElement{{Key: key}}); err != nil {
			return fmt.Errorf("queueing removal of masquerade of %s: %w", e.IP, err)
		}
		c.queued++
	}
	return nil
}

// FindMasquerade returns the attachment's elements, found by their comment.
func (c *Conn) FindMasquerade(a Attachment) ([]MasqElement, error) {
	elems, err := c.ListMasquerade()
	if err != nil {
		return nil, err
	}
	key := a.Key()
	var mine []MasqElement
	for _, e := range elems {
		if strings.HasPrefix(e.Comment, key) {
			mine = append(mine, e)
		}
	}
	return mine, nil
}

// ListMasquerade returns every element of both masquerade maps; none when the
// table does not exist.
func (c *Conn) ListMasquerade() ([]MasqElement, error) {
	var out []MasqElement
	for _, m := range []*nftables.Set{masqMap4, masqMap6} {
		elems, err := c.nft.GetSetElements(m)
		if IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("listing nftables map %s %s: %w", TableName, m.Name, err)
		}
		for _, e := range elems {
			me := MasqElement{IP: net.IP(append([]byte(nil), e.Key...)), Comment: e.Comment}
			if e.VerdictData != nil {
				me.Chain = e.VerdictData.Chain
			} else {
				me.Chain = verdictChain(e.Val)
			}
			out = append(out, me)
		}
	}
	return out, nil
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
