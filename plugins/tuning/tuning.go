// Package tuning is the tuning meta plugin: chained after an interface
// plugin, it changes network sysctls and the container interface's MAC,
// MTU, queue length, promiscuous and all-multicast modes and alias inside the
// container's namespace, and DEL puts back what it found (sysctls included,
// unlike the reference plugin).
package tuning

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/link"
	"github.com/cnikit/cnikit/netns"
	"github.com/cnikit/cnikit/skel"
)

func init() {
	skel.Register(&skel.Plugin{
		Name:   "tuning",
		About:  "cnikit tuning plugin: sysctls and interface settings inside the container, restored on DEL",
		Add:    add,
		Del:    del,
		Check:  check,
		Status: status,
		GC:     gc,
	})
}

func add(ctx context.Context, args *skel.Args) (*cni.Result, error) {
	c, err := parse(args)
	if err != nil {
		return nil, err
	}
	if c.PrevResult == nil {
		return nil, invalid("prevResult is required: tuning must follow an interface plugin in a chain")
	}
	result := c.PrevResult
	want := c.attributes()
	if len(c.sysctls) == 0 && want.IsEmpty() {
		return result, nil
	}
	err = netns.DoPath(args.Netns, func() error { return c.apply(args, procSys, want) })
	if err != nil {
		return nil, netnsError(err, args.Netns)
	}
	if len(c.mac) > 0 {
		for _, iface := range result.Interfaces {
			if iface.Name == args.IfName {
				iface.Mac = c.mac.String()
			}
		}
	}
	return result, nil
}

// apply runs in the container's namespace: it resolves every sysctl (so a
// bad key changes nothing), saves the old values to the backup file, then
// writes the sysctls and sets the interface attributes in one request. On
// failure it puts back what it changed.
func (c *conf) apply(args *skel.Args, tree sysctlTree, want link.Attributes) error {
	files := make([]string, len(c.sysctls))
	for i, s := range c.sysctls {
		f, err := tree.sysctlFile(s)
		if err != nil {
			return err
		}
		files[i] = f
	}
	var l netlink.Link
	if !want.IsEmpty() {
		var err error
		if l, err = netlink.LinkByName(args.IfName); err != nil {
			return fmt.Errorf("tuning: container interface %q: %w", args.IfName, err)
		}
	}

	path := backupPath(c.DataDir, args.ContainerID, args.IfName)
	saved, err := readBackup(path)
	if err != nil {
		// An unreadable leftover is replaced: what is there now is what
		// DEL should restore.
		saved = nil
	}
	if saved == nil {
		saved = &backup{}
	}
	saved.Network, saved.ContainerID, saved.IfName = c.Name, args.ContainerID, args.IfName
	if l != nil {
		saved.record(link.AttributesOf(l), want)
	}
	var writes []int
	for i, s := range c.sysctls {
		old, err := readSysctl(files[i])
		if err == nil && sameSysctlValue(old, s.value) {
			continue
		}
		if err == nil {
			saved.recordSysctl(s.path, old)
		} // else write-only: nothing to restore
		writes = append(writes, i)
	}
	if err := writeBackup(path, saved); err != nil {
		return err
	}

	var applyErr error
	for _, i := range writes {
		if err := writeSysctl(files[i], c.sysctls[i].value); err != nil {
			applyErr = sysctlWriteError(c.sysctls[i], err)
			break
		}
	}
	if applyErr == nil && l != nil {
		if err := link.SetAttributes(l.Attrs().Index, want); err != nil {
			applyErr = fmt.Errorf("tuning: setting %s on %q: %w", describe(want), args.IfName, err)
		}
	}
	if applyErr != nil {
		// The runtime will not DEL an attachment whose ADD failed, or may
		// not: undo now and drop the file.
		_ = restore(saved, args.IfName, tree)
		_ = os.Remove(path)
		return applyErr
	}
	return nil
}

// describe lists the attributes a sets, for error messages.
func describe(a link.Attributes) string {
	var parts []string
	if len(a.MAC) > 0 {
		parts = append(parts, "mac "+a.MAC.String())
	}
	if a.MTU != 0 {
		parts = append(parts, fmt.Sprintf("mtu %d", a.MTU))
	}
	if a.TxQLen != nil {
		parts = append(parts, fmt.Sprintf("txQLen %d", *a.TxQLen))
	}
	if a.Promisc != nil {
		parts = append(parts, fmt.Sprintf("promisc %v", *a.Promisc))
	}
	if a.Allmulti != nil {
		parts = append(parts, fmt.Sprintf("allmulti %v", *a.Allmulti))
	}
	if a.Alias != nil {
		parts = append(parts, fmt.Sprintf("alias %q", *a.Alias))
	}
	return strings.Join(parts, ", ")
}

// restore puts back what b saved, in the calling thread's namespace: the
// interface attributes first, then the sysctls in reverse order (the order
// ADD used, undone). It carries on past errors and returns them all. A
// missing interface only skips its attributes.
func restore(b *backup, ifName string, tree sysctlTree) error {
	var errs []error
	if a := b.attributes(); !a.IsEmpty() {
		l, err := netlink.LinkByName(ifName)
		switch {
		case err == nil:
			if err := link.SetAttributes(l.Attrs().Index, a); err != nil {
				errs = append(errs, fmt.Errorf("restoring %s on %q: %w", describe(a), ifName, err))
			}
		case !isLinkNotFound(err):
			errs = append(errs, err)
		}
	}
	for i := len(b.Sysctls) - 1; i >= 0; i-- {
		s := b.Sysctls[i]
		// The saved path is checked again: the file may have been edited.
		path, err := resolveSysctlKey(s.Path, ifName)
		if err != nil {
			errs = append(errs, fmt.Errorf("saved sysctl %q: %v", s.Path, err))
			continue
		}
		f, err := tree.file(path)
		if errors.Is(err, errNoSysctl) {
			continue // gone with its interface
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("saved sysctl %q: %w", s.Path, err))
			continue
		}
		if err := writeSysctl(f, s.Value); err != nil {
			errs = append(errs, fmt.Errorf("restoring sysctl %s = %q: %w", s.Path, s.Value, err))
		}
	}
	return errors.Join(errs...)
}

func isLinkNotFound(err error) bool {
	var notFound netlink.LinkNotFoundError
	return errors.As(err, &notFound)
}

// del restores from the backup file and removes it. It never fails for
// lack of something to restore: no file, an empty or vanished namespace, or
// a vanished interface are all success. A restore that fails is logged, and
// the file removed all the same, as the reference does, so that a runtime
// does not retry a DEL forever over a setting the kernel refuses.
func del(ctx context.Context, args *skel.Args) error {
	c, err := decode(args)
	if err != nil {
		return err
	}
	path := backupPath(c.DataDir, args.ContainerID, args.IfName)
	saved, err := readBackup(path)
	if err != nil {
		args.Log.Warn("tuning: ignoring unreadable backup file", "error", err)
		return removeBackup(path)
	}
	if saved == nil {
		return nil
	}
	if args.Netns != "" {
		err := netns.DoPath(args.Netns, func() error { return restore(saved, args.IfName, procSys) })
		if err != nil && !errors.Is(err, netns.ErrNotExist) {
			args.Log.Warn("tuning: could not restore every setting", "error", err)
		}
	}
	return removeBackup(path)
}

func removeBackup(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("tuning: removing backup file: %w", err)
	}
	return nil
}

// check verifies that every configured setting holds.
func check(ctx context.Context, args *skel.Args) error {
	c, err := parse(args)
	if err != nil {
		return err
	}
	if c.PrevResult == nil {
		return invalid("prevResult is required: tuning must follow an interface plugin in a chain")
	}
	err = netns.DoPath(args.Netns, func() error {
		for _, s := range c.sysctls {
			f, err := procSys.sysctlFile(s)
			if err != nil {
				return err
			}
			have, err := readSysctl(f)
			if err != nil {
				return fmt.Errorf("tuning: reading sysctl %q: %w", s.key, err)
			}
			if !sameSysctlValue(have, s.value) {
				return fmt.Errorf("tuning: sysctl %q is %q, configured %q", s.key, have, s.value)
			}
		}
		want := c.attributes()
		if want.IsEmpty() {
			return nil
		}
		l, err := netlink.LinkByName(args.IfName)
		if err != nil {
			return fmt.Errorf("tuning: container interface %q: %w", args.IfName, err)
		}
		return compareAttributes(args.IfName, link.AttributesOf(l), want)
	})
	return netnsError(err, args.Netns)
}

func compareAttributes(ifName string, have, want link.Attributes) error {
	mismatch := func(what string, h, w any) error {
		return fmt.Errorf("tuning: %s of %q is %v, configured %v", what, ifName, h, w)
	}
	switch {
	case len(want.MAC) > 0 && have.MAC.String() != want.MAC.String():
		return mismatch("mac", have.MAC, want.MAC)
	case want.MTU != 0 && have.MTU != want.MTU:
		return mismatch("mtu", have.MTU, want.MTU)
	case want.TxQLen != nil && *have.TxQLen != *want.TxQLen:
		return mismatch("txQLen", *have.TxQLen, *want.TxQLen)
	case want.Promisc != nil && *have.Promisc != *want.Promisc:
		return mismatch("promisc", *have.Promisc, *want.Promisc)
	case want.Allmulti != nil && *have.Allmulti != *want.Allmulti:
		return mismatch("allmulti", *have.Allmulti, *want.Allmulti)
	case want.Alias != nil && *have.Alias != *want.Alias:
		return mismatch("alias", fmt.Sprintf("%q", *have.Alias), fmt.Sprintf("%q", *want.Alias))
	}
	return nil
}

// status reports whether ADD can work: the allowlist, when there is one,
// must be readable and valid, and the data directory, when it exists, a
// directory.
func status(ctx context.Context, args *skel.Args) error {
	c, err := decode(args)
	if err != nil {
		return err
	}
	if _, _, err := readAllowlist(); err != nil {
		return cni.Errorf(cni.CodePluginNotAvailable, "%v", err)
	}
	if st, err := os.Stat(c.DataDir); err == nil && !st.IsDir() {
		return cni.Errorf(cni.CodePluginNotAvailable, "tuning: dataDir %s is not a directory", c.DataDir)
	}
	return nil
}

// gc removes the backup files of this network's attachments that are not in
// cni.dev/valid-attachments. Files without a network (the reference plugin's)
// or of other networks stay, as does anything that is not a backup file.
func gc(ctx context.Context, args *skel.Args) error {
	c, err := decode(args)
	if err != nil {
		return err
	}
	entries, err := os.ReadDir(c.DataDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("tuning: listing %s: %w", c.DataDir, err)
	}
	keep := map[cni.GCAttachment]bool{}
	for _, a := range c.GCValidAttachments() {
		keep[a] = true
	}
	var errs []error
	for _, e := range entries {
		if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		path := filepath.Join(c.DataDir, e.Name())
		b, ok := readOwnBackup(path)
		if !ok || b.Network != c.Name || b.ContainerID == "" || b.IfName == "" {
			continue
		}
		if path != backupPath(c.DataDir, b.ContainerID, b.IfName) {
			continue // not where this plugin would have written it
		}
		if keep[cni.GCAttachment{ContainerID: b.ContainerID, IfName: b.IfName}] {
			continue
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("tuning: %w", err))
		}
	}
	return errors.Join(errs...)
}

// netnsError gives a missing namespace the spec's "unknown container" code.
func netnsError(err error, path string) error {
	if errors.Is(err, netns.ErrNotExist) {
		return cni.Errorf(cni.CodeUnknownContainer, "tuning: network namespace %q does not exist", path)
	}
	return err
}
