// Package portmap is the portmap meta plugin: it forwards host ports to the
// container (runtimeConfig.portMappings) with nftables over netlink. See
// README.md for the keys and internal/nft/portmap.go for the program.
package portmap

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/link"
	"github.com/cnikit/cnikit/internal/nft"
	"github.com/cnikit/cnikit/skel"
)

func init() {
	skel.Register(&skel.Plugin{
		Name:   "portmap",
		About:  "cnikit portmap plugin: forwards host ports to the container with nftables",
		Add:    add,
		Del:    del,
		Check:  check,
		Status: status,
		GC:     gc,
	})
}

func attachment(c *conf, args *skel.Args) nft.Attachment {
	return nft.Attachment{Network: c.Name, ContainerID: args.ContainerID, IfName: args.IfName}
}

func add(ctx context.Context, args *skel.Args) (*cni.Result, error) {
	c, err := parse(args)
	if err != nil {
		return nil, err
	}
	if c.PrevResult == nil {
		return nil, invalid("must be called as a chained plugin: prevResult is missing")
	}
	mappings, err := c.mappings()
	if err != nil {
		return nil, err
	}
	if len(mappings) == 0 {
		return c.PrevResult, nil // nothing to do, and nothing is touched
	}
	att := attachment(c, args)
	v4, v6 := containerIPs(c.PrevResult, args.IfName)
	ports := c.hostPorts(mappings, v4, v6)

	conn, err := nft.Open()
	if err != nil {
		return nil, cni.Errorf(cni.CodePluginNotAvailable, "portmap: %v", err)
	}
	defer conn.Close()
	// A second ADD of the same attachment (no DEL in between) replaces what
	// the first programmed.
	switch old, err := readRecord(att); {
	case err != nil:
		args.Log.Warn("replacing an unreadable record", "error", err)
		if _, err := removeByComment(conn, att); err != nil {
			return nil, err
		}
	case old != nil:
		if err := removeRecorded(conn, old); err != nil {
			return nil, err
		}
	}
	if len(ports) == 0 {
		args.Log.Info("no container address of the mappings' family in prevResult; nothing to map")
		return c.PrevResult, removeRecord(att)
	}

	// route_localnet lets connections from 127.0.0.1 reach the container
	// (they are masqueraded on the way); when it must be set, the guard
	// that drops martian 127.0.0.0/8 traffic goes in the same batch, before.
	var localnetIface string
	if c.snat() && hasFamily(ports, false) {
		if iface := routeInterface(v4.IP); iface != "" {
			if v, err := link.Sysctl(routeLocalnet(iface)); err == nil && v != "1" {
				localnetIface = iface
			}
		}
	}
	// The record is written first: elements never exist without one, so a
	// DEL always finds what to delete.
	if err := writeRecord(recordOf(att, ports)); err != nil {
		return nil, err
	}
	if err := program(conn, att, ports, localnetIface != ""); err != nil {
		removeRecord(att)
		return nil, err
	}
	if localnetIface != "" {
		if err := link.SetSysctl(routeLocalnet(localnetIface), "1"); err != nil {
			return nil, fmt.Errorf("portmap: %w", err)
		}
	}
	if err := flushUDPConntrack(ports); err != nil {
		args.Log.Warn("could not flush stale UDP conntrack entries", "error", err)
	}
	return c.PrevResult, nil
}

// program adds the attachment's elements in one batch. When a host port is
// held with other data, it finds out by whom: another attachment's hold is
// refused with an error naming it; this attachment's own stale elements are
// evicted and the batch retried.
func program(conn *nft.Conn, att nft.Attachment, ports []nft.HostPort, guard bool) error {
	queue := func() error {
		if guard {
			if err := conn.AddLocalnetGuard(); err != nil {
				return err
			}
		}
		return conn.AddHostPorts(att, ports)
	}
	if err := queue(); err != nil {
		return fmt.Errorf("portmap: %w", err)
	}
	err := conn.Flush()
	if nft.IsClash(err) {
		clashes, lerr := conn.ResolveHostPortClashes(att, ports)
		if lerr != nil {
			return fmt.Errorf("portmap: %w (while looking into: %v)", lerr, err)
		}
		if len(clashes) > 0 {
			return clashError(clashes)
		}
		if err = queue(); err == nil {
			err = conn.Flush()
		}
	}
	if err != nil {
		return fmt.Errorf("portmap: %w", err)
	}
	return nil
}

// clashError names the mappings another attachment holds.
func clashError(clashes []nft.HostPortClash) error {
	var parts []string
	seen := map[string]bool{}
	for _, c := range clashes {
		where := "any address"
		if c.Port.HostIP != nil {
			where = c.Port.HostIP.String()
		}
		s := fmt.Sprintf("hostPort %d/%s (%s) is already mapped by another container (%s)",
			c.Port.Port, protocolName(c.Port.Protocol), where, holderOf(c.Holder))
		if !seen[s] {
			seen[s] = true
			parts = append(parts, s)
		}
	}
	return invalid("%s", strings.Join(parts, "; "))
}

// holderOf keeps the readable part of an element comment.
func holderOf(comment string) string {
	if _, names, ok := strings.Cut(comment, ", "); ok {
		return names
	}
	return comment
}

// hasFamily reports whether one of ports is IPv6 (v6) or IPv4 (!v6).
func hasFamily(ports []nft.HostPort, v6 bool) bool {
	for _, p := range ports {
		if (p.Container.IP.To4() == nil) == v6 {
			return true
		}
	}
	return false
}

func routeLocalnet(iface string) string { return "net/ipv4/conf/" + iface + "/route_localnet" }

// routeInterface is the host interface that routes to ip, or "" when there
// is no route.
func routeInterface(ip net.IP) string {
	routes, err := netlink.RouteGet(ip)
	if err != nil || len(routes) == 0 {
		return ""
	}
	l, err := netlink.LinkByIndex(routes[0].LinkIndex)
	if err != nil {
		return ""
	}
	return l.Attrs().Name
}

// removeRecorded deletes the elements of a record, by key; when some are
// gone or held by another attachment now, it deletes what carries the
// attachment's comment instead.
func removeRecorded(conn *nft.Conn, r *record) error {
	att := r.attachment()
	ports, err := r.hostPorts()
	if err == nil {
		if err = conn.DelHostPorts(att, ports); err == nil {
			err = conn.Flush()
		}
	}
	if err != nil {
		_, err = removeByComment(conn, att)
	}
	return err
}

func removeByComment(conn *nft.Conn, att nft.Attachment) ([]nft.HostPortElement, error) {
	found, err := conn.DelHostPortsOf(att)
	if err == nil {
		err = conn.Flush()
	}
	if err != nil {
		return nil, fmt.Errorf("portmap: removing the nftables elements of %s/%s: %w", att.ContainerID, att.IfName, err)
	}
	return found, nil
}

// del removes the attachment's mappings as its record lists them: neither
// prevResult, portMappings nor the namespace is needed. Without a record,
// it does nothing unless the runtime resent portMappings, in which case it
// looks for elements carrying the attachment's comment, and for the
// reference portmap's nftables rules of the container.
func del(ctx context.Context, args *skel.Args) error {
	c, err := parse(args)
	if err != nil {
		return err
	}
	att := attachment(c, args)
	rec, err := readRecord(att)
	if err != nil {
		args.Log.Warn("ignoring unreadable record", "error", err)
	}
	if rec == nil && err == nil && len(c.RuntimeConfig.PortMappings) == 0 {
		return nil
	}
	conn, err := nft.Open()
	if err != nil {
		return fmt.Errorf("portmap: %w", err)
	}
	defer conn.Close()
	var removed []nft.HostPort
	if rec != nil {
		if err := removeRecorded(conn, rec); err != nil {
			return err
		}
		removed, _ = rec.hostPorts()
	} else {
		// No record: an attachment of a reference portmap (nftables
		// backend) on a host upgraded to cnikit, or a lost record.
		_, err := conn.DelHostPortsOf(att)
		if err == nil {
			_, err = conn.DelReferenceHostPorts(att.ContainerID)
		}
		if err == nil {
			err = conn.Flush()
		}
		if err != nil {
			return fmt.Errorf("portmap: removing the nftables rules of %s/%s: %w", att.ContainerID, att.IfName, err)
		}
		if mappings, err := c.mappings(); err == nil {
			v4, v6 := containerIPs(c.PrevResult, args.IfName)
			if v4 == nil {
				v4 = &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(32, 32)}
			}
			if v6 == nil {
				v6 = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(128, 128)}
			}
			removed = c.hostPorts(mappings, v4, v6)
		}
	}
	if err := flushUDPConntrack(removed); err != nil {
		args.Log.Warn("could not flush UDP conntrack entries", "error", err)
	}
	return removeRecord(att)
}

// check verifies that the attachment's elements are in place.
func check(ctx context.Context, args *skel.Args) error {
	c, err := parse(args)
	if err != nil {
		return err
	}
	if c.PrevResult == nil {
		return invalid("prevResult is required for CHECK")
	}
	mappings, err := c.mappings()
	if err != nil || len(mappings) == 0 {
		return err
	}
	v4, v6 := containerIPs(c.PrevResult, args.IfName)
	ports := c.hostPorts(mappings, v4, v6)
	if len(ports) == 0 {
		return nil
	}
	conn, err := nft.Open()
	if err != nil {
		return fmt.Errorf("portmap: %w", err)
	}
	defer conn.Close()
	if err := conn.CheckHostPorts(attachment(c, args), ports); err != nil {
		return fmt.Errorf("portmap: %w", err)
	}
	return nil
}

// status fails with code 50 when nftables cannot be used here.
func status(ctx context.Context, args *skel.Args) error {
	if _, err := parse(args); err != nil {
		return err
	}
	conn, err := nft.Open()
	if err == nil {
		err = conn.ProbeHostPorts()
		conn.Close()
	}
	if err != nil {
		return cni.Errorf(cni.CodePluginNotAvailable, "portmap: nftables is not usable: %v", err)
	}
	return nil
}

// gc removes the network's elements and records whose attachment is not in
// cni.dev/valid-attachments, carrying on past errors.
func gc(ctx context.Context, args *skel.Args) error {
	c, err := parse(args)
	if err != nil {
		return err
	}
	keep := nft.KeepValid(&c.PluginConf)
	var errs []error
	conn, err := nft.Open()
	if err != nil {
		return fmt.Errorf("portmap: %w", err)
	}
	defer conn.Close()
	if _, err := conn.GCHostPorts(c.Name, keep); err != nil {
		errs = append(errs, fmt.Errorf("portmap: %w", err))
	} else if err := conn.Flush(); err != nil {
		errs = append(errs, fmt.Errorf("portmap: %w", err))
	}

	paths, err := networkRecords(c.Name)
	if err != nil {
		errs = append(errs, err)
	}
	var removed []nft.HostPort
	for _, path := range paths {
		rec, err := readRecordFile(path)
		if err != nil || rec == nil {
			if err != nil {
				errs = append(errs, err)
			}
			continue
		}
		att := rec.attachment()
		if rec.Network != c.Name || keep[att.Key()] {
			continue
		}
		if ports, err := rec.hostPorts(); err == nil {
			removed = append(removed, ports...)
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("portmap: %w", err))
		}
	}
	removeNetworkDir(c.Name)
	if err := flushUDPConntrack(removed); err != nil {
		args.Log.Warn("could not flush UDP conntrack entries", "error", err)
	}
	return errors.Join(errs...)
}
