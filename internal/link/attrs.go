package link

import (
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Attributes are interface settings to change; a nil (or zero) field is left
// as it is.
type Attributes struct {
	MAC      net.HardwareAddr
	MTU      int
	TxQLen   *int
	Promisc  *bool
	Allmulti *bool
	// Alias is IFLA_IFALIAS; "" removes it.
	Alias *string
}

// IsEmpty reports whether a changes nothing.
func (a Attributes) IsEmpty() bool {
	return len(a.MAC) == 0 && a.MTU == 0 && a.TxQLen == nil && a.Promisc == nil && a.Allmulti == nil && a.Alias == nil
}

// AttributesOf returns every attribute Attributes can set as l currently has it.
func AttributesOf(l netlink.Link) Attributes {
	attrs := l.Attrs()
	txqlen := attrs.TxQLen
	promisc := attrs.Promisc != 0
	allmulti := attrs.RawFlags&unix.IFF_ALLMULTI != 0
	alias := attrs.Alias
	return Attributes{
		MAC: attrs.HardwareAddr, MTU: attrs.MTU, TxQLen: &txqlen,
		Promisc: &promisc, Allmulti: &allmulti, Alias: &alias,
	}
}

// SetAttributes applies a to the link at index, in the calling thread's
// namespace, with a single RTM_NEWLINK: one round trip however many settings
// change. The kernel applies the attributes in turn, so a failure (an MTU the
// device refuses, say) may leave the earlier ones applied; callers that must
// undo keep the old values (AttributesOf) beforehand.
func SetAttributes(index int, a Attributes) error {
	if a.IsEmpty() {
		return nil
	}
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	// Promiscuous and all-multicast modes are flags: the kernel counts them
	// per user, exactly as `ip link set promisc on` does.
	if a.Promisc != nil {
		msg.Change |= unix.IFF_PROMISC
		if *a.Promisc {
			msg.Flags |= unix.IFF_PROMISC
		}
	}
	if a.Allmulti != nil {
		msg.Change |= unix.IFF_ALLMULTI
		if *a.Allmulti {
			msg.Flags |= unix.IFF_ALLMULTI
		}
	}
	req.AddData(msg)
	if len(a.MAC) > 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_ADDRESS, []byte(a.MAC)))
	}
	if a.MTU > 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(a.MTU))))
	}
	if a.TxQLen != nil {
		req.AddData(nl.NewRtAttr(unix.IFLA_TXQLEN, nl.Uint32Attr(uint32(*a.TxQLen))))
	}
	if a.Alias != nil {
		req.AddData(nl.NewRtAttr(unix.IFLA_IFALIAS, []byte(*a.Alias)))
	}
	if _, err := req.Execute(unix.NETLINK_ROUTE, 0); err != nil {
		return fmt.Errorf("setting attributes of link %d: %w", index, err)
	}
	return nil
}
