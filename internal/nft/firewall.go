package nft

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Firewall program (firewall plugin), in table inet cnikit:
//
//	map firewall4 { type ipv4_addr : verdict }   # container IP : jump firewall | jump isolation-<bridge>
//	map firewall6 { type ipv6_addr : verdict }
//	set isolating { type ifname }                # bridges whose ingressPolicy is same-bridge or isolated
//	set same-bridge { type ifname . ifname }     # "<bridge>" . "<bridge>" for same-bridge bridges
//	chain forward-admin { }                      # the administrator's: never written by cnikit
//	chain forward { type filter hook forward priority filter; policy accept;
//	    jump forward-admin
//	    iifname . oifname @same-bridge accept
//	    ct state != established,related iifname @isolating oifname @isolating drop
//	    ip saddr vmap @firewall4
//	    ip6 saddr vmap @firewall6
//	    ct state established,related ip daddr vmap @firewall4
//	    ct state established,related ip6 daddr vmap @firewall6 }
//	chain firewall { accept }                    # target of attachments with no isolation
//	chain isolation-<bridge> { accept }          # one per isolating bridge in use
//
// An attachment adds one map element per address, commented with
// Attachment.Comment. The elements of an isolating bridge's containers jump
// to that bridge's chain, so the kernel counts them: the chain's reference
// count is the number of such addresses, and deleting the chain fails with
// EBUSY while one is left. ReleaseIsolation uses that to remove a bridge's
// isolation entries exactly when its last container goes, without listing
// anything.
//
// The accept verdicts end this chain only: a drop in another table's forward
// chain (iptables' FORWARD with policy DROP, say) still applies, which is why
// the firewall plugin has an iptables backend. The drop verdicts are final
// everywhere.
const (
	// FirewallChain is the filter forward base chain.
	FirewallChain = "forward"
	// FirewallAdminChain is the administrator's chain, jumped to first.
	FirewallAdminChain = "forward-admin"
	// FirewallMap4 and FirewallMap6 hold the containers' addresses.
	FirewallMap4 = "firewall4"
	FirewallMap6 = "firewall6"
	// IsolatingSet holds the bridges whose containers only accept new
	// connections from their own bridge (or, isolated, from nowhere).
	IsolatingSet = "isolating"
	// SameBridgeSet holds bridge . bridge pairs whose routed traffic stays
	// allowed (ingressPolicy same-bridge).
	SameBridgeSet = "same-bridge"
	// openChain is the verdict of attachments without isolation.
	openChain = "firewall"
	// isolationPrefix starts the name of each isolating bridge's chain.
	isolationPrefix = "isolation-"
)

// The program's sets. They are only read: a batch that creates them adds
// copies (see queueFirewallBase).
var (
	fwMap4 = &nftables.Set{Table: inetTable, Name: FirewallMap4, IsMap: true, KeyType: nftables.TypeIPAddr, DataType: nftables.TypeVerdict}
	fwMap6 = &nftables.Set{Table: inetTable, Name: FirewallMap6, IsMap: true, KeyType: nftables.TypeIP6Addr, DataType: nftables.TypeVerdict}
	// Names are strings, which nft stores and prints in host byte order.
	isolatingSet  = &nftables.Set{Table: inetTable, Name: IsolatingSet, KeyType: nftables.TypeIFName, KeyByteOrder: binaryutil.NativeEndian}
	sameBridgeSet = &nftables.Set{Table: inetTable, Name: SameBridgeSet, Concatenation: true,
		KeyType: nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeIFName), KeyByteOrder: binaryutil.NativeEndian}
)

// Isolation is the ingress policy of an attachment's bridge. A nil
// *Isolation means none (ingressPolicy open).
type Isolation struct {
	// Bridge is the host interface the container hangs off (prevResult's
	// first interface), a valid interface name.
	Bridge string
	// SameBridge lets routed traffic between two containers of the bridge
	// through (same-bridge); without it that is dropped too (isolated).
	SameBridge bool
}

// FirewallElement is one element of the firewall maps: a container address,
// the chain it jumps to and its comment.
type FirewallElement struct {
	IP      net.IP
	Chain   string
	Comment string
}

// Bridge returns the isolating bridge the element counts for, or "".
func (e FirewallElement) Bridge() string {
	if !strings.HasPrefix(e.Chain, isolationPrefix) {
		return ""
	}
	return strings.TrimPrefix(e.Chain, isolationPrefix)
}

// IsolationChain names the chain of an isolating bridge.
func IsolationChain(bridge string) string { return isolationPrefix + bridge }

// ctStateMask are the established and related bits of ct state.
var ctStateMask = binaryutil.NativeEndian.PutUint32(uint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED))

// ctReply matches (or, with not, excludes) reply traffic: ct state
// established or related.
func ctReply(not bool) []expr.Any {
	op := expr.CmpOpNeq
	if not {
		op = expr.CmpOpEq
	}
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: ctStateMask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: op, Register: 1, Data: make([]byte, 4)},
	}
}

// addrLookup loads the IPv4 or IPv6 source or destination address and
// looks it up in the family's verdict map (m4 or m6).
func addrLookup(m4, m6 *nftables.Set, v6, dest bool) []expr.Any {
	family, offset, size, m := []byte{unix.NFPROTO_IPV4}, uint32(12), uint32(4), m4
	if v6 {
		family, offset, size, m = []byte{unix.NFPROTO_IPV6}, 8, 16, m6
	}
	if dest {
		offset += size
	}
	return append(nfproto(family),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: size},
		&expr.Lookup{SourceRegister: 1, SetName: m.Name, SetID: m.ID, IsDestRegSet: true, DestRegister: 0})
}

// queueFirewallBase queues the table, sets, the admin chain (created when
// missing, never flushed), the open chain and the base chain, rewritten so
// that it converges to the program above.
func (c *Conn) queueFirewallBase() error {
	c.nft.AddTable(inetTable)
	// Copies: AddSet gives each a batch-local ID, which the rules below
	// refer to, and concurrent batches must not share them.
	m4, m6, isolating, sameBridge := *fwMap4, *fwMap6, *isolatingSet, *sameBridgeSet
	for _, s := range []*nftables.Set{&m4, &m6, &isolating, &sameBridge} {
		if err := c.nft.AddSet(s, nil); err != nil {
			return fmt.Errorf("queueing set %s: %w", s.Name, err)
		}
	}
	c.nft.AddChain(&nftables.Chain{Table: inetTable, Name: FirewallAdminChain})
	open := c.nft.AddChain(&nftables.Chain{Table: inetTable, Name: openChain})
	c.nft.FlushChain(open)
	c.nft.AddRule(&nftables.Rule{Table: inetTable, Chain: open, Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}})

	policy := nftables.ChainPolicyAccept
	base := c.nft.AddChain(&nftables.Chain{
		Table: inetTable, Name: FirewallChain, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &policy,
	})
	c.nft.FlushChain(base)
	rules := [][]expr.Any{
		{&expr.Verdict{Kind: expr.VerdictJump, Chain: FirewallAdminChain}},
		{
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 2},
			&expr.Lookup{SourceRegister: 1, SetName: sameBridge.Name, SetID: sameBridge.ID},
			&expr.Verdict{Kind: expr.VerdictAccept},
		},
		append(ctReply(true),
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
			&expr.Lookup{SourceRegister: 1, SetName: isolating.Name, SetID: isolating.ID},
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
			&expr.Lookup{SourceRegister: 1, SetName: isolating.Name, SetID: isolating.ID},
			&expr.Verdict{Kind: expr.VerdictDrop}),
		addrLookup(&m4, &m6, false, false),
		addrLookup(&m4, &m6, true, false),
		append(ctReply(false), addrLookup(&m4, &m6, false, true)...),
		append(ctReply(false), addrLookup(&m4, &m6, true, true)...),
	}
	for _, exprs := range rules {
		c.nft.AddRule(&nftables.Rule{Table: inetTable, Chain: base, Exprs: exprs})
	}
	c.queued++
	return nil
}

// bridgePair is the same-bridge set's key for bridge.
func bridgePair(bridge string) []byte { return append(ifnameKey(bridge), ifnameKey(bridge)...) }

// AddFirewall queues the whole program, created or brought back to the
// shape above, and the attachment's entries: see AddFirewallEntries.
func (c *Conn) AddFirewall(a Attachment, addrs []net.IP, iso *Isolation) error {
	if err := c.queueFirewallBase(); err != nil {
		return err
	}
	return c.AddIsolatedFirewallEntries(a, addrs, iso)
}

// AddIsolatedFirewallEntries queues the bridge's isolation chain (when iso
// is set) and the attachment's entries, for a program that is in place but
// has not seen the bridge yet: cheaper than AddFirewall, which rewrites the
// base chain.
func (c *Conn) AddIsolatedFirewallEntries(a Attachment, addrs []net.IP, iso *Isolation) error {
	if iso != nil {
		chain := c.nft.AddChain(&nftables.Chain{Table: inetTable, Name: IsolationChain(iso.Bridge)})
		c.nft.FlushChain(chain)
		c.nft.AddRule(&nftables.Rule{Table: inetTable, Chain: chain, Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}})
	}
	return c.AddFirewallEntries(a, addrs, iso)
}

// AddFirewallEntries queues the attachment's elements (one per address)
// and, with iso, its bridge's isolation entries, for a program that is in
// place: the Flush fails with an error IsNotFound recognises when it is not
// (no table, map or bridge chain yet); queue AddFirewall then. Sending only
// the entries is what keeps an ADD cheap: each object of a batch costs the
// kernel time even when it exists already.
//
// An element that already exists with another verdict makes the Flush fail
// with an error IsClash recognises: queue EvictFirewall first then. One with
// the same verdict is kept as it is, comment included: an attachment that
// never got its DEL and held the same address, which needs IPAM to hand out
// an address it still has reserved (the chain's GC releases both together).
// Replacing it would cost two more messages per address, each of which the
// kernel takes time over.
//
// Isolation entries are per bridge; the last ADD decides between
// same-bridge and isolated when attachments of one bridge disagree.
func (c *Conn) AddFirewallEntries(a Attachment, addrs []net.IP, iso *Isolation) error {
	target := openChain
	if iso != nil {
		target = IsolationChain(iso.Bridge)
		if err := c.nft.SetAddElements(isolatingSet, []nftables.SetElement{{Key: ifnameKey(iso.Bridge)}}); err != nil {
			return fmt.Errorf("queueing isolation of %s: %w", iso.Bridge, err)
		}
		pair := []nftables.SetElement{{Key: bridgePair(iso.Bridge)}}
		if err := c.nft.SetAddElements(sameBridgeSet, pair); err != nil {
			return fmt.Errorf("queueing isolation of %s: %w", iso.Bridge, err)
		}
		if !iso.SameBridge {
			// Added above so that this delete cannot fail: absent either way.
			if err := c.nft.SetDeleteElements(sameBridgeSet, pair); err != nil {
				return fmt.Errorf("queueing isolation of %s: %w", iso.Bridge, err)
			}
		}
		c.queued++
	}
	comment := a.Comment()
	jump := &expr.Verdict{Kind: expr.VerdictJump, Chain: target}
	elems := map[*nftables.Set][]nftables.SetElement{}
	for _, ip := range addrs {
		set, key := familyMap(ip, fwMap4, fwMap6)
		elems[set] = append(elems[set], nftables.SetElement{Key: key, VerdictData: jump, Comment: comment})
	}
	for set, list := range elems {
		if err := c.nft.SetAddElements(set, list); err != nil {
			return fmt.Errorf("queueing firewall elements of %s: %w", a.ContainerID, err)
		}
		c.queued++
	}
	return nil
}

// RestoreFirewallProgram queues the program's rewrite when it exists (GC
// uses it, so that a base chain someone changed converges again without
// making every ADD pay for the rewrite).
func (c *Conn) RestoreFirewallProgram() error {
	exists, err := c.FirewallBaseExists()
	if err != nil || !exists {
		return err
	}
	return c.queueFirewallBase()
}

// EvictFirewall queues the deletion of the elements that hold ips' keys now,
// whoever added them. It lists both maps, so it is meant for the rare retry
// after IsClash (an address reused after a leaked attachment of another
// bridge).
func (c *Conn) EvictFirewall(ips []net.IP) error {
	elems, err := c.ListFirewall()
	if err != nil {
		return err
	}
	var evict []FirewallElement
	for _, e := range elems {
		for _, ip := range ips {
			if e.IP.Equal(ip) {
				evict = append(evict, e)
			}
		}
	}
	return c.queueFirewallDelete(evict)
}

// DelFirewallIPs queues the deletion of the elements of ips. The Flush fails
// with an error IsNotFound recognises when one is missing; fall back to
// DelFirewallOf then.
func (c *Conn) DelFirewallIPs(ips []net.IP) error {
	elems := make([]FirewallElement, len(ips))
	for i, ip := range ips {
		elems[i] = FirewallElement{IP: ip}
	}
	return c.queueFirewallDelete(elems)
}

// DelFirewallOf finds the attachment's elements by their comment and queues
// their deletion. It returns them.
func (c *Conn) DelFirewallOf(a Attachment) ([]FirewallElement, error) {
	elems, err := c.FindFirewall(a)
	if err != nil {
		return nil, err
	}
	return elems, c.queueFirewallDelete(elems)
}

// queueFirewallDelete queues one message per map (each message costs the
// kernel time, each element little).
func (c *Conn) queueFirewallDelete(elems []FirewallElement) error {
	keys := map[*nftables.Set][]nftables.SetElement{}
	for _, e := range elems {
		set, key := familyMap(e.IP, fwMap4, fwMap6)
		keys[set] = append(keys[set], nftables.SetElement{Key: key})
	}
	for set, list := range keys {
		if err := c.nft.SetDeleteElements(set, list); err != nil {
			return fmt.Errorf("queueing removal of %d firewall elements: %w", len(list), err)
		}
		c.queued++
	}
	return nil
}

// ReleaseIsolation queues the removal of bridge's isolation entries and
// chain, when the chain exists (they come and go together). The Flush fails
// with an error IsBusy recognises while a container address still jumps to
// the chain, and then changes nothing: queue it in a batch of its own, or
// retry the batch without it.
func (c *Conn) ReleaseIsolation(bridge string) error {
	name := IsolationChain(bridge)
	if _, err := c.nft.ListChain(inetTable, name); err != nil {
		if IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("looking up nftables chain %s %s: %w", TableName, name, err)
	}
	// The sets exist with the chain. Each element is added first so that
	// its delete cannot fail.
	for _, x := range []struct {
		set *nftables.Set
		key []byte
	}{{isolatingSet, ifnameKey(bridge)}, {sameBridgeSet, bridgePair(bridge)}} {
		elem := []nftables.SetElement{{Key: x.key}}
		if err := c.nft.SetAddElements(x.set, elem); err != nil {
			return fmt.Errorf("queueing release of %s: %w", bridge, err)
		}
		if err := c.nft.SetDeleteElements(x.set, elem); err != nil {
			return fmt.Errorf("queueing release of %s: %w", bridge, err)
		}
	}
	c.nft.DelChain(&nftables.Chain{Table: inetTable, Name: name})
	c.queued++
	return nil
}

// IsBusy reports whether a Flush failed because a chain to delete is still
// referenced: after ReleaseIsolation, the bridge still has containers.
func IsBusy(err error) bool {
	return err != nil && (errors.Is(err, unix.EBUSY) || strings.Contains(err.Error(), unix.EBUSY.Error()))
}

// IsolatedBridges returns the bridges that have an isolation chain.
func (c *Conn) IsolatedBridges() ([]string, error) {
	chains, err := c.nft.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("listing nftables chains: %w", err)
	}
	var out []string
	for _, ch := range chains {
		if ch.Table.Name == TableName && strings.HasPrefix(ch.Name, isolationPrefix) {
			out = append(out, strings.TrimPrefix(ch.Name, isolationPrefix))
		}
	}
	return out, nil
}

// IsolationOf reports how a bridge is isolated now: whether it is in the
// isolating set, and whether its same-bridge pair is present.
func (c *Conn) IsolationOf(bridge string) (isolating, sameBridge bool, err error) {
	for _, x := range []struct {
		set   *nftables.Set
		key   []byte
		found *bool
	}{{isolatingSet, ifnameKey(bridge), &isolating}, {sameBridgeSet, bridgePair(bridge), &sameBridge}} {
		elems, err := c.nft.GetSetElements(x.set)
		if IsNotFound(err) {
			continue
		}
		if err != nil {
			return false, false, fmt.Errorf("listing nftables set %s %s: %w", TableName, x.set.Name, err)
		}
		for _, e := range elems {
			if string(e.Key) == string(x.key) {
				*x.found = true
			}
		}
	}
	return isolating, sameBridge, nil
}

// GCFirewall queues the deletion of network's elements whose attachment is
// not in keep, and returns them.
func (c *Conn) GCFirewall(network string, keep KeepSet) ([]FirewallElement, error) {
	elems, err := c.ListFirewall()
	if err != nil {
		return nil, err
	}
	var stale []FirewallElement
	for _, e := range elems {
		if keep.stale(network, e.Comment) {
			stale = append(stale, e)
		}
	}
	return stale, c.queueFirewallDelete(stale)
}

// FindFirewall returns the attachment's elements, found by their comment.
func (c *Conn) FindFirewall(a Attachment) ([]FirewallElement, error) {
	elems, err := c.ListFirewall()
	key := a.Key()
	return slices.DeleteFunc(elems, func(e FirewallElement) bool { return !strings.HasPrefix(e.Comment, key) }), err
}

// ListFirewall returns every element of both firewall maps; none when the
// table does not exist.
func (c *Conn) ListFirewall() ([]FirewallElement, error) {
	return listAddrVerdicts[FirewallElement](c, fwMap4, fwMap6)
}

// firewallBaseRules is the number of rules of the base chain.
const firewallBaseRules = 7

// FirewallProgramIntact reports whether the base chain has its rules, the
// first being the jump to the admin chain (CHECK uses it).
func (c *Conn) FirewallProgramIntact() (bool, error) {
	base := &nftables.Chain{Table: inetTable, Name: FirewallChain}
	rules, err := c.nft.GetRules(inetTable, base)
	if IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("listing nftables chain %s %s: %w", TableName, FirewallChain, err)
	}
	if len(rules) != firewallBaseRules || len(rules[0].Exprs) != 1 {
		return false, nil
	}
	v, ok := rules[0].Exprs[0].(*expr.Verdict)
	return ok && v.Kind == expr.VerdictJump && v.Chain == FirewallAdminChain, nil
}

// FirewallBaseExists reports whether the forward base chain exists (STATUS
// and GC use it).
func (c *Conn) FirewallBaseExists() (bool, error) {
	_, err := c.nft.ListChain(inetTable, FirewallChain)
	if IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("looking up nftables chain %s %s: %w", TableName, FirewallChain, err)
	}
	return true, nil
}
