package ptp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/link"
	"github.com/cnikit/cnikit/internal/nft"
	"github.com/cnikit/cnikit/netns"
	"github.com/cnikit/cnikit/skel"
)

// del undoes add. Order matters: the masquerade elements go first, while the
// addresses are still reserved (so no newer container can hold them yet);
// then IPAM releases the addresses while the link still exists (a DHCP
// release needs it); the veth pair goes last, and with it every route
// through it. The host end is found by its alternative name, so neither
// CNI_NETNS nor prevResult is needed; a missing netns, link or element is
// success.
func del(ctx context.Context, args *skel.Args) error {
	n, err := parse(args)
	if err != nil {
		return err
	}
	att := n.attachment(args)
	var errs []error
	if n.IPMasq {
		if err := clearMasquerade(att, n.containerIPs(args)); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := skel.Delegate(ctx, args, "DEL", n.IPAM.Type, args.StdinData); err != nil {
		return err
	}
	if err := n.removeLinks(args, att); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// containerIPs returns the container's addresses recorded in prevResult, if
// there is one: those of the container interface, or all of them when the
// result does not tie them to interfaces.
func (n *conf) containerIPs(args *skel.Args) []net.IPNet {
	r := n.PrevResult
	if r == nil {
		return nil
	}
	var ips []net.IPNet
	for _, ip := range r.IPs {
		if i := ip.Interface; i != nil && *i >= 0 && *i < len(r.Interfaces) {
			if iface := r.Interfaces[*i]; iface.Name != args.IfName || iface.Sandbox == "" {
				continue
			}
		}
		ips = append(ips, ip.Address)
	}
	return ips
}

// clearMasquerade removes the attachment's masquerade, by key when the
// addresses are known.
func clearMasquerade(att nft.Attachment, ips []net.IPNet) error {
	conn, err := nft.Open()
	if err != nil {
		return fmt.Errorf("ptp: %w", err)
	}
	defer conn.Close()
	if err := conn.ClearAttachmentRules(masquerade(att, ips)); err != nil {
		return fmt.Errorf("ptp: %w", err)
	}
	return nil
}

// removeLinks deletes the attachment's veth pair. The host end that cnikit
// made carries the attachment's alternative name: one lookup and one delete,
// without entering the container. Failing that (a pair the reference plugin
// made), the container end is deleted in CNI_NETNS, or, without a netns, the
// host end prevResult names.
func (n *conf) removeLinks(args *skel.Args, att nft.Attachment) error {
	h, err := netlink.NewHandle()
	if err != nil {
		return fmt.Errorf("ptp: opening netlink: %w", err)
	}
	defer h.Close()
	host, err := h.LinkByName(hostAltName(att))
	switch {
	case err == nil:
		if err := h.LinkDel(host); err != nil && !link.IsNotFound(err) {
			return fmt.Errorf("ptp: deleting host end %q: %w", host.Attrs().Name, err)
		}
		return nil
	case !link.IsNotFound(err):
		return fmt.Errorf("ptp: looking up the host end %q: %w", hostAltName(att), err)
	}
	if args.Netns != "" {
		err := netns.DoPath(args.Netns, func() error {
			l, err := netlink.LinkByName(args.IfName)
			if link.IsNotFound(err) {
				return nil
			}
			if err != nil {
				return err
			}
			if err := netlink.LinkDel(l); err != nil && !link.IsNotFound(err) {
				return err
			}
			return nil
		})
		if err != nil && !errors.Is(err, netns.ErrNotExist) {
			return fmt.Errorf("ptp: deleting %q in %s: %w", args.IfName, args.Netns, err)
		}
		return nil
	}
	if name := n.prevHostEnd(); name != "" {
		l, err := h.LinkByName(name)
		// Only a veth without an attachment name: one with a name belongs
		// to another attachment now.
		if err == nil && l.Type() == "veth" && !hasAltNamePrefix(l, altNamePrefix) {
			if err := h.LinkDel(l); err != nil && !link.IsNotFound(err) {
				return fmt.Errorf("ptp: deleting host end %q: %w", name, err)
			}
		}
	}
	return nil
}

// prevHostEnd is the host end's name as prevResult records it.
func (n *conf) prevHostEnd() string {
	if r := n.PrevResult; r != nil && len(r.Interfaces) == 2 && r.Interfaces[hostIfIndex].Sandbox == "" {
		return r.Interfaces[hostIfIndex].Name
	}
	return ""
}

func hasAltNamePrefix(l netlink.Link, prefix string) bool {
	for _, alt := range l.Attrs().AltNames {
		if strings.HasPrefix(alt, prefix) {
			return true
		}
	}
	return false
}

// check verifies what add made, as recorded in prevResult: the container end
// with its addresses and routes, the host end with the gateways and the
// routes to the container, and the masquerade.
func check(ctx context.Context, args *skel.Args) error {
	n, err := parse(args)
	if err != nil {
		return err
	}
	if _, err := skel.Delegate(ctx, args, "CHECK", n.IPAM.Type, args.StdinData); err != nil {
		return err
	}
	r := n.PrevResult
	if r == nil {
		return invalid("prevResult is required for CHECK")
	}
	contIndex := -1
	for i, iface := range r.Interfaces {
		if iface.Name == args.IfName && iface.Sandbox == args.Netns {
			contIndex = i
		}
	}
	if contIndex < 0 {
		return invalid("prevResult has no interface %q in %s", args.IfName, args.Netns)
	}
	contIface := r.Interfaces[contIndex]
	var wantIPs []*cni.IPConfig
	for _, ip := range r.IPs {
		if ip.Interface != nil && *ip.Interface == contIndex {
			wantIPs = append(wantIPs, ip)
		}
	}
	p, err := planFor(&cni.Result{IPs: wantIPs, Routes: r.Routes}, n.IPAM.Type)
	if err != nil {
		return err
	}

	var peerIndex int
	err = netns.DoPath(args.Netns, func() error {
		h := &netlink.Handle{}
		l, err := link.VerifyContainerVeth(h, args.IfName, contIface.Mac)
		if err != nil {
			return err
		}
		peerIndex = l.Attrs().ParentIndex
		if err := link.VerifyAddresses(h, l, derefAll(p.addrs)); err != nil {
			return err
		}
		return link.VerifyRoutes(h, l, p.routes)
	})
	if err != nil {
		if errors.Is(err, netns.ErrNotExist) {
			return args.NetnsError(err)
		}
		return fmt.Errorf("ptp: %w", err)
	}

	h, err := netlink.NewHandle()
	if err != nil {
		return fmt.Errorf("ptp: opening netlink: %w", err)
	}
	defer h.Close()
	host, err := h.LinkByIndex(peerIndex)
	if err != nil {
		return fmt.Errorf("ptp: host end (index %d) of %q: %w", peerIndex, args.IfName, err)
	}
	if name := n.prevHostEnd(); name != "" {
		if name != host.Attrs().Name {
			return fmt.Errorf("ptp: the host end of %q is %q, prevResult says %q", args.IfName, host.Attrs().Name, name)
		}
		if mac := r.Interfaces[hostIfIndex].Mac; mac != "" && mac != host.Attrs().HardwareAddr.String() {
			return fmt.Errorf("ptp: host end %q has MAC %s, prevResult says %s", name, host.Attrs().HardwareAddr, mac)
		}
	}
	var gateways []net.IPNet
	for _, gw := range p.gateways {
		gateways = append(gateways, *link.SingleAddress(gw))
	}
	var routes []link.Route
	for _, ip := range p.ips {
		routes = append(routes, link.Route{Dst: *link.SingleAddress(ip)})
	}
	if err := link.VerifyAddresses(h, host, gateways); err != nil {
		return fmt.Errorf("ptp: host end: %w", err)
	}
	if err := link.VerifyRoutes(h, host, routes); err != nil {
		return fmt.Errorf("ptp: host end: %w", err)
	}
	if n.IPMasq {
		return checkMasquerade(n.attachment(args), derefAll(p.addrs))
	}
	return nil
}

func derefAll(nets []*net.IPNet) []net.IPNet {
	out := make([]net.IPNet, len(nets))
	for i, n := range nets {
		out[i] = *n
	}
	return out
}

// checkMasquerade verifies that each address has its masquerade element,
// and that the program it hangs off is intact.
func checkMasquerade(att nft.Attachment, addrs []net.IPNet) error {
	conn, err := nft.Open()
	if err != nil {
		return fmt.Errorf("ptp: %w", err)
	}
	defer conn.Close()
	if err := conn.CheckAttachmentRules(masquerade(att, addrs)); err != nil {
		return fmt.Errorf("ptp: %w", err)
	}
	return nil
}

// status reports whether ADD can work: the IPAM plugin must be ready.
func status(ctx context.Context, args *skel.Args) error {
	n, err := parse(args)
	if err != nil {
		return err
	}
	_, err = skel.Delegate(ctx, args, "STATUS", n.IPAM.Type, args.StdinData)
	return err
}

// gc forwards GC to IPAM, removes the network's masquerade elements and
// reference masquerade rules whose attachment is not in
// cni.dev/valid-attachments, and deletes the host ends of such attachments
// (a veth pair whose container outlived its runtime), carrying on past
// errors.
func gc(ctx context.Context, args *skel.Args) error {
	n, err := parse(args)
	if err != nil {
		return err
	}
	var errs []error
	if _, err := skel.Delegate(ctx, args, "GC", n.IPAM.Type, args.StdinData); err != nil {
		errs = append(errs, err)
	}
	keep := nft.KeepValid(&n.PluginConf)
	if conn, err := nft.Open(); err != nil {
		errs = append(errs, fmt.Errorf("ptp: %w", err))
	} else {
		if err := conn.CollectAttachmentRules(n.Name, keep, nft.Features{Masquerade: true}); err != nil {
			errs = append(errs, fmt.Errorf("ptp: %w", err))
		}
		conn.Close()
	}
	if err := collectHostEnds(n.Name, keep); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// collectHostEnds deletes the network's host ends whose attachment is not in
// keep.
func collectHostEnds(network string, keep nft.KeepSet) error {
	h, err := netlink.NewHandle()
	if err != nil {
		return fmt.Errorf("ptp: opening netlink: %w", err)
	}
	defer h.Close()
	ends, err := link.ListByAltNamePrefix(h, networkAltNamePrefix(network))
	if err != nil {
		return fmt.Errorf("ptp: %w", err)
	}
	var errs []error
	for alt, l := range ends {
		if !keep.Stale(network, strings.TrimPrefix(alt, altNamePrefix)) {
			continue
		}
		if err := h.LinkDel(l); err != nil && !link.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("ptp: deleting leaked host end %q: %w", l.Attrs().Name, err))
		}
	}
	return errors.Join(errs...)
}
