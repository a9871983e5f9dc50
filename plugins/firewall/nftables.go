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

// add sends the attachment's elements and isolation entries in one batch.
// An address still held by a leaked attachment of another bridge makes the
// batch fail; the holder is evicted and the batch sent again.
func (nftablesBackend) add(_ context.Context, a *attachment) error {
	conn, err := nft.Open()
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.AddFirewall(a.Attachment, a.IPs, a.Isolation); err != nil {
		return err
	}
	err = conn.Flush()
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

// del removes the attachment's elements: by address when prevResult gave
// them (one batch), else, or when some are gone already, found by their
// comment. The bridge's isolation goes in the same batch when this was its
// last container (the kernel's reference count on the bridge's chain
// decides; a busy chain makes the batch fail and it is sent again without).
func (nftablesBackend) del(_ context.Context, a *attachment) error {
	conn, err := nft.Open()
	if err != nil {
		return err
	}
	defer conn.Close()
	bridges := map[string]bool{}
	if a.Isolation != nil {
		bridges[a.Isolation.Bridge] = true
	}
	byKey := len(a.IPs) > 0
	var found []nft.FirewallElement
	queue := func(release bool) error {
		if byKey {
			if err := conn.DelFirewallIPs(a.IPs); err != nil {
				return err
			}
		} else {
			var err error
			if found, err = conn.DelFirewallOf(a.Attachment); err != nil {
				return err
			}
			for _, e := range found {
				if b := e.Bridge(); b != "" {
					bridges[b] = true
				}
			}
		}
		if release {
			for b := range bridges {
				if err := conn.ReleaseIsolation(b); err != nil {
					return err
				}
			}
		}
		return nil
	}
	release := len(bridges) > 0 || !byKey
	for attempt := 0; ; attempt++ {
		if err := queue(release); err != nil {
			return err
		}
		if conn.Pending() == 0 {
			return nil
		}
		err := conn.Flush()
		switch {
		case err == nil:
			return nil
		case attempt >= 3:
			return fmt.Errorf("removing nftables firewall entries of %s: %w", a, err)
		case nft.IsNotFound(err) && byKey:
			byKey = false // some address is gone: look the rest up
		case nft.IsBusy(err) && release:
			release = false // the bridge still has containers
		default:
			return fmt.Errorf("removing nftables firewall entries of %s: %w", a, err)
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
	if ok, err := conn.FirewallBaseExists(); err != nil || !ok {
		return errors.Join(err, fmt.Errorf("nftables chain inet %s %s is missing", nft.TableName, nft.FirewallChain))
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
