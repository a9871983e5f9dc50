// Package nft builds cnikit's nftables programs and sends them to the kernel
// over netlink with github.com/google/nftables: no nft or iptables process is
// ever started. It is the one place where nftables batches are built.
//
// Each feature owns its objects and queues its changes on a Conn; Flush sends
// everything queued as one atomic batch, so a plugin verb costs one batch no
// matter how many features it touches. Features:
//
//   - masquerade (bridge, ptp ipMasq): table inet cnikit, see masquerade.go;
//   - MAC spoof check (bridge macspoofchk): table bridge cnikit, see macspoof.go;
//   - host ports (portmap): table inet cnikit, see portmap.go;
//   - forward filter and bridge isolation (firewall): table inet cnikit, see
//     firewall.go (and chainuse.go for chain reference counts);
//   - cleanup of the reference plugins' nftables masquerade rules, see reference.go.
//
// Per-container state lives in set and map elements whose comment identifies
// the attachment (Attachment.Comment), so that DEL and GC find it without
// reading interface addresses, and so that adding a container costs the same
// whatever the number of containers already there.
package nft

import (
	"errors"
	"fmt"
	"strings"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

// TableName is the name of cnikit's tables (inet for masquerade, bridge for
// MAC spoof checks; later features add their chains to the same tables).
const TableName = "cnikit"

// Conn is a netlink connection to nf_tables in the network namespace of the
// thread that opened it, with the changes queued for the next Flush. It is not
// safe for concurrent use.
type Conn struct {
	nft    *nftables.Conn
	queued int
}

// Open connects to nf_tables in the calling thread's network namespace. The
// socket is created on the calling goroutine (which must therefore be locked
// to its thread when that thread is not in the process's namespace, as inside
// netns.Do), and reused for every request until Close.
func Open() (*Conn, error) {
	c, err := nftables.New(nftables.AsLasting())
	if err != nil {
		return nil, fmt.Errorf("connecting to nftables: %w", err)
	}
	return &Conn{nft: c}, nil
}

// Close releases the netlink socket; queued changes are dropped.
func (c *Conn) Close() error { return c.nft.CloseLasting() }

// Pending reports how many changes are queued.
func (c *Conn) Pending() int { return c.queued }

// Flush sends every queued change as one transaction: all of it applies or
// none does. The queue is empty afterwards, whether it succeeded or not.
func (c *Conn) Flush() error {
	if c.queued == 0 {
		return nil
	}
	c.queued = 0
	if err := c.nft.Flush(); err != nil {
		return fmt.Errorf("applying nftables changes: %w", err)
	}
	return nil
}

// IsNotFound reports whether err says an nftables object does not exist.
// google/nftables flattens some errors to text, hence the text match.
func IsNotFound(err error) bool {
	return err != nil && (errors.Is(err, unix.ENOENT) || strings.Contains(err.Error(), unix.ENOENT.Error()))
}

// isClash reports whether err says an element already exists with other data.
func isClash(err error) bool {
	return err != nil && (errors.Is(err, unix.EEXIST) || errors.Is(err, unix.EBUSY) ||
		strings.Contains(err.Error(), unix.EEXIST.Error()) || strings.Contains(err.Error(), unix.EBUSY.Error()))
}
