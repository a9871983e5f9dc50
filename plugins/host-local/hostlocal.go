// Package hostlocal is the host-local IPAM plugin: it allocates addresses from
// configured ranges and records them in files under a data directory, in the
// reference plugin's format, so that cnikit and reference plugins can share a
// node's state. Beyond the reference it garbage-collects (GC), reports
// exhaustion (STATUS), writes its files crash-safely, and keeps an index entry
// per attachment so that ADD, CHECK and DEL do not read the whole directory.
package hostlocal

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"strings"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/ipam"
	"github.com/cnikit/cnikit/skel"
)

func init() {
	skel.Register(&skel.Plugin{
		Name:   "host-local",
		About:  "cnikit host-local IPAM plugin: allocates addresses from local ranges",
		Add:    add,
		Del:    del,
		Check:  check,
		Status: status,
		GC:     gc,
	})
}

// load parses the request and logs the configuration's warnings.
func load(args *skel.Args, opts parseOptions) (*config, error) {
	conf, err := parseConfig(args.StdinData, args.CNIArgs, opts)
	if err != nil {
		return nil, err
	}
	for _, w := range conf.Warnings {
		args.Log.Warn(w)
	}
	return conf, nil
}

func attachment(args *skel.Args) ipam.Attachment {
	return ipam.Attachment{ContainerID: args.ContainerID, IfName: args.IfName}
}

func add(ctx context.Context, args *skel.Args) (*cni.Result, error) {
	conf, err := load(args, parseOptions{})
	if err != nil {
		return nil, err
	}
	result := &cni.Result{CNIVersion: args.Version, Routes: conf.Routes}
	if conf.ResolvConf != "" {
		// Read before allocating, so that a bad file changes nothing.
		if result.DNS, err = parseResolvConf(conf.ResolvConf); err != nil {
			return nil, err
		}
	}
	al := ipam.Allocator{Sets: conf.Sets}
	if err := al.CheckRequested(conf.Requested); err != nil {
		return nil, err
	}
	if al.Store, err = ipam.Open(conf.DataDir, conf.Name); err != nil {
		return nil, err
	}
	defer al.Store.Close()
	leases, err := al.Allocate(attachment(args), conf.Requested)
	if err != nil {
		return nil, err
	}
	for _, l := range leases {
		bits := l.Addr.BitLen()
		result.IPs = append(result.IPs, &cni.IPConfig{
			Address: net.IPNet{IP: l.Addr.AsSlice(), Mask: net.CIDRMask(l.Range.Subnet.Bits(), bits)},
			Gateway: l.Range.Gateway.AsSlice(),
		})
	}
	return result, nil
}

// del releases the attachment's addresses. Without the store directory there
// is nothing to release; the netns is never needed.
func del(ctx context.Context, args *skel.Args) error {
	conf, err := load(args, parseOptions{})
	if err != nil {
		return err
	}
	if conf.PrevErr != nil {
		args.Log.Warn("ignoring unreadable prevResult; releasing by scanning the store", "error", conf.PrevErr)
	}
	store, err := ipam.OpenExisting(conf.DataDir, conf.Name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer store.Close()
	al := ipam.Allocator{Store: store, Sets: conf.Sets}
	return al.Release(attachment(args), conf.PrevIPs)
}

// check verifies that the attachment still holds an address in every range set.
func check(ctx context.Context, args *skel.Args) error {
	conf, err := load(args, parseOptions{})
	if err != nil {
		return err
	}
	if conf.PrevErr != nil {
		return conf.PrevErr
	}
	att := attachment(args)
	store, err := ipam.OpenExisting(conf.DataDir, conf.Name)
	if errors.Is(err, fs.ErrNotExist) {
		return cni.Errorf(ipam.CodeAllocationMissing, "no IP address is reserved for %s: %v", att, err)
	}
	if err != nil {
		return err
	}
	defer store.Close()
	al := ipam.Allocator{Store: store, Sets: conf.Sets}
	return al.Check(att, conf.PrevIPs)
}

// gc releases every reservation of an attachment the request does not list as
// valid. A request without the list (or with null) keeps nothing, as libcni
// means it. A network that never allocated has nothing to collect.
func gc(ctx context.Context, args *skel.Args) error {
	conf, err := load(args, parseOptions{rangesOptional: true})
	if err != nil {
		return err
	}
	store, err := ipam.OpenExisting(conf.DataDir, conf.Name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer store.Close()
	if err := store.Lock(); err != nil {
		return err
	}
	defer store.Unlock()
	released, err := store.GC(conf.Keep)
	if len(released) > 0 {
		args.Log.Info("released stale reservations", "count", len(released), "addresses", released)
	}
	return err
}

// status fails (code 50) only when an ADD could not succeed whatever the
// request: the data directory cannot be written, or a range set has no free
// address. Range sets given only through runtimeConfig are unknown here.
func status(ctx context.Context, args *skel.Args) error {
	conf, err := load(args, parseOptions{rangesOptional: true})
	if err != nil {
		return err
	}
	if err := ipam.CheckWritable(conf.DataDir, conf.Name); err != nil {
		return cni.Errorf(cni.CodePluginNotAvailable, "cannot allocate: data directory: %v", err)
	}
	var exhausted []*ipam.RangeSet
	store, err := ipam.OpenExisting(conf.DataDir, conf.Name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		for i := range conf.Sets {
			if conf.Sets[i].Size() == 0 {
				exhausted = append(exhausted, &conf.Sets[i])
			}
		}
	case err != nil:
		return cni.Errorf(cni.CodePluginNotAvailable, "cannot allocate: %v", err)
	default:
		defer store.Close()
		al := ipam.Allocator{Store: store, Sets: conf.Sets}
		if exhausted, err = al.Exhausted(); err != nil {
			return cni.Errorf(cni.CodePluginNotAvailable, "cannot allocate: %v", err)
		}
	}
	if len(exhausted) > 0 {
		names := make([]string, len(exhausted))
		for i, set := range exhausted {
			names[i] = set.Where + " (" + set.String() + ")"
		}
		return cni.Errorf(cni.CodePluginNotAvailable, "cannot allocate: no free address in range set %s", strings.Join(names, ", "))
	}
	return nil
}
