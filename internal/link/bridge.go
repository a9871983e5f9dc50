package link

import (
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// ErrNotBridge is returned (wrapped) when a link that must be a bridge is not.
var ErrNotBridge = errors.New("not a bridge")

// BridgeOptions says how to create a bridge that does not exist yet.
type BridgeOptions struct {
	Name          string
	MTU           int  // 0: the kernel's default
	VlanFiltering bool // only applied when the bridge is created
	Promisc       bool
}

// EnsureBridge returns the bridge called opts.Name, creating it when missing
// (a concurrent creator's EEXIST is fine), with promisc set when asked,
// IPv6 router advertisements ignored (accept_ra=0: a container must not be
// able to steer the host) and the link up. An existing bridge's MTU and VLAN
// filtering are left as they are. A link of that name that is not a bridge is
// an error wrapping ErrNotBridge. created reports whether this call made it,
// so that a failed ADD can take it away again (RemoveBridgeIfUnused).
func EnsureBridge(h *netlink.Handle, opts BridgeOptions) (br *netlink.Bridge, created bool, err error) {
	existing, err := h.LinkByName(opts.Name)
	if err != nil {
		var notFound netlink.LinkNotFoundError
		if !errors.As(err, &notFound) {
			return nil, false, fmt.Errorf("looking up bridge %q: %w", opts.Name, err)
		}
		// The MAC is given at creation, which pins it (an address set by
		// hand is kept): otherwise the bridge takes the lowest MAC of its
		// ports and changes it as containers come and go. Pinning it after
		// creation would race with a concurrent ADD whose port just joined.
		mac, err := RandomMAC()
		if err != nil {
			return nil, false, err
		}
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: opts.Name, MTU: opts.MTU, TxQLen: -1, HardwareAddr: mac}}
		if opts.VlanFiltering {
			on := true
			br.VlanFiltering = &on
		}
		err = h.LinkAdd(br)
		created = err == nil
		if err != nil && !errors.Is(err, unix.EEXIST) {
			if opts.VlanFiltering && errors.Is(err, unix.EOPNOTSUPP) {
				return nil, false, fmt.Errorf("creating bridge %q with VLAN filtering: the kernel lacks it (CONFIG_BRIDGE_VLAN_FILTERING): %w", opts.Name, err)
			}
			return nil, false, fmt.Errorf("creating bridge %q: %w", opts.Name, err)
		}
		if existing, err = h.LinkByName(opts.Name); err != nil {
			return nil, false, fmt.Errorf("looking up bridge %q: %w", opts.Name, err)
		}
	}
	br, ok := existing.(*netlink.Bridge)
	if !ok {
		return nil, false, fmt.Errorf("%q already exists but is a %s link: %w", opts.Name, existing.Type(), ErrNotBridge)
	}
	if opts.Promisc && br.Promisc == 0 {
		if err := h.SetPromiscOn(br); err != nil {
			return nil, false, fmt.Errorf("setting promisc on bridge %q: %w", opts.Name, err)
		}
		br.Promisc = 1
	}
	// Ignored when IPv6 is disabled: there is no setting to write then.
	_ = EnsureSysctl("net/ipv6/conf/"+opts.Name+"/accept_ra", "0")
	if br.Flags&net.FlagUp == 0 {
		if err := h.LinkSetUp(br); err != nil {
			return nil, false, fmt.Errorf("setting bridge %q up: %w", opts.Name, err)
		}
		br.Flags |= net.FlagUp
	}
	return br, created, nil
}

// RemoveBridgeIfUnused deletes the bridge when no port is attached to it: the
// undo of an EnsureBridge that created it, for an ADD that failed later. A
// concurrent ADD that attached its port meanwhile keeps it alive.
func RemoveBridgeIfUnused(h *netlink.Handle, br *netlink.Bridge) error {
	links, err := h.LinkList()
	if err != nil {
		return err
	}
	for _, l := range links {
		if l.Attrs().MasterIndex == br.Index {
			return nil
		}
	}
	return h.LinkDel(br)
}

// VlanRange is an inclusive range of VLAN IDs.
type VlanRange struct{ Min, Max uint16 }

// PortOptions are the bridge-port settings of a host veth.
type PortOptions struct {
	Hairpin  bool
	Isolated bool
	// PVID, when not 0, is the port's untagged native VLAN.
	PVID uint16
	// Trunk lists tagged VLANs.
	Trunk []VlanRange
	// DropDefaultPVID removes the VLAN the bridge gave the new port (its
	// default PVID) before the settings above apply.
	DropDefaultPVID uint16
}

// AttachPort enslaves the link at index to the bridge at master and sets it
// up, in one request.
func AttachPort(index, master int) error {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	msg.Flags = unix.IFF_UP
	msg.Change = unix.IFF_UP
	req.AddData(msg)
	req.AddData(nl.NewRtAttr(unix.IFLA_MASTER, nl.Uint32Attr(uint32(master))))
	if _, err := req.Execute(unix.NETLINK_ROUTE, 0); err != nil {
		return fmt.Errorf("attaching link %d to bridge %d: %w", index, master, err)
	}
	return nil
}

// ConfigurePort applies hairpin, isolation and VLANs to the bridge port at
// index: one request, or two when the default VLAN must go first.
func ConfigurePort(index int, opts PortOptions) error {
	if opts.DropDefaultPVID != 0 {
		req := nl.NewNetlinkRequest(unix.RTM_DELLINK, unix.NLM_F_ACK)
		req.AddData(bridgeMsg(index))
		spec := nl.NewRtAttr(unix.IFLA_AF_SPEC, nil)
		spec.AddRtAttr(nl.IFLA_BRIDGE_VLAN_INFO, (&nl.BridgeVlanInfo{Vid: opts.DropDefaultPVID}).Serialize())
		req.AddData(spec)
		if _, err := req.Execute(unix.NETLINK_ROUTE, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("removing default VLAN %d from port %d: %w", opts.DropDefaultPVID, index, err)
		}
	}
	if !opts.Hairpin && !opts.Isolated && opts.PVID == 0 && len(opts.Trunk) == 0 {
		return nil
	}
	req := nl.NewNetlinkRequest(unix.RTM_SETLINK, unix.NLM_F_ACK)
	req.AddData(bridgeMsg(index))
	if opts.Hairpin || opts.Isolated {
		info := nl.NewRtAttr(unix.IFLA_PROTINFO|unix.NLA_F_NESTED, nil)
		if opts.Hairpin {
			info.AddRtAttr(nl.IFLA_BRPORT_MODE, []byte{1})
		}
		if opts.Isolated {
			info.AddRtAttr(nl.IFLA_BRPORT_ISOLATED, []byte{1})
		}
		req.AddData(info)
	}
	if opts.PVID != 0 || len(opts.Trunk) > 0 {
		spec := nl.NewRtAttr(unix.IFLA_AF_SPEC, nil)
		spec.AddRtAttr(nl.IFLA_BRIDGE_FLAGS, nl.Uint16Attr(nl.BRIDGE_FLAGS_MASTER))
		for _, r := range opts.Trunk {
			if r.Min == r.Max {
				spec.AddRtAttr(nl.IFLA_BRIDGE_VLAN_INFO, (&nl.BridgeVlanInfo{Vid: r.Min}).Serialize())
				continue
			}
			spec.AddRtAttr(nl.IFLA_BRIDGE_VLAN_INFO, (&nl.BridgeVlanInfo{Vid: r.Min, Flags: nl.BRIDGE_VLAN_INFO_RANGE_BEGIN}).Serialize())
			spec.AddRtAttr(nl.IFLA_BRIDGE_VLAN_INFO, (&nl.BridgeVlanInfo{Vid: r.Max, Flags: nl.BRIDGE_VLAN_INFO_RANGE_END}).Serialize())
		}
		// The native VLAN comes last so that a trunk range covering it does
		// not take its PVID/untagged flags away.
		if opts.PVID != 0 {
			spec.AddRtAttr(nl.IFLA_BRIDGE_VLAN_INFO, (&nl.BridgeVlanInfo{Vid: opts.PVID,
				Flags: nl.BRIDGE_VLAN_INFO_PVID | nl.BRIDGE_VLAN_INFO_UNTAGGED}).Serialize())
		}
		req.AddData(spec)
	}
	if _, err := req.Execute(unix.NETLINK_ROUTE, 0); err != nil {
		return fmt.Errorf("configuring bridge port %d: %w", index, err)
	}
	return nil
}

func bridgeMsg(index int) *nl.IfInfomsg {
	msg := nl.NewIfInfomsg(unix.AF_BRIDGE)
	msg.Index = int32(index)
	return msg
}
