// Package bandwidth is the bandwidth meta plugin: chained after a plugin
// that gives the container a veth (bridge, ptp), it limits the traffic to
// the container with a token bucket filter on the host end of the veth, and
// the traffic from the container with one on an IFB device that the host
// end's ingress is redirected to. Everything is done over netlink.
package bandwidth

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/link"
	"github.com/cnikit/cnikit/internal/nft"
	"github.com/cnikit/cnikit/internal/rollback"
	"github.com/cnikit/cnikit/netns"
	"github.com/cnikit/cnikit/skel"
)

func init() {
	skel.Register(&skel.Plugin{
		Name:  "bandwidth",
		About: "cnikit bandwidth plugin: limits a veth-attached container's traffic with token bucket filters",
		// A chain, and with it the interfaces of prevResult this plugin
		// needs, starts at 0.3.0; the reference accepts the same versions.
		Versions: cni.VersionsFrom("0.3.0"),
		Add:      add,
		Del:      del,
		Check:    check,
		Status:   status,
		GC:       gc,
	})
}

// aliasPrefix starts the alias of every IFB this plugin makes; the rest is
// the attachment's comment (nft.Attachment.Comment: its key, then network,
// interface and container in clear), by which GC tells whose IFB it is.
const aliasPrefix = "cnikit-bandwidth "

func attachment(c *conf, args *skel.Args) nft.Attachment {
	return nft.Attachment{Network: c.Name, ContainerID: args.ContainerID, IfName: args.IfName}
}

func add(ctx context.Context, args *skel.Args) (res *cni.Result, err error) {
	c, err := parse(args)
	if err != nil {
		return nil, err
	}
	if !c.shapes() {
		if c.PrevResult != nil {
			return c.PrevResult, nil
		}
		return &cni.Result{CNIVersion: args.Version}, nil
	}
	if c.PrevResult == nil {
		return nil, invalid("prevResult is required: bandwidth must follow an interface plugin in a chain")
	}
	host, err := hostVeth(args, c.PrevResult)
	if err != nil {
		return nil, err
	}
	hostIndex := host.Attrs().Index
	result := c.PrevResult

	var undo rollback.Steps
	defer undo.OnError(&err)
	if c.ingress != nil {
		if err = link.SetRootTBF(hostIndex, *c.ingress); err != nil {
			return nil, fmt.Errorf("bandwidth: ingress limit on %q: %w", host.Attrs().Name, err)
		}
		undo = append(undo, func() { _ = link.DeleteRootTBF(hostIndex) })
	}
	if c.egress != nil {
		name := ifbName(c.Name, args.ContainerID)
		alias := aliasPrefix + attachment(c, args).Comment()
		ifb, ierr := link.CreateIFB(name, host.Attrs().MTU, alias)
		if errors.Is(ierr, link.ErrExists) {
			// Left by an ADD that failed or was never deleted: start over.
			if ierr = link.DeleteNamed(name); ierr == nil {
				ifb, ierr = link.CreateIFB(name, host.Attrs().MTU, alias)
			}
		}
		if err = ierr; err != nil {
			return nil, fmt.Errorf("bandwidth: %w", err)
		}
		undo = append(undo, func() { _ = link.DeleteNamed(name) })
		// The IFB is shaped before any traffic is sent to it.
		if err = link.SetRootTBF(ifb.Attrs().Index, *c.egress); err != nil {
			return nil, fmt.Errorf("bandwidth: egress limit on %q: %w", name, err)
		}
		if err = link.RedirectIngress(hostIndex, ifb.Attrs().Index); err != nil {
			return nil, fmt.Errorf("bandwidth: redirecting %q to %q: %w", host.Attrs().Name, name, err)
		}
		undo = append(undo, func() { _ = link.DeleteIngress(hostIndex) })
		result.Interfaces = append(result.Interfaces, &cni.Interface{Name: name, Mac: ifb.Attrs().HardwareAddr.String()})
	}
	return result, nil
}

// hostVeth finds the host end of the container interface's veth: the peer
// index the container side reports, looked up in the calling thread's (the
// host's) namespace, which must be a veth whose peer index is the container
// interface's and, as with the reference, an interface of prevResult
// outside any sandbox. Only veth attachments can be shaped this way.
func hostVeth(args *skel.Args, prev *cni.Result) (netlink.Link, error) {
	host, err := findHostVeth(args.Netns, args.IfName)
	if err != nil {
		return nil, err
	}
	if prev != nil {
		for _, iface := range prev.Interfaces {
			if iface.Sandbox == "" && iface.Name == host.Attrs().Name {
				return host, nil
			}
		}
		return nil, invalid("the host end %q of %q is not an interface of prevResult", host.Attrs().Name, args.IfName)
	}
	return host, nil
}

// errNotVeth is returned (wrapped) when the attachment is not a veth pair
// with one end in the caller's namespace.
var errNotVeth = errors.New("not a veth with its peer in the host namespace")

func findHostVeth(netnsPath, ifName string) (netlink.Link, error) {
	var contIndex, peerIndex int
	err := netns.DoPath(netnsPath, func() error {
		l, err := netlink.LinkByName(ifName)
		if err != nil {
			return err
		}
		if _, ok := l.(*netlink.Veth); !ok {
			return fmt.Errorf("container interface %q is a %s link: %w", ifName, l.Type(), errNotVeth)
		}
		contIndex, peerIndex = l.Attrs().Index, l.Attrs().ParentIndex
		return nil
	})
	switch {
	case errors.Is(err, netns.ErrNotExist):
		return nil, cni.Errorf(cni.CodeUnknownContainer, "bandwidth: network namespace %q does not exist", netnsPath)
	case errors.Is(err, errNotVeth):
		return nil, invalid("%v: only veth-based attachments (bridge, ptp) can be shaped", err)
	case err != nil:
		return nil, fmt.Errorf("bandwidth: container interface %q: %w", ifName, err)
	}
	host, err := netlink.LinkByIndex(peerIndex)
	if err == nil {
		if v, ok := host.(*netlink.Veth); !ok || v.ParentIndex != contIndex {
			err = errNotVeth
		}
	}
	if err != nil {
		return nil, invalid("the peer (index %d) of container interface %q: %v", peerIndex, ifName, errNotVeth)
	}
	return host, nil
}

// del deletes the IFB, found by name from the network and container ID
// alone (so DEL needs neither prevResult nor the namespace, and finds the
// reference plugin's IFBs too), and, when the namespace still holds the
// attachment, the host end's TBF and ingress redirect, which would otherwise
// drop the container's traffic once the IFB is gone. Missing pieces are
// success.
func del(ctx context.Context, args *skel.Args) error {
	c, err := decode(args)
	if err != nil {
		return err
	}
	var errs []error
	if args.Netns != "" && c.limited() {
		if host, err := findHostVeth(args.Netns, args.IfName); err == nil {
			index := host.Attrs().Index
			errs = append(errs, link.DeleteIngress(index), link.DeleteRootTBF(index))
		}
	}
	if err := link.DeleteNamed(ifbName(c.Name, args.ContainerID)); err != nil {
		errs = append(errs, fmt.Errorf("bandwidth: %w", err))
	}
	return errors.Join(errs...)
}

// limited reports whether a limit key or the capability is present, valid or
// not: DEL tidies the host end only then.
func (c *conf) limited() bool {
	return c.IngressRate != nil || c.IngressBurst != nil || c.EgressRate != nil || c.EgressBurst != nil ||
		c.RuntimeConfig.Bandwidth != nil
}

// check verifies the TBFs' parameters and the redirect to the IFB.
func check(ctx context.Context, args *skel.Args) error {
	c, err := parse(args)
	if err != nil {
		return err
	}
	if c.PrevResult == nil {
		return invalid("prevResult is required: bandwidth must follow an interface plugin in a chain")
	}
	if !c.shapes() {
		return nil
	}
	host, err := hostVeth(args, c.PrevResult)
	if err != nil {
		return err
	}
	if c.ingress != nil {
		if err := compareTBF(host, *c.ingress, "ingress"); err != nil {
			return err
		}
	}
	if c.egress != nil {
		name := ifbName(c.Name, args.ContainerID)
		ifb, err := netlink.LinkByName(name)
		if err != nil {
			return fmt.Errorf("bandwidth: ifb %q: %w", name, err)
		}
		if err := compareTBF(ifb, *c.egress, "egress"); err != nil {
			return err
		}
		target, err := link.IngressRedirectTarget(host.Attrs().Index)
		if err != nil {
			return fmt.Errorf("bandwidth: %w", err)
		}
		if target != ifb.Attrs().Index {
			return fmt.Errorf("bandwidth: the ingress of %q is not redirected to %q", host.Attrs().Name, name)
		}
	}
	return nil
}

func compareTBF(l netlink.Link, want link.TBF, dir string) error {
	have, err := link.RootTBF(l.Attrs().Index)
	if err != nil {
		return fmt.Errorf("bandwidth: %s limit on %q: %w", dir, l.Attrs().Name, err)
	}
	if have != want {
		return fmt.Errorf("bandwidth: %s limit on %q is rate %d B/s, buffer %d, limit %d B; configured rate %d B/s, buffer %d, limit %d B",
			dir, l.Attrs().Name, have.Rate, have.Buffer, have.Limit, want.Rate, want.Buffer, want.Limit)
	}
	return nil
}

// status reports whether ADD can work: the configuration must be valid and
// the kernel's packet scheduler clock known (TBF buffers are in its ticks).
func status(ctx context.Context, args *skel.Args) error {
	if _, err := parse(args); err != nil {
		return err
	}
	if netlink.TickInUsec() == 0 {
		return cni.Errorf(cni.CodePluginNotAvailable, "bandwidth: the packet scheduler clock is unknown (/proc/net/psched unreadable)")
	}
	return nil
}

// gc deletes the IFBs this plugin made for this network whose attachment is
// not in cni.dev/valid-attachments. Each IFB's alias names its attachment;
// IFBs without one (the reference plugin's, whose name hashes network and
// container together) cannot be told apart by network and are left alone.
func gc(ctx context.Context, args *skel.Args) error {
	c, err := decode(args)
	if err != nil {
		return err
	}
	keep := map[string]bool{}
	for _, a := range c.GCValidAttachments() {
		keep[nft.Attachment{Network: c.Name, ContainerID: a.ContainerID, IfName: a.IfName}.Key()] = true
	}
	ifbs, err := link.IFBs()
	if err != nil {
		return fmt.Errorf("bandwidth: %w", err)
	}
	networkKey := nft.NetworkKey(c.Name) + "-"
	var errs []error
	for _, ifb := range ifbs {
		comment, ours := strings.CutPrefix(ifb.Alias, aliasPrefix)
		if !ours || !strings.HasPrefix(ifb.Name, ifbPrefix) || !strings.HasPrefix(comment, networkKey) {
			continue
		}
		key, _, _ := strings.Cut(comment, ",")
		if keep[key] {
			continue
		}
		if err := link.DeleteNamed(ifb.Name); err != nil {
			errs = append(errs, fmt.Errorf("bandwidth: %w", err))
		}
	}
	return errors.Join(errs...)
}
