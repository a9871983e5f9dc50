// Package firewall is the firewall meta plugin: chained after an interface
// plugin, it lets the container's addresses through the host's forward
// path, with one of three backends (nftables, iptables, firewalld), and can
// isolate the container's bridge from other bridges (ingressPolicy). See
// README.md.
package firewall

import (
	"context"
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/iptables"
	"github.com/cnikit/cnikit/internal/nft"
	"github.com/cnikit/cnikit/skel"
)

func init() {
	skel.Register(&skel.Plugin{
		Name:   "firewall",
		About:  "cnikit firewall plugin: lets container traffic through the host firewall (nftables, iptables or firewalld)",
		Add:    add,
		Del:    del,
		Check:  check,
		Status: status,
		GC:     gc,
	})
}

// backend is one way of letting containers through. DEL is not part of it:
// it cleans every backend, see del.
type backend interface {
	name() string
	add(ctx context.Context, a *attachment) error
	check(ctx context.Context, a *attachment) error
	gc(ctx context.Context, network string, keep nft.KeepSet) error
	status(ctx context.Context) error
}

func (c *conf) backendNamed(name string) backend {
	switch name {
	case backendIptables:
		return iptablesBackend{adminChain: c.IptablesAdminChainName, stateDir: c.StateDir}
	case backendFirewalld:
		return firewalldBackend{zone: c.FirewalldZone, stateDir: c.StateDir}
	default:
		return nftablesBackend{}
	}
}

// backend returns the configured backend, or picks one: firewalld when its
// rules are in the kernel (it owns the host's firewall and rejects forwarded
// traffic of unknown sources), else iptables when an iptables FORWARD chain
// drops by default (an nftables accept cannot override that drop), else
// nftables.
func (c *conf) backend(ctx context.Context) backend {
	if c.Backend != "" {
		return c.backendNamed(c.Backend)
	}
	if firewalldActive() {
		return c.backendNamed(backendFirewalld)
	}
	if forwardDropsByDefault() {
		return c.backendNamed(backendIptables)
	}
	return c.backendNamed(backendNftables)
}

// firewalldActive reports whether firewalld's rules are in the kernel: its
// nftables table (its default backend since firewalld 0.6) or, with its
// iptables backend, its FORWARD_direct chain. It is those rules that reject
// unknown sources, and looking for them is one request to the kernel where
// asking the bus whether firewalld runs (as the reference does) costs a
// D-Bus connection, about a millisecond, on every ADD.
func firewalldActive() bool {
	if _, ok, err := nft.LookupChain(unix.NFPROTO_INET, firewalldTable, firewalldForwardChain); err == nil && ok {
		return true
	}
	if iptables.Available(iptables.IPv4) != nil {
		return false
	}
	chains, err := iptables.LookupChain(filterTable, firewalldDirectChain, iptables.IPv4)
	return err == nil && chains[iptables.IPv4] != nil
}

// forwardDropsByDefault reports whether iptables' FORWARD chain (of the
// flavour iptables-restore writes, for either family) has policy DROP.
func forwardDropsByDefault() bool {
	var families []iptables.Family
	for _, f := range []iptables.Family{iptables.IPv4, iptables.IPv6} {
		if iptables.Available(f) == nil {
			families = append(families, f)
		}
	}
	chains, err := iptables.LookupChain(filterTable, builtinForwardChain, families...)
	if err != nil {
		return false
	}
	for _, c := range chains {
		if c != nil && c.Policy == "DROP" {
			return true
		}
	}
	return false
}

// add lets the container's addresses through and, under an isolating
// ingress policy, isolates its bridge; prevResult goes on unchanged.
func add(ctx context.Context, args *skel.Args) (*cni.Result, error) {
	c, err := parse(args)
	if err != nil {
		return nil, err
	}
	a, err := c.attachmentOf(args, true)
	if err != nil {
		return nil, err
	}
	if len(a.IPs) == 0 && a.Isolation == nil {
		return c.PrevResult, nil
	}
	// The port is looked up first so that a result without one changes
	// nothing.
	var port netlink.Link
	if c.IngressPolicy == policyIsolated {
		if port, err = bridgePort(c.PrevResult, a.Isolation.Bridge); err != nil {
			return nil, err
		}
	}
	b := c.backend(ctx)
	args.Log.Debug("firewall ADD", "backend", b.name(), "attachment", a.String(), "ips", a.IPs)
	if err := b.add(ctx, a); err != nil {
		return nil, fmt.Errorf("firewall: %w", err)
	}
	if port != nil {
		if err := netlink.LinkSetIsolated(port, true); err != nil {
			return nil, fmt.Errorf("firewall: isolating bridge port %q: %w", port.Attrs().Name, err)
		}
	}
	return c.PrevResult, nil
}

// bridgePort finds, among prevResult's host interfaces, the container's port
// of the bridge: under ingressPolicy isolated, the bridge keeps its
// containers apart with port isolation (IFLA_BRPORT_ISOLATED), since frames
// between two ports never reach the IP forward path.
func bridgePort(r *cni.Result, bridge string) (netlink.Link, error) {
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		return nil, fmt.Errorf("firewall: bridge %q: %w", bridge, err)
	}
	for _, iface := range r.Interfaces[1:] {
		if iface == nil || iface.Sandbox != "" || iface.Name == "" {
			continue
		}
		l, err := netlink.LinkByName(iface.Name)
		if err == nil && l.Attrs().MasterIndex == br.Attrs().Index {
			return l, nil
		}
	}
	return nil, cni.Errorf(cni.CodeInvalidNetworkConfig,
		"firewall: ingressPolicy %q needs the container's port of bridge %q among prevResult's interfaces, and there is none (chain the firewall after the bridge plugin)",
		policyIsolated, bridge)
}

// del removes the attachment's entries from every backend: the backend ADD
// used may not be the one that would be picked now (firewalld started or
// stopped, configuration edited), and a backend with nothing of the
// attachment costs a lookup. Works without prevResult and CNI_NETNS, and
// again after success.
func del(ctx context.Context, args *skel.Args) error {
	c, err := parse(args)
	if err != nil {
		return err
	}
	a, err := c.attachmentOf(args, false)
	if err != nil {
		return err
	}
	var errs []error
	inNftables, err := nftablesBackend{}.del(ctx, a)
	if err != nil {
		errs = append(errs, err)
	}
	inIptables, err := c.backendNamed(backendIptables).(iptablesBackend).del(ctx, a)
	if err != nil {
		errs = append(errs, err)
	}
	// Without a record of its own, the firewalld backend unbinds
	// prevResult's addresses (an attachment the reference plugin made) when
	// firewalld may have been the backend: configured so, or unset and the
	// attachment found in no other backend (which spares a conversation with
	// the bus on every DEL of an nftables or iptables attachment).
	unbind := c.Backend == backendFirewalld || (c.Backend == "" && !inNftables && !inIptables)
	fw := c.backendNamed(backendFirewalld).(firewalldBackend)
	if err := fw.del(ctx, a, unbind); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("firewall: %w", err)
	}
	return nil
}

// check verifies the backend's entries for each address of prevResult, and
// the port isolation under ingressPolicy isolated.
func check(ctx context.Context, args *skel.Args) error {
	c, err := parse(args)
	if err != nil {
		return err
	}
	a, err := c.attachmentOf(args, true)
	if err != nil {
		return err
	}
	if len(a.IPs) == 0 && a.Isolation == nil {
		return nil
	}
	b := c.backend(ctx)
	if err := b.check(ctx, a); err != nil {
		return fmt.Errorf("firewall: backend %s: %w", b.name(), err)
	}
	if c.IngressPolicy == policyIsolated {
		port, err := bridgePort(c.PrevResult, a.Isolation.Bridge)
		if err != nil {
			return err
		}
		info, err := netlink.LinkGetProtinfo(port)
		if err != nil {
			return fmt.Errorf("firewall: reading bridge port %q: %w", port.Attrs().Name, err)
		}
		if !info.Isolated {
			return fmt.Errorf("firewall: bridge port %q is not isolated", port.Attrs().Name)
		}
	}
	return nil
}

// status reports whether ADD can work: the backend's mechanism is usable
// (firewalld answers on the bus; iptables-restore exists and the table can
// be read; nf_tables answers).
func status(ctx context.Context, args *skel.Args) error {
	c, err := parse(args)
	if err != nil {
		return err
	}
	b := c.backend(ctx)
	if err := b.status(ctx); err != nil {
		return cni.Errorf(cni.CodePluginNotAvailable, "firewall: backend %s is not usable: %v", b.name(), err)
	}
	return nil
}

// gc removes the entries of the network's attachments that are not in
// cni.dev/valid-attachments, from every backend, carrying on past errors.
func gc(ctx context.Context, args *skel.Args) error {
	c, err := parse(args)
	if err != nil {
		return err
	}
	keep := nft.KeepValid(&c.PluginConf)
	var errs []error
	for _, name := range []string{backendNftables, backendIptables, backendFirewalld} {
		if err := c.backendNamed(name).gc(ctx, c.Name, keep); err != nil {
			errs = append(errs, fmt.Errorf("backend %s: %w", name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("firewall: %w", err)
	}
	return nil
}
