// Package bridge is the bridge plugin: it attaches a container to a Linux
// bridge on the host with a veth pair, delegates addressing to an IPAM plugin,
// optionally makes the bridge the containers' gateway, masquerades their
// traffic (nftables over netlink) and checks their source MAC.
package bridge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/link"
	"github.com/cnikit/cnikit/internal/nft"
	"github.com/cnikit/cnikit/internal/rollback"
	"github.com/cnikit/cnikit/skel"
)

func init() {
	skel.Register(&skel.Plugin{
		Name:   "bridge",
		About:  "cnikit bridge plugin: attaches containers to a Linux bridge",
		Add:    add,
		Del:    del,
		Check:  check,
		Status: status,
		GC:     gc,
	})
}

// operUpTimeout bounds the wait for the host veth to come up (the reference
// gives up after about 2.55 s).
const operUpTimeout = 2500 * time.Millisecond

// containerIfIndex is the container interface's index in the result's
// interfaces: [bridge, host veth, container veth, (gateway interface)].
const containerIfIndex = 2

func (n *conf) attachment(args *skel.Args) nft.Attachment {
	return nft.Attachment{Network: n.Name, ContainerID: args.ContainerID, IfName: args.IfName}
}

func add(ctx context.Context, args *skel.Args) (res *cni.Result, err error) {
	n, err := parse(args)
	if err != nil {
		return nil, err
	}
	containerNS, err := args.OpenNetns()
	if err != nil {
		return nil, err
	}
	defer containerNS.Close()

	h, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("bridge: opening netlink: %w", err)
	}
	defer h.Close()

	// From here on, a failure removes what was made, in reverse order.
	var undo rollback.Steps
	defer undo.OnError(&err)

	br, created, err := link.EnsureBridge(h, link.BridgeOptions{Name: n.BrName, MTU: n.MTU, VlanFiltering: n.usesVLANs(), Promisc: n.PromiscMode})
	if err != nil {
		if errors.Is(err, link.ErrNotBridge) {
			return nil, invalid("%v", err)
		}
		return nil, fmt.Errorf("bridge: %w", err)
	}
	if created {
		undo = append(undo, func() { _ = link.RemoveBridgeIfUnused(h, br) })
	}

	hostVeth, err := link.CreateVeth(h, link.ContainerHas(containerNS.Fd()), link.VethOptions{
		ContainerNS: containerNS.Fd(), ContainerName: args.IfName, ContainerMAC: n.mac, MTU: n.MTU,
	})
	if err != nil {
		if errors.Is(err, link.ErrExists) {
			return nil, cni.Errorf(cni.CodeInvalidEnvironment, "bridge: %v", err)
		}
		return nil, fmt.Errorf("bridge: %w", err)
	}
	// Deleting the host end deletes the pair.
	undo = append(undo, func() { _ = h.LinkDel(hostVeth) })

	_ = link.SetSysctl("net/ipv6/conf/"+hostVeth.Name+"/accept_ra", "0")
	if err = link.AttachPort(hostVeth.Index, br.Index); err != nil {
		return nil, fmt.Errorf("bridge: %w", err)
	}
	port := n.portOptions(br)
	port.Hairpin, port.Isolated = n.HairpinMode, n.PortIsolation
	if err = link.ConfigurePort(hostVeth.Index, port); err != nil {
		return nil, fmt.Errorf("bridge: %w", err)
	}

	result := &cni.Result{CNIVersion: args.Version}
	cfg := link.InterfaceConfig{Name: args.IfName, EnableDAD: n.EnableDad, Up: !n.DisableContainerInterface}
	var gwIface netlink.Link
	if n.IPAM.Type != "" {
		ipamResult, ierr := skel.Delegate(ctx, args, "ADD", n.IPAM.Type, args.StdinData)
		if ierr != nil {
			return nil, ierr
		}
		undo = append(undo, func() { _, _ = skel.Delegate(ctx, args, "DEL", n.IPAM.Type, args.StdinData) })
		if len(ipamResult.IPs) == 0 {
			err = cni.Errorf(cni.CodeInvalidNetworkConfig, "bridge: IPAM plugin %q returned no IP configuration", n.IPAM.Type)
			return nil, err
		}
		result.IPs, result.Routes, result.DNS = ipamResult.IPs, ipamResult.Routes, ipamResult.DNS
		gateways := n.applyGateways(result)
		for _, ip := range result.IPs {
			ip.Interface = cni.IntPtr(containerIfIndex)
			a := ip.Address
			cfg.Addresses = append(cfg.Addresses, &a)
			cfg.Gateways = append(cfg.Gateways, ip.Gateway)
		}
		for _, r := range result.Routes {
			cfg.Routes = append(cfg.Routes, link.Route{Dst: r.Dst, GW: r.GW, Priority: r.Priority, Table: r.Table, Scope: r.Scope})
		}
		if n.IsGW {
			if gwIface, err = n.setupGateways(h, br, gateways); err != nil {
				return nil, err
			}
		}
	}
	if !n.DNS.IsEmpty() {
		result.DNS = n.DNS
	}

	var contLink netlink.Link
	err = containerNS.Do(func() error {
		var cerr error
		contLink, cerr = link.ConfigureInterface(cfg)
		return cerr
	})
	if err != nil {
		return nil, fmt.Errorf("bridge: configuring %q in %s: %w", args.IfName, args.Netns, err)
	}

	var hostLink netlink.Link = hostVeth
	if cfg.Up {
		if hostLink, err = link.WaitOperUp(h, hostVeth.Index, operUpTimeout); err != nil {
			return nil, fmt.Errorf("bridge: host port in error state: %w", err)
		}
	}

	if n.IPMasq || n.MacSpoofChk {
		if err = n.setupNftables(args, hostVeth.Name, contLink.Attrs().HardwareAddr, cfg.Addresses); err != nil {
			return nil, err
		}
	}

	// A bridge this plugin did not create may not have its MAC pinned: it
	// then took the lowest MAC of its ports when ours joined.
	brMAC := br.HardwareAddr
	if now, lerr := h.LinkByIndex(br.Index); lerr == nil {
		brMAC = now.Attrs().HardwareAddr
	}
	result.Interfaces = []*cni.Interface{
		{Name: br.Name, Mac: brMAC.String()},
		{Name: hostLink.Attrs().Name, Mac: hostLink.Attrs().HardwareAddr.String()},
		{Name: args.IfName, Mac: contLink.Attrs().HardwareAddr.String(), Sandbox: args.Netns},
	}
	if gwIface != nil {
		result.Interfaces = append(result.Interfaces, &cni.Interface{Name: gwIface.Attrs().Name, Mac: gwIface.Attrs().HardwareAddr.String()})
	}
	return result, nil
}

// portOptions are the VLAN settings of a port the plugin adds to br: vlan
// as untagged native VLAN, vlanTrunk tagged, and the VLAN the bridge gave
// the new port (its default PVID, normally 1) removed first unless
// preserveDefaultVlan. As in the reference, a trunk-only port has no native
// VLAN of its own: it keeps the default one, or none.
func (n *conf) portOptions(br *netlink.Bridge) link.PortOptions {
	port := link.PortOptions{PVID: uint16(n.Vlan), Trunk: n.trunk}
	if n.usesVLANs() && !n.PreserveDefaultVlan {
		port.DropDefaultPVID = 1
		if br.VlanDefaultPVID != nil {
			port.DropDefaultPVID = *br.VlanDefaultPVID
		}
	}
	return port
}

// applyGateways fills in missing gateways (the subnet's first address, when
// the bridge is the gateway), adds the default routes isDefaultGateway asks
// for, and returns the gateway addresses to put on the bridge.
func (n *conf) applyGateways(result *cni.Result) []*net.IPNet {
	var gateways []*net.IPNet
	hasDefault := map[int]bool{}
	for _, r := range result.Routes {
		if ones, _ := r.Dst.Mask.Size(); ones == 0 {
			hasDefault[familyOf(r.Dst.IP)] = true
		}
	}
	for _, ip := range result.IPs {
		if ip.Gateway == nil && n.IsGW {
			ip.Gateway = firstAddress(&ip.Address)
		}
		if ip.Gateway == nil {
			continue
		}
		family := ip.Family()
		if n.IsDefaultGW && !hasDefault[family] {
			dst := net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
			if family == 6 {
				dst = net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
			}
			result.Routes = append(result.Routes, &cni.Route{Dst: dst, GW: ip.Gateway})
			hasDefault[family] = true
		}
		gateways = append(gateways, &net.IPNet{IP: ip.Gateway, Mask: ip.Address.Mask})
	}
	return gateways
}

func familyOf(ip net.IP) int {
	if ip.To4() != nil {
		return 4
	}
	return 6
}

// firstAddress is the first host address of addr's subnet.
func firstAddress(addr *net.IPNet) net.IP {
	ip := addr.IP.Mask(addr.Mask)
	if v4 := ip.To4(); v4 != nil {
		ip = v4
	}
	next := make(net.IP, len(ip))
	copy(next, ip)
	for i := len(next) - 1; i >= 0; i-- {
		next[i]++
		if next[i] != 0 {
			break
		}
	}
	return next
}

// setupGateways puts the gateway addresses on the bridge, or on the VLAN's
// gateway interface, and enables forwarding for their families.
func (n *conf) setupGateways(h *netlink.Handle, br *netlink.Bridge, gateways []*net.IPNet) (netlink.Link, error) {
	var target netlink.Link = br
	var gwIface netlink.Link
	if n.Vlan != 0 && len(gateways) > 0 {
		// Its port is set up as a container's would be; its MTU follows
		// the bridge's, which may predate this configuration.
		name := fmt.Sprintf("%s.%d", n.BrName, n.Vlan)
		l, err := link.EnsureGatewayVeth(h, name, br.Index, br.MTU, n.portOptions(br))
		if err != nil {
			return nil, fmt.Errorf("bridge: %w", err)
		}
		target, gwIface = l, l
	}
	families := map[int]bool{}
	for _, gw := range gateways {
		if err := link.EnsureGatewayAddress(h, target, gw, n.ForceAddress); err != nil {
			if errors.Is(err, link.ErrAddressConflict) {
				return nil, invalid("%v (set forceAddress to replace it)", err)
			}
			return nil, fmt.Errorf("bridge: %w", err)
		}
		families[familyOf(gw.IP)] = true
	}
	for family := range families {
		if err := link.EnableForwarding(family); err != nil {
			return nil, fmt.Errorf("bridge: enabling IPv%d forwarding: %w", family, err)
		}
	}
	return gwIface, nil
}

// nftRules are the attachment's nftables objects, as the life cycle the
// bridge plugin shares with ptp takes them. Any of addrs, hostPort and mac
// may be missing (DEL and CHECK know what prevResult says).
func (n *conf) nftRules(args *skel.Args, addrs []net.IPNet, hostPort string, mac net.HardwareAddr) nft.AttachmentRules {
	return nft.AttachmentRules{
		Attachment: n.attachment(args),
		Features:   nft.Features{Masquerade: n.IPMasq, MacSpoof: n.MacSpoofChk},
		Addrs:      addrs, Port: hostPort, MAC: mac,
	}
}

// setupNftables programs masquerade and the MAC spoof check in one batch.
func (n *conf) setupNftables(args *skel.Args, hostPort string, mac net.HardwareAddr, addrs []*net.IPNet) error {
	conn, err := nft.Open()
	if err != nil {
		return fmt.Errorf("bridge: %w", err)
	}
	defer conn.Close()
	masq := make([]net.IPNet, 0, len(addrs))
	for _, a := range addrs {
		masq = append(masq, *a)
	}
	if err := conn.SetAttachmentRules(n.nftRules(args, masq, hostPort, mac)); err != nil {
		return fmt.Errorf("bridge: %w", err)
	}
	return nil
}
