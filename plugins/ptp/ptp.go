// Package ptp is the ptp plugin: it connects a container to the host with a
// veth pair and routes, no bridge. The container reaches everything, its own
// subnet included, through a gateway address that the host end carries; the
// host routes each container address to its veth. Addresses come from an
// IPAM plugin; traffic leaving the subnet can be masqueraded (nftables over
// netlink, shared with the bridge plugin).
package ptp

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/link"
	"github.com/cnikit/cnikit/internal/nft"
	"github.com/cnikit/cnikit/internal/rollback"
	"github.com/cnikit/cnikit/skel"
)

func init() {
	skel.Register(&skel.Plugin{
		Name:   "ptp",
		About:  "cnikit ptp plugin: connects containers to the host with a routed veth pair",
		Add:    add,
		Del:    del,
		Check:  check,
		Status: status,
		GC:     gc,
	})
}

// Indexes of the result's interfaces: [host veth, container veth].
const (
	hostIfIndex      = 0
	containerIfIndex = 1
)

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
		return nil, fmt.Errorf("ptp: opening netlink: %w", err)
	}
	defer h.Close()

	// From here on, a failure removes what was made, in reverse order.
	var undo rollback.Steps
	defer undo.OnError(&err)

	// IPAM first, as the reference does: the addresses decide everything.
	ipamResult, err := skel.Delegate(ctx, args, "ADD", n.IPAM.Type, args.StdinData)
	if err != nil {
		return nil, err
	}
	undo = append(undo, func() { _, _ = skel.Delegate(ctx, args, "DEL", n.IPAM.Type, args.StdinData) })
	p, err := planFor(ipamResult, n.IPAM.Type)
	if err != nil {
		return nil, err
	}

	hostVeth, err := link.CreateVeth(h, link.ContainerHas(containerNS.Fd()), link.VethOptions{
		ContainerNS: containerNS.Fd(), ContainerName: args.IfName, MTU: n.MTU,
	})
	if err != nil {
		if errors.Is(err, link.ErrExists) {
			return nil, cni.Errorf(cni.CodeInvalidEnvironment, "ptp: %v", err)
		}
		return nil, fmt.Errorf("ptp: %w", err)
	}
	// Deleting the host end deletes the pair, and with it every route
	// through either end.
	undo = append(undo, func() { _ = h.LinkDel(hostVeth) })
	att := n.attachment(args)
	if err = nameHostEnd(h, hostVeth, hostAltName(att)); err != nil {
		return nil, err
	}

	for _, family := range families(p.ips) {
		if err = link.EnableForwarding(family); err != nil {
			return nil, fmt.Errorf("ptp: enabling IPv%d forwarding: %w", family, err)
		}
	}
	if err = link.ConfigurePointToPointHost(h, hostVeth, p.gateways, p.ips); err != nil {
		return nil, fmt.Errorf("ptp: %w", err)
	}
	var contLink netlink.Link
	err = containerNS.Do(func() error {
		var cerr error
		contLink, cerr = link.ConfigureInterface(link.InterfaceConfig{
			Name: args.IfName, Addresses: p.addrs, Routes: p.routes, Up: true, NoPrefixRoute: true,
		})
		return cerr
	})
	if err != nil {
		return nil, fmt.Errorf("ptp: configuring %q in %s: %w", args.IfName, args.Netns, err)
	}

	if n.IPMasq {
		if err = setMasquerade(att, p.addrs); err != nil {
			return nil, err
		}
	}

	result := &cni.Result{CNIVersion: args.Version, IPs: ipamResult.IPs, Routes: ipamResult.Routes, DNS: ipamResult.DNS}
	for _, ip := range result.IPs {
		ip.Interface = cni.IntPtr(containerIfIndex)
	}
	if !n.DNS.IsEmpty() {
		result.DNS = n.DNS
	}
	result.Interfaces = []*cni.Interface{
		hostIfIndex:      {Name: hostVeth.Name, Mac: hostVeth.HardwareAddr.String()},
		containerIfIndex: {Name: args.IfName, Mac: contLink.Attrs().HardwareAddr.String(), Sandbox: args.Netns},
	}
	return result, nil
}

// nameHostEnd gives the host end its attachment name. A link that already
// has it is a leftover of the same attachment (an ADD never followed by a
// DEL): it is removed, and the name given again.
func nameHostEnd(h *netlink.Handle, hostVeth netlink.Link, name string) error {
	err := link.AddAltName(h, hostVeth, name)
	if errors.Is(err, unix.EEXIST) {
		if err = link.DeleteByName(h, name); err == nil {
			err = link.AddAltName(h, hostVeth, name)
		}
	}
	if err != nil {
		return fmt.Errorf("ptp: %w", err)
	}
	return nil
}

// masquerade is the attachment's masquerade of addrs, as the nftables life
// cycle it shares with the bridge plugin takes it.
func masquerade(att nft.Attachment, addrs []net.IPNet) nft.AttachmentRules {
	return nft.AttachmentRules{Attachment: att, Features: nft.Features{Masquerade: true}, Addrs: addrs}
}

// setMasquerade masquerades the container's addresses, in one batch.
func setMasquerade(att nft.Attachment, addrs []*net.IPNet) error {
	conn, err := nft.Open()
	if err != nil {
		return fmt.Errorf("ptp: %w", err)
	}
	defer conn.Close()
	if err := conn.SetAttachmentRules(masquerade(att, derefAll(addrs))); err != nil {
		return fmt.Errorf("ptp: %w", err)
	}
	return nil
}

// families lists the address families (4, 6) of ips.
func families(ips []net.IP) []int {
	var v4, v6 bool
	for _, ip := range ips {
		if ip.To4() != nil {
			v4 = true
		} else {
			v6 = true
		}
	}
	var out []int
	if v4 {
		out = append(out, 4)
	}
	if v6 {
		out = append(out, 6)
	}
	return out
}
