package firewall

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"

	"github.com/cnikit/cnikit/internal/nft"
)

// nftablesBackend keeps the containers' addresses as elements of cnikit's
// firewall maps (table inet cnikit), and isolating bridges in its sets. It
// is also the isolation half of the firewalld backend.
type nftablesBackend struct{}

func (nftablesBackend) name() string { return backendNftables }

// add sends the attachment's elements and isolation entries in one batch,
// and the whole program with them only when that fails for want of it (the
// first ADD, or a new isolating bridge). An address still held by a leaked
// attachment of another bridge makes the batch fail; the holder is evicted
// and the batch sent again.
func (nftablesBackend) add(_ context.Context, a *attachment) error {
	conn, err := nft.Open()
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.AddFirewallEntries(a.Attachment, a.IPs, a.Isolation); err != nil {
		return err
	}
	err = conn.Flush()
	if nft.IsNotFound(err) && a.Isolation != nil {
		// Most likely a bridge the program has not seen yet.
		if exists, lookErr := conn.FirewallBaseExists(); lookErr == nil && exists {
			if err = conn.AddIsolatedFirewallEntries(a.Attachment, a.IPs, a.Isolation); err == nil {
				err = conn.Flush()
			}
		}
	}
	if nft.IsNotFound(err) {
		if err = conn.AddFirewall(a.Attachment, a.IPs, a.Isolation); err == nil {
			err = conn.Flush()
		}
	}
	if nft.IsClash(err) {
		if err = conn.EvictFirewall(a.IPs); err == nil {
			if err = conn.AddFirewall(a.Attachment, a.IPs, a.Isolation); err == nil {
				err = conn.Flush()
			}
		}
	}
	if err != nil {
		return fmt.Errorf("adding nftables firewall entries of %s: %w", a, err)
	}
	return nil
}

// del removes the attachment's elements, and reports whether it found any:
// by address when prevResult gave them, else (or when some are gone already)
// found by their comment. When
// they are the last ones jumping to their bridge's isolation chain (the
// kernel's reference count says so), the bridge's isolation goes in the
// same batch; should another container have come meanwhile, the batch fails
// busy and is sent again without it.
func (nftablesBackend) del(_ context.Context, a *attachment) (found bool, err error) {
	conn, err := nft.Open()
	if err != nil {
		return false, err
	}
	defer conn.Close()
	byKey := len(a.IPs) > 0
	for attempt := 0; ; attempt++ {
		// What goes: the addresses, and how many of them count for each
		// isolating bridge.
		ips, mine := a.IPs, map[string]int{}
		if byKey {
			if a.Isolation != nil {
				mine[a.Isolation.Bridge] = len(a.IPs)
			}
		} else {
			found, err := conn.FindFirewall(a.Attachment)
			if err != nil {
				return false, err
			}
			ips = nil
			for _, e := range found {
				ips = append(ips, e.IP)
				if b := e.Bridge(); b != "" {
					mine[b]++
				}
			}
			if a.Isolation != nil {
				if _, ok := mine[a.Isolation.Bridge]; !ok {
					// No element left: an isolation an earlier DEL left
					// behind still goes when nothing uses it.
					mine[a.Isolation.Bridge] = 0
				}
			}
		}
		if err := conn.DelFirewallIPs(ips); err != nil {
			return false, err
		}
		release := attempt < 2
		var kept []string
		for bridge, n := range mine {
			refs, exists, err := conn.IsolationReferences(bridge)
			if err != nil {
				return false, err
			}
			switch {
			case exists && refs <= n && release:
				if err := conn.ReleaseIsolation(bridge); err != nil {
					return false, err
				}
			case exists:
				kept = append(kept, bridge)
			}
		}
		if conn.Pending() == 0 {
			return false, nil
		}
		err = conn.Flush()
		switch {
		case err == nil:
			releaseIfUnused(conn, kept)
			return len(ips) > 0, nil
		case attempt >= 3:
			return false, fmt.Errorf("removing nftables firewall entries of %s: %w", a, err)
		case nft.IsNotFound(err) && byKey:
			byKey = false // some address is gone: look the rest up
		case nft.IsBusy(err) || nft.IsNotFound(err):
			// A container came or went meanwhile: look again.
		default:
			return false, fmt.Errorf("removing nftables firewall entries of %s: %w", a, err)
		}
	}
}

// releaseIfUnused releases the bridges that have no container left after
// all: a DEL running at the same time on the same bridge saw this DEL's
// elements and kept the isolation for them. Failures only mean that another
// call released it, or that a container came; GC catches the rest.
func releaseIfUnused(conn *nft.Conn, bridges []string) {
	for _, b := range bridges {
		if refs, exists, err := conn.IsolationReferences(b); err != nil || !exists || refs > 0 {
			continue
		}
		if conn.ReleaseIsolation(b) == nil {
			_ = conn.Flush()
		}
	}
}

// check verifies that each address has its element, jumping to the
// bridge's chain under an isolating policy, and that the bridge is in the
// isolating set.
func (nftablesBackend) check(_ context.Context, a *attachment) error {
	conn, err := nft.Open()
	if err != nil {
		return err
	}
	defer conn.Close()
	if ok, err := conn.FirewallProgramIntact(); err != nil || !ok {
		return errors.Join(err, fmt.Errorf("nftables chain inet %s %s is missing or was changed (GC restores it)", nft.TableName, nft.FirewallChain))
	}
	elems, err := conn.FindFirewall(a.Attachment)
	if err != nil {
		return err
	}
	for _, ip := range a.IPs {
		i := slices.IndexFunc(elems, func(e nft.FirewallElement) bool { return e.IP.Equal(ip) })
		if i < 0 {
			return fmt.Errorf("%s has no element in nftables map inet %s %s", ip, nft.TableName, mapName(ip))
		}
		if a.Isolation != nil && elems[i].Chain != nft.IsolationChain(a.Isolation.Bridge) {
			return fmt.Errorf("the element of %s jumps to %q, not to the isolation of bridge %q", ip, elems[i].Chain, a.Isolation.Bridge)
		}
	}
	if a.Isolation == nil {
		return nil
	}
	isolating, sameBridge, err := conn.IsolationOf(a.Isolation.Bridge)
	if err != nil {
		return err
	}
	if !isolating {
		return fmt.Errorf("bridge %q is not in nftables set inet %s %s", a.Isolation.Bridge, nft.TableName, nft.IsolatingSet)
	}
	if sameBridge != a.Isolation.SameBridge {
		return fmt.Errorf("bridge %q: routed traffic within the bridge is allowed=%v, want %v (another network sets another ingressPolicy on it)",
			a.Isolation.Bridge, sameBridge, a.Isolation.SameBridge)
	}
	return nil
}

func mapName(ip net.IP) string {
	if ip.To4() != nil {
		return nft.FirewallMap4
	}
	return nft.FirewallMap6
}

// gc removes the network's elements whose attachment is not kept, then the
// isolation of every bridge left without containers (one batch per bridge,
// so that a busy one does not hold the others back).
func (nftablesBackend) gc(_ context.Context, network string, keep nft.KeepSet) error {
	conn, err := nft.Open()
	if err != nil {
		return err
	}
	defer conn.Close()
	var errs []error
	if err := conn.RestoreFirewallProgram(); err != nil {
		errs = append(errs, err)
	} else if err := conn.Flush(); err != nil {
		errs = append(errs, fmt.Errorf("restoring the nftables firewall program: %w", err))
	}
	if _, err := conn.GCFirewall(network, keep); err != nil {
		errs = append(errs, err)
	} else if err := conn.Flush(); err != nil {
		errs = append(errs, fmt.Errorf("removing stale nftables firewall entries: %w", err))
	}
	bridges, err := conn.IsolatedBridges()
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, b := range bridges {
		if err := conn.ReleaseIsolation(b); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := conn.Flush(); err != nil && !nft.IsBusy(err) {
			errs = append(errs, fmt.Errorf("releasing the isolation of bridge %q: %w", b, err))
		}
	}
	return errors.Join(errs...)
}

// status fails when nf_tables cannot be reached.
func (nftablesBackend) status(context.Context) error {
	conn, err := nft.Open()
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = conn.FirewallBaseExists()
	return err
}
