package skel

import (
	"context"
	"os"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/invoke"
)

// Delegate runs verb of the plugin pluginType (an IPAM plugin, usually) on
// behalf of the plugin serving args: the same environment with CNI_COMMAND
// replaced, and stdin as given (the whole configuration, per spec §4).
//
// When the binary found in CNI_PATH is this very executable and the plugin is
// registered here, it runs in-process: no process start, same semantics.
// Otherwise the binary is executed. ADD returns the delegate's result in
// canonical form; the other verbs return a nil result.
func Delegate(ctx context.Context, args *Args, verb, pluginType string, stdin []byte) (*cni.Result, error) {
	path, err := invoke.Find(pluginType, invoke.Dirs(args.Path))
	if err != nil {
		return nil, err
	}
	env := args.Env
	env.Command = verb
	var out []byte
	if p, ok := Lookup(pluginType); ok && invoke.IsRunningExecutable(path) {
		sub := &Args{Env: env, NetnsOverride: args.NetnsOverride, StdinData: stdin}
		var cerr *cni.Error
		out, cerr = Invoke(ctx, p, sub)
		if cerr != nil {
			return nil, cerr
		}
	} else {
		environ := env.Environ(os.Environ())
		if args.NetnsOverride {
			environ = append(environ, "CNI_NETNS_OVERRIDE=1")
		}
		out, err = invoke.Exec(ctx, path, stdin, environ, os.Stderr)
		if err != nil {
			return nil, err
		}
	}
	if verb != "ADD" {
		return nil, nil
	}
	return cni.ParseResult(out, args.Version)
}
