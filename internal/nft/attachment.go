package nft

import (
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/google/nftables/userdata"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/cnikit/cnikit/cni"
)

// commentMax is the longest comment kept, as the reference plugins (knftables)
// cut theirs; the identifying hashes come first so a cut never loses them.
const commentMax = 128

// Attachment identifies one container attachment: the network, the container
// ID and the interface name inside the container (CNI_IFNAME).
type Attachment struct {
	Network     string
	ContainerID string
	IfName      string
}

// hash16 is the first 16 hex digits of sha512(s), the reference plugins' hash.
func hash16(s string) string {
	sum := sha512.Sum512([]byte(s))
	return hex.EncodeToString(sum[:8])
}

// NetworkKey is the hash that starts the comment of every object of network:
// the same value the reference nftables masquerade uses, so objects of both
// are found the same way.
func NetworkKey(network string) string { return hash16(network) }

// Key is the hash pair "<network>-<ifname:containerID>" that starts the
// comment of every object of the attachment (the reference's instance hash).
func (a Attachment) Key() string {
	return NetworkKey(a.Network) + "-" + hash16(a.IfName+":"+a.ContainerID)
}

// Comment is the comment put on the attachment's objects: its Key, then the
// names in clear, in the reference's format, cut at 128 characters.
func (a Attachment) Comment() string {
	clean := func(s string) string { return strings.ReplaceAll(s, `"`, "") }
	c := fmt.Sprintf("%s, net: %s, if: %s, id: %s", a.Key(), clean(a.Network), clean(a.IfName), clean(a.ContainerID))
	if len(c) > commentMax {
		c = c[:commentMax]
	}
	return c
}

// KeepSet is the set of attachment keys a GC request keeps.
type KeepSet map[string]bool

// NewKeepSet computes the keys of the attachments of network to keep.
func NewKeepSet(network string, keep []Attachment) KeepSet {
	set := KeepSet{}
	for _, a := range keep {
		a.Network = network
		set[a.Key()] = true
	}
	return set
}

// KeepValid is the KeepSet of a GC request: the attachments of conf's
// network that its cni.dev/valid-attachments lists.
func KeepValid(conf *cni.PluginConf) KeepSet {
	var keep []Attachment
	for _, a := range conf.GCValidAttachments() {
		keep = append(keep, Attachment{ContainerID: a.ContainerID, IfName: a.IfName})
	}
	return NewKeepSet(conf.Name, keep)
}

// Stale reports whether key (an Attachment.Key, possibly followed by more
// text, as in a comment) belongs to network but to none of the attachments
// in the set.
func (k KeepSet) Stale(network, key string) bool { return k.stale(network, key) }

func (k KeepSet) stale(network, comment string) bool {
	prefix := NetworkKey(network) + "-"
	if !strings.HasPrefix(comment, prefix) || len(comment) < len(prefix)+16 {
		return false
	}
	return !k[comment[:len(prefix)+16]]
}

// The life cycle of an interface plugin's (bridge, ptp) nftables objects:
// SetAttachmentRules on ADD, ClearAttachmentRules on DEL,
// CheckAttachmentRules on CHECK and CollectAttachmentRules on GC. Each
// queues and flushes on its own, so call them with nothing else queued.

// Features are the nftables features of an interface plugin's attachments.
type Features struct {
	// Masquerade makes traffic from the container's addresses to anywhere
	// outside their subnet (multicast excepted) leave with the host's
	// address (ipMasq; see masquerade.go).
	Masquerade bool
	// MacSpoof drops frames entering the bridge from the host port whose
	// source MAC is not the container's (macspoofchk; see macspoof.go).
	MacSpoof bool
}

// AttachmentRules are the nftables objects of one attachment of an
// interface plugin.
type AttachmentRules struct {
	Attachment
	Features
	// Addrs are the container's addresses, each with the prefix length of
	// the subnet it is masqueraded from. For ClearAttachmentRules, those
	// prevResult records, or none.
	Addrs []net.IPNet
	// Port is the name of the host end of the veth pair. For
	// ClearAttachmentRules and CheckAttachmentRules, "" when prevResult does
	// not say.
	Port string
	// MAC is the container interface's address.
	MAC net.HardwareAddr
}

// SetAttachmentRules puts the attachment's objects in place in one batch:
// an element per masqueraded address, and the MAC spoof check's chain and
// element. While the programs are in place that is all the batch holds,
// which keeps an ADD cheap: each object of a batch costs time, even one
// that exists already. When the batch fails for want of a part of a program
// (the first ADD, the first attachment of a subnet, or a part someone
// deleted), a second batch brings the missing parts, each found with one
// lookup; should that fail too (a concurrent change), a third brings the
// programs whole. A MAC spoof element that a leaked attachment holds (its
// host port had the same name) is evicted by the second.
func (c *Conn) SetAttachmentRules(r AttachmentRules) error {
	var targets []masqTarget
	if r.Masquerade {
		targets = masqTargets(r.Network, r.Addrs)
	}
	if r.MacSpoof && (r.Port == "" || len(r.MAC) == 0) {
		return fmt.Errorf("MAC spoof check of %s/%s: the host port and the container's MAC are required", r.ContainerID, r.IfName)
	}
	if len(targets) == 0 && !r.MacSpoof {
		return nil
	}
	var err error
	for attempt := range 3 {
		if err = c.queueAttachmentRules(r, targets, attempt); err != nil {
			return err
		}
		err = c.Flush()
		if err == nil || !(IsNotFound(err) || IsClash(err)) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("adding nftables objects of %s/%s: %w", r.ContainerID, r.IfName, err)
	}
	return nil
}

// queueAttachmentRules queues the attempt'th try of SetAttachmentRules: the
// entries only, then with the missing program parts, then with the whole
// programs.
func (c *Conn) queueAttachmentRules(r AttachmentRules, targets []masqTarget, attempt int) error {
	if attempt > 0 {
		all := attempt > 1
		if len(targets) > 0 {
			if err := c.queueMasqueradeProgram(r.Network, targets, all); err != nil {
				return err
			}
		}
		if r.MacSpoof {
			if err := c.queueMacSpoofProgram(all); err != nil {
				return err
			}
		}
	}
	if len(targets) > 0 {
		if err := c.queueMasqueradeEntries(r.Attachment, targets); err != nil {
			return err
		}
	}
	if r.MacSpoof {
		return c.queueMacSpoofEntries(r.Attachment, r.Port, r.MAC, attempt > 0)
	}
	return nil
}

// ClearAttachmentRules removes the attachment's objects in one batch, with
// the reference plugins' nftables masquerade rules of the attachment when
// masquerading. With the keys (r.Addrs, r.Port) it deletes without listing
// anything; without them, or when one of the objects is already gone, it
// finds the objects by their comment. Nothing to remove is success.
func (c *Conn) ClearAttachmentRules(r AttachmentRules) error {
	for byKey := true; ; byKey = false {
		if err := c.queueClear(r, byKey); err != nil {
			return err
		}
		err := c.Flush()
		if byKey && IsNotFound(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("removing nftables objects of %s/%s: %w", r.ContainerID, r.IfName, err)
		}
		return nil
	}
}

func (c *Conn) queueClear(r AttachmentRules, byKey bool) error {
	if r.Masquerade {
		if byKey && len(r.Addrs) > 0 {
			ips := make([]net.IP, len(r.Addrs))
			for i, a := range r.Addrs {
				ips[i] = a.IP
			}
			if err := c.delMasqueradeIPs(ips); err != nil {
				return err
			}
		} else if _, err := c.delMasqueradeOf(r.Attachment); err != nil {
			return err
		}
		// The reference table is rarely there: a lookup on a blocking
		// socket says so for less than listing its chain would cost.
		if _, exists, err := LookupChain(unix.NFPROTO_INET, ReferenceMasqTable, ReferenceMasqChain); err != nil {
			return err
		} else if exists {
			if _, err := c.DelReferenceMasquerade(r.Attachment); err != nil {
				return err
			}
		}
	}
	if r.MacSpoof {
		if byKey && r.Port != "" {
			return c.delMacSpoof(r.Attachment, r.Port)
		}
		if _, err := c.delMacSpoofOf(r.Attachment); err != nil {
			return err
		}
	}
	return nil
}

// CheckAttachmentRules verifies the attachment's objects and the programs
// they hang off: each address has its element, with this attachment's
// comment, jumping to its subnet's chain, which masquerades what leaves the
// subnet; the host port (found by the attachment's comment when r.Port is
// empty) has its MAC spoof element, jumping to the attachment's chain, which
// lets exactly r.MAC through. The error names what is missing or wrong.
func (c *Conn) CheckAttachmentRules(r AttachmentRules) error {
	if r.Masquerade && len(r.Addrs) > 0 {
		if err := c.checkMasquerade(r); err != nil {
			return err
		}
	}
	if r.MacSpoof {
		return c.checkMacSpoof(r)
	}
	return nil
}

func (c *Conn) checkMasquerade(r AttachmentRules) error {
	if ok, err := c.masqueradeProgramIntact(); err != nil || !ok {
		return errors.Join(err, fmt.Errorf("nftables chain inet %s %s is missing or was changed (GC restores it)", TableName, MasqueradeChain))
	}
	for _, t := range masqTargets(r.Network, r.Addrs) {
		set, key := familyMap(t.ip, masqMap4, masqMap6)
		held, found, err := lookupElement(unix.NFPROTO_INET, TableName, set.Name, key)
		switch {
		case err != nil:
			return err
		case !found:
			return fmt.Errorf("no masquerade for %s in nftables map inet %s %s", t.ip, TableName, set.Name)
		case !strings.HasPrefix(held.comment, r.Key()):
			return fmt.Errorf("the masquerade element of %s belongs to another attachment (%q)", t.ip, held.comment)
		case held.chain != t.chain:
			return fmt.Errorf("the masquerade element of %s jumps to %q, not to the chain of %s", t.ip, held.chain, t.subnet)
		}
		if err := c.checkSubnetChain(t); err != nil {
			return err
		}
	}
	return nil
}

func (c *Conn) checkMacSpoof(r AttachmentRules) error {
	if ok, err := c.macSpoofProgramIntact(); err != nil || !ok {
		return errors.Join(err, fmt.Errorf("nftables chain bridge %s %s is missing or was changed (GC restores it)", TableName, MacSpoofChain))
	}
	var held heldElement
	found := false
	if r.Port != "" {
		var err error
		if held, found, err = lookupElement(unix.NFPROTO_BRIDGE, TableName, MacSpoofMap, ifnameKey(r.Port)); err != nil {
			return err
		}
	} else {
		mine, err := c.findMacSpoof(r.Attachment)
		if err != nil {
			return err
		}
		if found = len(mine) > 0; found {
			held = heldElement{chain: mine[0].Chain, comment: mine[0].Comment}
		}
	}
	switch want := MacSpoofChainName(r.Attachment); {
	case !found:
		return fmt.Errorf("no MAC spoof check for %s/%s in nftables map bridge %s %s", r.ContainerID, r.IfName, TableName, MacSpoofMap)
	case held.chain != want:
		return fmt.Errorf("the MAC spoof element of %s jumps to %q, not to %q (%q)", r.Port, held.chain, want, held.comment)
	}
	if len(r.MAC) == 0 {
		return nil
	}
	return c.checkMacSpoofChain(r.Attachment, r.MAC)
}

// CollectAttachmentRules removes network's objects of the given kinds whose
// attachment is not in keep (GC), with the reference plugins' masquerade
// rules, and rewrites the programs of those kinds that are in use (the base
// chains, and the chains of network's subnets), so that a damaged program
// converges again. Each step is a batch of its own, so that one failure
// does not keep the others from being done.
func (c *Conn) CollectAttachmentRules(network string, keep KeepSet, kinds Features) error {
	var errs []error
	step := func(what string, queue func() error) {
		if err := queue(); err != nil {
			errs = append(errs, err)
		} else if err := c.Flush(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
		}
	}
	if kinds.Masquerade {
		if elems, err := c.ListMasquerade(); err != nil {
			errs = append(errs, err)
		} else {
			step("restoring the masquerade program", func() error { return c.restoreMasquerade(elems, network, keep) })
			step("removing stale masquerade elements", func() error {
				_, err := c.gcMasquerade(elems, network, keep)
				return err
			})
		}
		step("removing stale reference masquerade rules", func() error {
			_, err := c.GCReferenceMasquerade(network, keep)
			return err
		})
	}
	if kinds.MacSpoof {
		step("restoring the MAC spoof check program", c.restoreMacSpoof)
		step("removing stale MAC spoof checks", func() error {
			_, err := c.gcMacSpoof(network, keep)
			return err
		})
	}
	return errors.Join(errs...)
}

// heldElement is what a verdict map element holds: the chain its verdict
// jumps to and its comment.
type heldElement struct {
	chain, comment string
}

// lookupElement asks the calling thread's network namespace for the element
// of key in a verdict map of table (family: unix.NFPROTO_*), with one
// request on a blocking socket. It returns false when the element, the map
// or the table does not exist.
func lookupElement(family uint8, table, set string, key []byte) (heldElement, bool, error) {
	keyAttr := nl.NewRtAttr(unix.NFTA_SET_ELEM_KEY|unix.NLA_F_NESTED, nil)
	keyAttr.AddRtAttr(unix.NFTA_DATA_VALUE, key)
	elem := nl.NewRtAttr(unix.NFTA_LIST_ELEM|unix.NLA_F_NESTED, nil)
	elem.AddChild(keyAttr)
	list := nl.NewRtAttr(unix.NFTA_SET_ELEM_LIST_ELEMENTS|unix.NLA_F_NESTED, nil)
	list.AddChild(elem)
	req := nl.NewNetlinkRequest(unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_GETSETELEM, unix.NLM_F_ACK)
	req.AddData(nfgenmsg{family: family})
	req.AddData(nl.NewRtAttr(unix.NFTA_SET_ELEM_LIST_TABLE, nl.ZeroTerminated(table)))
	req.AddData(nl.NewRtAttr(unix.NFTA_SET_ELEM_LIST_SET, nl.ZeroTerminated(set)))
	req.AddData(list)
	msgs, err := req.Execute(unix.NETLINK_NETFILTER, 0)
	if IsNotFound(err) {
		return heldElement{}, false, nil
	}
	if err != nil {
		return heldElement{}, false, fmt.Errorf("looking up an element of nftables map %s %s: %w", table, set, err)
	}
	for _, m := range msgs {
		if len(m) < 4 {
			continue
		}
		elems := nestedAttr(m[4:], unix.NFTA_SET_ELEM_LIST_ELEMENTS)
		if attrs := nestedAttr(elems, unix.NFTA_LIST_ELEM); attrs != nil {
			var held heldElement
			if verdict := nestedAttr(nestedAttr(attrs, unix.NFTA_SET_ELEM_DATA), unix.NFTA_DATA_VERDICT); verdict != nil {
				held.chain = verdictChain(verdict)
			}
			held.comment, _ = userdata.GetString(nestedAttr(attrs, unix.NFTA_SET_ELEM_USERDATA), userdata.NFTNL_UDATA_SET_ELEM_COMMENT)
			return held, true, nil
		}
	}
	return heldElement{}, false, fmt.Errorf("looking up an element of nftables map %s %s: no element in the reply", table, set)
}

// nestedAttr returns the value of the first attribute of type typ in data
// (a sequence of netlink attributes), or nil.
func nestedAttr(data []byte, typ uint16) []byte {
	attrs, err := nl.ParseRouteAttr(data)
	if err != nil {
		return nil
	}
	for _, a := range attrs {
		if a.Attr.Type&^(unix.NLA_F_NESTED|unix.NLA_F_NET_BYTEORDER) == typ {
			return a.Value
		}
	}
	return nil
}
