package firewall

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/iptables"
	"github.com/cnikit/cnikit/internal/nft"
)

// firewalld's D-Bus API (firewalld.dbus(5)).
const (
	firewalldName      = "org.fedoraproject.FirewallD1"
	firewalldPath      = "/org/fedoraproject/FirewallD1"
	firewalldZoneIface = firewalldName + ".zone"
	// dbusTimeout bounds each conversation with the bus; firewalld answers
	// in milliseconds, but rebuilds its rules for some calls.
	dbusTimeout = 30 * time.Second
)

// Objects firewalld's own rules have in the kernel (see firewalldActive).
const (
	firewalldTable        = "firewalld"      // nftables, family inet
	firewalldForwardChain = "filter_FORWARD" // its forward base chain
	firewalldDirectChain  = "FORWARD_direct" // iptables backend, table filter
)

// firewalld error names (the first word of its exception messages) that mean
// the work is already done.
const (
	errZoneAlreadySet = "ZONE_ALREADY_SET"
	errUnknownSource  = "UNKNOWN_SOURCE"
)

// firewalldBackend binds the containers' addresses to a firewalld zone
// (trusted by default) as sources, and records what it bound in a small
// state file per attachment, so that DEL without prevResult and GC know
// which sources are cnikit's. Isolation (ingressPolicy) is cnikit's nftables
// program, whose drops apply whatever firewalld accepts.
type firewalldBackend struct {
	zone     string
	stateDir string
}

func (firewalldBackend) name() string { return backendFirewalld }

// firewalldRecord is the state file of one attachment.
type firewalldRecord struct {
	ContainerID string   `json:"containerID"`
	IfName      string   `json:"ifname"`
	Zone        string   `json:"zone"`
	Sources     []string `json:"sources"`
}

func (b firewalldBackend) networkDir(network string) string {
	return filepath.Join(b.stateDir, "firewalld", network)
}

func (b firewalldBackend) recordPath(a nft.Attachment) string {
	return filepath.Join(b.networkDir(a.Network), a.Key())
}

func readRecord(path string) (*firewalldRecord, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r firewalldRecord
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return &r, nil
}

// writeRecord replaces the file atomically (temp file and rename).
func writeRecord(path string, r *firewalldRecord) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	data, _ := json.Marshal(r)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// source is how firewalld names a single address.
func source(ip net.IP) string { return iptables.HostNet(ip).String() }

// firewalldClient is a connection to firewalld on the system bus
// (DBUS_SYSTEM_BUS_ADDRESS, else the usual socket).
type firewalldClient struct {
	conn *dbus.Conn
	obj  dbus.BusObject
}

// connectFirewalld connects to the system bus. The connection lives until
// Close; contexts bound the calls made on it.
func connectFirewalld() (*firewalldClient, error) {
	conn, err := dbus.ConnectSystemBus()
	if err != nil {
		return nil, fmt.Errorf("connecting to the D-Bus system bus: %w", err)
	}
	return &firewalldClient{conn: conn, obj: conn.Object(firewalldName, firewalldPath)}, nil
}

func (c *firewalldClient) Close() { c.conn.Close() }

// running reports whether firewalld owns its bus name.
func (c *firewalldClient) running(ctx context.Context) (bool, error) {
	var has bool
	err := c.conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.NameHasOwner", 0, firewalldName).Store(&has)
	return has, err
}

func (c *firewalldClient) call(ctx context.Context, method string, out any, args ...any) error {
	call := c.obj.CallWithContext(ctx, firewalldZoneIface+"."+method, 0, args...)
	if call.Err != nil {
		return call.Err
	}
	if out == nil {
		return nil
	}
	return call.Store(out)
}

// firewalldError reports whether err is firewalld's exception with code.
func firewalldError(err error, code string) bool {
	var e dbus.Error
	if errors.As(err, &e) {
		return strings.HasPrefix(e.Error(), code)
	}
	return false
}

// firewalldRunning connects and checks that firewalld is there; a caller
// that gets an error must treat firewalld as unavailable.
func firewalldRunning(ctx context.Context) (*firewalldClient, error) {
	ctx, cancel := context.WithTimeout(ctx, dbusTimeout)
	defer cancel()
	c, err := connectFirewalld()
	if err != nil {
		return nil, err
	}
	ok, err := c.running(ctx)
	if err == nil && !ok {
		err = fmt.Errorf("firewalld (%s) is not on the system bus", firewalldName)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// add records the attachment's sources, then binds them to the zone (the
// record first, so that a failure in between leaves nothing GC cannot find).
func (b firewalldBackend) add(ctx context.Context, a *attachment) error {
	c, err := firewalldRunning(ctx)
	if err != nil {
		return cni.Errorf(cni.CodeTryAgainLater, "firewall: backend firewalld: %v", err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, dbusTimeout)
	defer cancel()
	rec := &firewalldRecord{ContainerID: a.ContainerID, IfName: a.IfName, Zone: b.zone}
	for _, ip := range a.IPs {
		rec.Sources = append(rec.Sources, source(ip))
	}
	if err := writeRecord(b.recordPath(a.Attachment), rec); err != nil {
		return fmt.Errorf("recording the firewalld sources of %s: %w", a, err)
	}
	for _, src := range rec.Sources {
		var zone string
		if err := c.call(ctx, "addSource", &zone, b.zone, src); err != nil && !firewalldError(err, errZoneAlreadySet) {
			return fmt.Errorf("adding source %s to firewalld zone %q: %w", src, b.zone, err)
		}
	}
	if a.Isolation != nil {
		return nftablesBackend{}.add(ctx, a)
	}
	return nil
}

// del unbinds the recorded sources (or, without a record and with
// unbindPrevResult, those of prevResult: an attachment the reference plugin
// made) and removes the record. Sources firewalld no longer has, or a
// firewalld that is not running (its runtime zones went with it), are
// success.
func (b firewalldBackend) del(ctx context.Context, a *attachment, unbindPrevResult bool) error {
	path := b.recordPath(a.Attachment)
	rec, err := readRecord(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if !unbindPrevResult || len(a.IPs) == 0 {
			return nil
		}
		rec = &firewalldRecord{Zone: b.zone}
		for _, ip := range a.IPs {
			rec.Sources = append(rec.Sources, source(ip))
		}
	case err != nil:
		return err
	}
	if c, err := firewalldRunning(ctx); err == nil {
		defer c.Close()
		if err := b.unbind(ctx, c, rec); err != nil {
			return err
		}
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

func (b firewalldBackend) unbind(ctx context.Context, c *firewalldClient, rec *firewalldRecord) error {
	ctx, cancel := context.WithTimeout(ctx, dbusTimeout)
	defer cancel()
	for _, src := range rec.Sources {
		var zone string
		if err := c.call(ctx, "removeSource", &zone, rec.Zone, src); err != nil && !firewalldError(err, errUnknownSource) {
			return fmt.Errorf("removing source %s from firewalld zone %q: %w", src, rec.Zone, err)
		}
	}
	return nil
}

// check verifies that each address is a source of the zone.
func (b firewalldBackend) check(ctx context.Context, a *attachment) error {
	c, err := firewalldRunning(ctx)
	if err != nil {
		return fmt.Errorf("backend firewalld: %w", err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, dbusTimeout)
	defer cancel()
	for _, ip := range a.IPs {
		var bound bool
		if err := c.call(ctx, "querySource", &bound, b.zone, source(ip)); err != nil {
			return fmt.Errorf("querying source %s of firewalld zone %q: %w", source(ip), b.zone, err)
		}
		if !bound {
			return fmt.Errorf("%s is not a source of firewalld zone %q", source(ip), b.zone)
		}
	}
	if a.Isolation != nil {
		return nftablesBackend{}.check(ctx, a)
	}
	return nil
}

// gc unbinds the sources recorded for the network's attachments that are
// not kept, carrying on past errors.
func (b firewalldBackend) gc(ctx context.Context, network string, keep nft.KeepSet) error {
	dir := b.networkDir(network)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var c *firewalldClient
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if strings.HasSuffix(name, ".tmp") || keep[name] {
			continue
		}
		path := filepath.Join(dir, name)
		rec, err := readRecord(path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if c == nil {
			if c, err = firewalldRunning(ctx); err != nil {
				c = nil // firewalld is down: its runtime sources are gone
			} else {
				defer c.Close()
			}
		}
		if c != nil {
			if err := b.unbind(ctx, c, rec); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		if err := os.Remove(path); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// status fails unless firewalld answers on the bus.
func (firewalldBackend) status(ctx context.Context) error {
	c, err := firewalldRunning(ctx)
	if err != nil {
		return err
	}
	c.Close()
	return nil
}
