package runtime

import (
	"context"
	"errors"
	"fmt"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/invoke"
)

// Add attaches att to the network of list: ADD on every plugin in order, each
// after the first given the previous one's result as prevResult. The first
// failure stops the chain and is returned as a *PluginError (the plugin's
// *cni.Error reachable with errors.As); nothing is cached then, and the caller
// must still call Del, as the spec requires after any ADD. On success the final
// result is cached for Check, Del and GC, and returned.
//
// The container ID (code 3 or 4), network name (7) and interface name (4) are
// checked before any plugin runs.
func (r *Runtime) Add(ctx context.Context, list *cni.ConfigList, att *Attachment) (*cni.Result, error) {
	if err := validateAttachment(list, att); err != nil {
		return nil, err
	}
	if len(list.Plugins) == 0 {
		return nil, errNoPlugins(list)
	}
	lock, err := r.lockAttachment(ctx, list.Name, att.ContainerID, false)
	if err != nil {
		return nil, err
	}
	defer lock.release(false)

	env := r.env("ADD", att)
	var result *cni.Result
	var prev []byte
	for _, p := range list.Plugins {
		stdin, err := requestConfig(list, p, request{verb: "ADD", capabilityArgs: att.CapabilityArgs, prevResult: prev})
		if err != nil {
			return nil, pluginFailure(p, "add", err)
		}
		out, err := r.run(ctx, p.Network.Type, stdin, env)
		if err != nil {
			return nil, pluginFailure(p, "add", err)
		}
		// A result without cniVersion is read as the list's version.
		result, err = cni.ParseResult(out, list.CNIVersion)
		if err != nil {
			return nil, pluginFailure(p, "add", err)
		}
		if prev, err = result.Marshal(result.CNIVersion); err != nil {
			return nil, pluginFailure(p, "add", err)
		}
	}
	if err := r.writeCache(list, att, result); err != nil {
		return nil, fmt.Errorf("failed to set network %q cached result: %w", list.Name, err)
	}
	return result, nil
}

// Del detaches att from the network of list: DEL on every plugin in reverse
// order, each given the cached final ADD result, converted to the list's
// version, as prevResult (from version 0.4.0 on). A cached entry that cannot be
// read or converted is removed and DEL goes on without prevResult, so that a
// broken cache never blocks cleanup. The first failure stops the chain and is
// returned as a *PluginError; the cache entry is removed only after every
// plugin succeeded, so a retry still has prevResult.
func (r *Runtime) Del(ctx context.Context, list *cni.ConfigList, att *Attachment) error {
	if err := validateAttachment(list, att); err != nil {
		return err
	}
	return r.del(ctx, list, att, false)
}

// del is Del; networkHeld says the caller (GC) holds the network lock.
func (r *Runtime) del(ctx context.Context, list *cni.ConfigList, att *Attachment, networkHeld bool) error {
	lock, err := r.lockAttachment(ctx, list.Name, att.ContainerID, networkHeld)
	if err != nil {
		return err
	}
	deleted := false
	defer func() { lock.release(deleted) }()

	var prev []byte
	if cni.SupportsPrevResultOnDel(list.CNIVersion) {
		cached, err := r.readCachedResult(list.Name, list.CNIVersion, att)
		if err == nil && cached != nil {
			prev, err = cached.Marshal(list.CNIVersion)
		}
		if err != nil {
			if rmErr := r.removeCache(list.Name, att.ContainerID, att.IfName); rmErr != nil {
				return fmt.Errorf("removing unreadable cached result (%v): %w", err, rmErr)
			}
			prev = nil
		}
	}
	env := r.env("DEL", att)
	for i := len(list.Plugins) - 1; i >= 0; i-- {
		p := list.Plugins[i]
		stdin, err := requestConfig(list, p, request{verb: "DEL", capabilityArgs: att.CapabilityArgs, prevResult: prev})
		if err == nil {
			_, err = r.run(ctx, p.Network.Type, stdin, env)
		}
		if err != nil {
			return pluginFailure(p, "delete", err)
		}
	}
	if err := r.removeCache(list.Name, att.ContainerID, att.IfName); err != nil {
		return fmt.Errorf("failed to remove network %q cached result: %w", list.Name, err)
	}
	deleted = true
	return nil
}

// Check asks every plugin, in order, whether the attachment is as ADD left it,
// giving each the cached final ADD result as prevResult. It needs version
// 0.4.0 or later (code 1 otherwise), succeeds without running anything when the
// list sets disableCheck, and fails with code 3 when no result is cached (the
// spec forbids CHECK of an attachment that was never added or was deleted).
// An unreadable cache entry is an error. The first failure is returned as a
// *PluginError.
func (r *Runtime) Check(ctx context.Context, list *cni.ConfigList, att *Attachment) error {
	if err := validateAttachment(list, att); err != nil {
		return err
	}
	if !cni.SupportsCheck(list.CNIVersion) {
		return cni.Errorf(cni.CodeIncompatibleVersion, "configuration version %q does not support the CHECK command", list.CNIVersion)
	}
	if list.DisableCheck {
		return nil
	}
	lock, err := r.lockAttachment(ctx, list.Name, att.ContainerID, false)
	if err != nil {
		return err
	}
	defer lock.release(false)

	cached, err := r.readCachedResult(list.Name, list.CNIVersion, att)
	if err != nil {
		return fmt.Errorf("failed to get network %q cached result: %w", list.Name, err)
	}
	if cached == nil {
		return cni.Errorf(cni.CodeUnknownContainer,
			"no cached result for container %q, interface %q on network %q: it was never added, or was deleted", att.ContainerID, att.IfName, list.Name)
	}
	prev, err := cached.Marshal(list.CNIVersion)
	if err != nil {
		return fmt.Errorf("failed to get network %q cached result: %w", list.Name, err)
	}
	env := r.env("CHECK", att)
	for _, p := range list.Plugins {
		stdin, err := requestConfig(list, p, request{verb: "CHECK", capabilityArgs: att.CapabilityArgs, prevResult: prev})
		if err == nil {
			_, err = r.run(ctx, p.Network.Type, stdin, env)
		}
		if err != nil {
			return pluginFailure(p, "check", err)
		}
	}
	return nil
}

// Status asks every plugin, in order, whether it is ready to serve ADD. Below
// version 1.1.0 it does nothing. The first failure is returned as the plugin
// returned it, so that its code (50, plugin not available; 51, limited
// connectivity) reaches the caller unchanged.
func (r *Runtime) Status(ctx context.Context, list *cni.ConfigList) error {
	if list == nil {
		return cni.Errorf(cni.CodeInvalidNetworkConfig, "no network configuration given")
	}
	if !cni.SupportsGCAndStatus(list.CNIVersion) {
		return nil
	}
	env := r.env("STATUS", nil)
	for _, p := range list.Plugins {
		stdin, err := requestConfig(list, p, request{verb: "STATUS"})
		if err == nil {
			_, err = r.run(ctx, p.Network.Type, stdin, env)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// GC cleans up after attachments of the network of list that are gone. With
// the network locked against ADD and DEL, it runs a full DEL (with the cached
// netns, CNI_ARGS and capability arguments) for every cached attachment of the
// network not listed in valid, then, from version 1.1.0 on, GC on every plugin
// in order, which is given valid under cni.dev/valid-attachments (and the older
// cni.dev/attachments). It goes on after failures and returns them all, joined.
// valid == nil means no attachment is valid: everything cached is deleted and
// the plugins are told to keep nothing ([]), as cnitool's gc does. With
// disableGC set, GC does nothing.
func (r *Runtime) GC(ctx context.Context, list *cni.ConfigList, valid []cni.GCAttachment) error {
	if list == nil {
		return cni.Errorf(cni.CodeInvalidNetworkConfig, "no network configuration given")
	}
	if list.DisableGC {
		return nil
	}
	if err := cni.ValidateNetworkName(list.Name); err != nil {
		return err
	}
	netLock, err := lockFile(ctx, r.networkLockPath(list.Name), true)
	if err != nil {
		return err
	}
	defer netLock.unlock()

	var errs []error
	cached, err := r.CachedAttachments("")
	if err != nil {
		errs = append(errs, fmt.Errorf("reading cached attachments: %w", err))
	}
	keep := make(map[cni.GCAttachment]bool, len(valid))
	for _, v := range valid {
		keep[v] = true
	}
	for _, c := range cached {
		if c.Network != list.Name || keep[cni.GCAttachment{ContainerID: c.ContainerID, IfName: c.IfName}] {
			continue
		}
		att := &Attachment{ContainerID: c.ContainerID, Netns: c.Netns, IfName: c.IfName, Args: c.Args, CapabilityArgs: c.CapabilityArgs}
		err := validateAttachment(list, att)
		if err == nil {
			err = r.del(ctx, list, att, true)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("failed to delete stale attachment %s/%s: %w", c.ContainerID, c.IfName, err))
		}
	}
	if cni.SupportsGCAndStatus(list.CNIVersion) {
		env := invoke.Env{Command: "GC", Path: invoke.JoinDirs(r.path)}
		for _, p := range list.Plugins {
			stdin, err := requestConfig(list, p, request{verb: "GC", valid: valid})
			if err == nil {
				_, err = r.run(ctx, p.Network.Type, stdin, env)
			}
			if err != nil {
				errs = append(errs, pluginFailure(p, "gc", err))
			}
		}
	}
	return errors.Join(errs...)
}
