package bridge

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/cnikit/cnikit/cni"
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
	att := n.attachment(args)
	ips, hostPort := n.fromPrevResult(args)
	queue := func(byKey bool) error {
		if n.IPMasq {
			if byKey && len(ips) > 0 {
				if err := conn.DelMasqueradeIPs(ips); err != nil {
					return err
				}
			} else if _, err := conn.DelMasqueradeOf(att); err != nil {
				return err
			}
			if _, err := conn.DelReferenceMasquerade(att); err != nil {
				return err
			}
		}
		if n.MacSpoofChk {
			if byKey && hostPort != "" {
				if err := conn.DelMacSpoof(att, hostPort); err != nil {
					return err
				}
			} else if _, err := conn.DelMacSpoofOf(att); err != nil {
				return err
			}
		}
		return nil
	}
	byKey := len(ips) > 0 || hostPort != ""
	if err := queue(byKey); err != nil {
		return fmt.Errorf("bridge: %w", err)
	}
	err = conn.Flush()
	if byKey && nft.IsNotFound(err) {
		if err = queue(false); err == nil {
			err = conn.Flush()
		}
	}
	if err != nil {
		return fmt.Errorf("bridge: removing nftables objects: %w", err)
	}
	return nil
}

// fromPrevResult returns the container's addresses and the host port's name
// recorded in prevResult, if there is one.
func (n *conf) fromPrevResult(args *skel.Args) ([]net.IP, string) {
	r := n.PrevResult
	if r == nil {
		return nil, ""
	}
	var ips []net.IP
	for _, ip := range r.IPs {
		if ip.Interface != nil && *ip.Interface >= 0 && *ip.Interface < len(r.Interfaces) {
			iface := r.Interfaces[*ip.Interface]
			if iface.Name != args.IfName || iface.Sandbox == "" {
				continue
			}
		}
		ips = append(ips, ip.Address.IP)
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
	if brIface.Mac != "" && br.HardwareAddr.String() != brIface.Mac {
		return fmt.Errorf("bridge: bridge %q has MAC %s, prevResult says %s", n.BrName, br.HardwareAddr, brIface.Mac)
	}
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
		l, err := netlink.LinkByName(args.IfName)
		if err != nil {
			return fmt.Errorf("container interface %q: %w", args.IfName, err)
		}
		if _, ok := l.(*netlink.Veth); !ok {
			return fmt.Errorf("container interface %q is a %s, not a veth", args.IfName, l.Type())
		}
		if contIface.Mac != "" && l.Attrs().HardwareAddr.String() != contIface.Mac {
			return fmt.Errorf("container interface %q has MAC %s, prevResult says %s", args.IfName, l.Attrs().HardwareAddr, contIface.Mac)
		}
		peerIndex = l.Attrs().ParentIndex
		return checkAddressesAndRoutes(l, wantIPs, r.Routes)
	})
	if err != nil {
		if errors.Is(err, netns.ErrNotExist) {
			return netnsError(err, args.Netns)
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
		return n.checkNftables(args, wantIPs)
	}
	return nil
}

func checkAddressesAndRoutes(l netlink.Link, ips []*cni.IPConfig, routes []*cni.Route) error {
	addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("listing addresses of %q: %w", l.Attrs().Name, err)
	}
	for _, want := range ips {
		found := false
		for _, a := range addrs {
			if a.IPNet.String() == want.Address.String() {
				found = true
			}
		}
		if !found {
			return fmt.Errorf("container interface %q lacks address %s", l.Attrs().Name, want.Address.String())
		}
	}
	have, err := netlink.RouteList(l, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("listing routes of %q: %w", l.Attrs().Name, err)
	}
	hasRoute := func(dst *net.IPNet, gw net.IP) bool {
		for _, rt := range have {
			d := rt.Dst
			if d == nil {
				if ones, _ := dst.Mask.Size(); ones != 0 {
					continue
				}
				if (dst.IP.To4() != nil) != (rt.Family == netlink.FAMILY_V4) {
					continue
				}
			} else if d.String() != dst.String() {
				continue
			}
			if gw == nil || gw.Equal(rt.Gw) {
				return true
			}
		}
		return false
	}
	for _, want := range ips {
		subnet := &net.IPNet{IP: want.Address.IP.Mask(want.Address.Mask), Mask: want.Address.Mask}
		if !hasRoute(subnet, nil) {
			return fmt.Errorf("container interface %q has no route to %s", l.Attrs().Name, subnet)
		}
	}
	for _, r := range routes {
		if r.Table != nil {
			continue // other tables are not listed here
		}
		if !hasRoute(&r.Dst, r.GW) {
			return fmt.Errorf("container interface %q lacks route %s via %v", l.Attrs().Name, r.Dst.String(), r.GW)
		}
	}
	return nil
}

// checkNftables verifies the attachment's masquerade elements and MAC spoof
// check are in place.
func (n *conf) checkNftables(args *skel.Args, ips []*cni.IPConfig) error {
	conn, err := nft.Open()
	if err != nil {
		return fmt.Errorf("bridge: %w", err)
	}
	defer conn.Close()
	att := n.attachment(args)
	if n.IPMasq {
		elems, err := conn.FindMasquerade(att)
		if err != nil {
			return fmt.Errorf("bridge: %w", err)
		}
		for _, ip := range ips {
			found := false
			for _, e := range elems {
				if e.IP.Equal(ip.Address.IP) {
					found = true
				}
			}
			if !found {
				return fmt.Errorf("bridge: no masquerade for %s in nftables map %s %s", ip.Address.IP, nft.TableName, "masq4/masq6")
			}
		}
	}
	if n.MacSpoofChk {
		elems, err := conn.FindMacSpoof(att)
		if err != nil {
			return fmt.Errorf("bridge: %w", err)
		}
		if len(elems) == 0 {
			return fmt.Errorf("bridge: no MAC spoof check for %s/%s", args.ContainerID, args.IfName)
		}
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
	var keepList []nft.Attachment
	for _, a := range n.GCValidAttachments() {
		keepList = append(keepList, nft.Attachment{ContainerID: a.ContainerID, IfName: a.IfName})
	}
	keep := nft.NewKeepSet(n.Name, keepList)
	conn, err := nft.Open()
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("bridge: %w", err))...)
	}
	defer conn.Close()
	// Each kind is flushed on its own so one failure does not stop the rest.
	for _, step := range []func() (int, error){
		func() (int, error) { return conn.GCMasquerade(n.Name, keep) },
		func() (int, error) { return conn.GCReferenceMasquerade(n.Name, keep) },
		func() (int, error) { return conn.GCMacSpoof(n.Name, keep) },
	} {
		if _, err := step(); err != nil {
			errs = append(errs, fmt.Errorf("bridge: %w", err))
			continue
		}
		if err := conn.Flush(); err != nil {
			errs = append(errs, fmt.Errorf("bridge: %w", err))
		}
	}
	return errors.Join(errs...)
}
