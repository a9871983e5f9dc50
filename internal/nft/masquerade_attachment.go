package nft

import (
	"errors"
	"fmt"
	"net"
)

// The three operations below are an attachment's masquerade life cycle as an
// interface plugin (bridge, ptp) lives it; each queues and flushes on its own,
// so call them with nothing else queued.

// SetMasquerade masquerades the attachment's addresses (AddMasquerade) in one
// batch. When a leaked attachment still holds one of the addresses with
// another subnet's verdict, it evicts that element and tries once more.
func (c *Conn) SetMasquerade(a Attachment, addrs []net.IPNet) error {
	if err := c.AddMasquerade(a, addrs); err != nil {
		return err
	}
	err := c.Flush()
	if IsClash(err) {
		if err = c.EvictMasquerade(addrs); err == nil {
			if err = c.AddMasquerade(a, addrs); err == nil {
				err = c.Flush()
			}
		}
	}
	return err
}

// ClearMasquerade removes the attachment's masquerade elements and the
// reference plugins' nftables masquerade rules of the attachment. With ips
// (from prevResult) it deletes by key without listing the maps; without, or
// when one of them is already gone, it finds the elements by their comment.
// Nothing to remove is success.
func (c *Conn) ClearMasquerade(a Attachment, ips []net.IP) error {
	queue := func(byKey bool) error {
		if byKey {
			if err := c.DelMasqueradeIPs(ips); err != nil {
				return err
			}
		} else if _, err := c.DelMasqueradeOf(a); err != nil {
			return err
		}
		_, err := c.DelReferenceMasquerade(a)
		return err
	}
	byKey := len(ips) > 0
	if err := queue(byKey); err != nil {
		return err
	}
	err := c.Flush()
	if byKey && IsNotFound(err) {
		if err = queue(false); err == nil {
			err = c.Flush()
		}
	}
	if err != nil {
		return fmt.Errorf("removing masquerade: %w", err)
	}
	return nil
}

// CollectMasquerade removes network's masquerade elements and reference
// rules whose attachment is not in keep (GC). Each kind is flushed on its
// own, so that one failure does not keep the other from being collected.
func (c *Conn) CollectMasquerade(network string, keep KeepSet) error {
	var errs []error
	for _, queue := range []func() (int, error){
		func() (int, error) { return c.GCMasquerade(network, keep) },
		func() (int, error) { return c.GCReferenceMasquerade(network, keep) },
	} {
		if _, err := queue(); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := c.Flush(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Stale reports whether key (an Attachment.Key, possibly followed by more
// text, as in a comment) belongs to network but to none of the attachments
// in the set.
func (k KeepSet) Stale(network, key string) bool { return k.stale(network, key) }
