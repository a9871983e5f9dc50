package bridge

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
	"github.com/cnikit/cnikit/netns"
	"github.com/cnikit/cnikit/skel"
)

// del undoes add. Order matters: the nftables elements go first, while the
// address is still reserved (so no newer container can hold it yet); then
// IPAM releases the address while the link still exists (a DHCP release
// needs it; reference bug plugins#791); the link goes last. Missing netns,
// link or rules are success. The bridge and its gateway address stay.
func del(ctx context.Context, args *skel.Args) error {
	n, err := parse(args)
	if err != nil {
		return err
	}
	var errs []error
	if n.IPMasq || n.MacSpoofChk {
		if err := n.teardownNftables(args); err != nil {
			errs = append(errs, err)
		}
	}
	if n.IPAM.Type != "" {
		if _, err := skel.Delegate(ctx, args, "DEL", n.IPAM.Type, args.StdinData); err != nil {
			return err
		}
	}
	if args.Netns != "" {
		err := netns.DoPath(args.Netns, func() error {
			l, err := netlink.LinkByName(args.IfName)
			if err != nil {
				var notFound netlink.LinkNotFoundError
				if errors.As(err, &notFound) {
					return nil
				}
				return err
			}
			if err := netlink.LinkDel(l); err != nil && !isGone(err) {
				return err
			}
			return nil
		})
		if err != nil && !errors.Is(err, netns.ErrNotExist) {
			errs = append(errs, fmt.Errorf("bridge: deleting %q in %s: %w", args.IfName, args.Netns, err))
		}
	}
	return errors.Join(errs...)
}

func isGone(err error) bool {
	var notFound netlink.LinkNotFoundError
	return errors.As(err, &notFound) || errors.Is(err, unix.ENODEV)
}

// teardownNftables removes the attachment's masquerade elements, MAC spoof
// check and reference-style masquerade rules in one batch. It deletes by key
// when prevResult says what to delete, and otherwise (or when something is
// already gone) finds the objects by their comment.
func (n *conf) teardownNftables(args *skel.Args) error {
	conn, err := nft.Open()
	if err != nil {
		return fmt.Errorf("bridge: %w", err)
	}
	defer conn.Close()
	addrs, hostPort := n.fromPrevResult(args)
	if err := conn.ClearAttachmentRules(n.nftRules(args, addrs, hostPort, nil)); err != nil {
		return fmt.Errorf("bridge: %w", err)
	}
	return nil
}

// fromPrevResult returns the container's addresses (with their prefix
// length) and the host port's name recorded in prevResult, if there is one.
func (n *conf) fromPrevResult(args *skel.Args) ([]net.IPNet, string) {
	r := n.PrevResult
	if r == nil {
		return nil, ""
	}
	var ips []net.IPNet
	for _, ip := range r.IPs {
		if ip.Interface != nil && *ip.Interface >= 0 && *ip.Interface < len(r.Interfaces) {
			iface := r.Interfaces[*ip.Interface]
			if iface.Name != args.IfName || iface.Sandbox == "" {
				continue
			}
		}
		ips = append(ips, ip.Address)
	}
	var hostPort string
	if len(r.Interfaces) > 2 && r.Interfaces[0].Name == n.BrName && r.Interfaces[1].Sandbox == "" &&
		r.Interfaces[2].Name == args.IfName {
		hostPort = r.Interfaces[1].Name
	}
	return ips, hostPort
}

// check verifies what add made, as recorded in prevResult.
func check(ctx context.Context, args *skel.Args) error {
	n, err := parse(args)
	if err != nil {
		return err
	}
	if n.IPAM.Type != "" {
		if _, err := skel.Delegate(ctx, args, "CHECK", n.IPAM.Type, args.StdinData); err != nil {
			return err
		}
	}
	r := n.PrevResult
	if r == nil {
		return invalid("prevResult is required for CHECK")
	}
	var brIface, contIface *cni.Interface
	var contIndex int
	for i, iface := range r.Interfaces {
		switch {
		case iface.Name == n.BrName && iface.Sandbox == "":
			brIface = iface
		case iface.Name == args.IfName && iface.Sandbox == args.Netns:
			contIface, contIndex = iface, i
		}
	}
	if brIface == nil {
		return invalid("prevResult has no interface for bridge %q", n.BrName)
	}
	if contIface == nil {
		return invalid("prevResult has no interface %q in %s", args.IfName, args.Netns)
	}

	h, err := netlink.NewHandle()
	if err != nil {
		return err
	}
	defer h.Close()
	brLink, err := h.LinkByName(n.BrName)
	if err != nil {
		return fmt.Errorf("bridge: bridge %q: %w", n.BrName, err)
	}
	br, ok := brLink.(*netlink.Bridge)
	if !ok {
		return fmt.Errorf("bridge: %q is a %s link, not a bridge", n.BrName, brLink.Type())
	}
	// The bridge's MAC is not compared with prevResult's: a bridge cnikit
	// creates keeps its MAC, but one made by someone else without a fixed
	// MAC takes its lowest port's, which changes as other containers come
	// and go; that does not make this attachment broken.
	if n.PromiscMode && br.Promisc == 0 {
		return fmt.Errorf("bridge: bridge %q is not in promiscuous mode", n.BrName)
	}

	var wantIPs []*cni.IPConfig
	for _, ip := range r.IPs {
		if ip.Interface != nil && *ip.Interface == contIndex {
			wantIPs = append(wantIPs, ip)
		}
	}
	var peerIndex int
	err = netns.DoPath(args.Netns, func() error {
		l, err := link.VerifyContainerVeth(&netlink.Handle{}, args.IfName, contIface.Mac)
		if err != nil {
			return err
		}
		peerIndex = l.Attrs().ParentIndex
		return verifyAddressesAndRoutes(l, wantIPs, r.Routes)
	})
	if err != nil {
		if errors.Is(err, netns.ErrNotExist) {
			return args.NetnsError(err)
		}
		return fmt.Errorf("bridge: %w", err)
	}
	hostLink, err := h.LinkByIndex(peerIndex)
	if err != nil {
		return fmt.Errorf("bridge: host end (index %d) of %q: %w", peerIndex, args.IfName, err)
	}
	if hostLink.Attrs().MasterIndex != br.Index {
		return fmt.Errorf("bridge: host end %q of %q is not a port of %q", hostLink.Attrs().Name, args.IfName, n.BrName)
	}
	for _, iface := range r.Interfaces {
		if iface.Name == hostLink.Attrs().Name && iface.Mac != "" && iface.Mac != hostLink.Attrs().HardwareAddr.String() {
			return fmt.Errorf("bridge: host end %q has MAC %s, prevResult says %s", iface.Name, hostLink.Attrs().HardwareAddr, iface.Mac)
		}
	}
	if n.IPMasq || n.MacSpoofChk {
		return n.checkNftables(args, wantIPs, hostLink.Attrs().Name, contIface.Mac)
	}
	return nil
}

// verifyAddressesAndRoutes checks that the container interface carries its
// addresses, the kernel's route to each address's subnet, and the routes of
// the result (those of the main table).
func verifyAddressesAndRoutes(l netlink.Link, ips []*cni.IPConfig, routes []*cni.Route) error {
	h := &netlink.Handle{}
	addrs := make([]net.IPNet, 0, len(ips))
	want := make([]link.Route, 0, len(ips)+len(routes))
	for _, ip := range ips {
		addrs = append(addrs, ip.Address)
		want = append(want, link.Route{Dst: net.IPNet{IP: ip.Address.IP.Mask(ip.Address.Mask), Mask: ip.Address.Mask}})
	}
	for _, r := range routes {
		want = append(want, link.Route{Dst: r.Dst, GW: r.GW, Table: r.Table})
	}
	if err := link.VerifyAddresses(h, l, addrs); err != nil {
		return err
	}
	return link.VerifyRoutes(h, l, want)
}

// checkNftables verifies the attachment's masquerade elements and MAC spoof
// check, and the programs they hang off.
func (n *conf) checkNftables(args *skel.Args, ips []*cni.IPConfig, hostPort, contMAC string) error {
	conn, err := nft.Open()
	if err != nil {
		return fmt.Errorf("bridge: %w", err)
	}
	defer conn.Close()
	addrs := make([]net.IPNet, 0, len(ips))
	for _, ip := range ips {
		addrs = append(addrs, ip.Address)
	}
	mac, _ := net.ParseMAC(contMAC) // none when prevResult records none
	if err := conn.CheckAttachmentRules(n.nftRules(args, addrs, hostPort, mac)); err != nil {
		return fmt.Errorf("bridge: %w", err)
	}
	return nil
}

// status reports whether ADD can work: the bridge, if it exists, must be a
// bridge, and the IPAM plugin must be ready.
func status(ctx context.Context, args *skel.Args) error {
	n, err := parse(args)
	if err != nil {
		return err
	}
	if l, err := netlink.LinkByName(n.BrName); err == nil {
		if _, ok := l.(*netlink.Bridge); !ok {
			return cni.Errorf(cni.CodePluginNotAvailable, "bridge: %q exists but is a %s link, not a bridge", n.BrName, l.Type())
		}
	}
	if n.IPAM.Type != "" {
		if _, err := skel.Delegate(ctx, args, "STATUS", n.IPAM.Type, args.StdinData); err != nil {
			return err
		}
	}
	return nil
}

// gc forwards GC to IPAM and removes the network's nftables objects whose
// attachment is not in cni.dev/valid-attachments, carrying on past errors.
func gc(ctx context.Context, args *skel.Args) error {
	n, err := parse(args)
	if err != nil {
		return err
	}
	var errs []error
	if n.IPAM.Type != "" {
		if _, err := skel.Delegate(ctx, args, "GC", n.IPAM.Type, args.StdinData); err != nil {
			errs = append(errs, err)
		}
	}
	keep := nft.KeepValid(&n.PluginConf)
	conn, err := nft.Open()
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("bridge: %w", err))...)
	}
	defer conn.Close()
	// Both kinds whatever the configuration says now: an attachment made
	// while it said otherwise may have left either.
	if err := conn.CollectAttachmentRules(n.Name, keep, nft.Features{Masquerade: true, MacSpoof: true}); err != nil {
		errs = append(errs, fmt.Errorf("bridge: %w", err))
	}
	return errors.Join(errs...)
}
