package runtime

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/invoke"
)

// VersionInfo asks the plugin pluginType which spec versions it supports, with
// the request the reference library sends (stdin {"cniVersion":"1.1.0"},
// CNI_NETNS, CNI_IFNAME and CNI_PATH set to "dummy"). A plugin that predates
// VERSION ("unknown CNI_COMMAND: VERSION") is taken to support 0.1.0 only.
func (r *Runtime) VersionInfo(ctx context.Context, pluginType string) (*cni.PluginInfo, error) {
	env := invoke.Env{Command: "VERSION", Netns: "dummy", IfName: "dummy", Path: "dummy"}
	out, err := r.run(ctx, pluginType, []byte(`{"cniVersion":"`+cni.SpecVersion+`"}`), env)
	if err != nil {
		var cerr *cni.Error
		if errors.As(err, &cerr) && cerr.Msg == "unknown CNI_COMMAND: VERSION" {
			return &cni.PluginInfo{CNIVersion: "0.1.0", SupportedVersions: []string{"0.1.0"}}, nil
		}
		return nil, err
	}
	return cni.ParsePluginInfo(out)
}

// ValidateList checks that every plugin of list can be found in the search
// path and supports the list's version (asking each with VERSION), and returns
// the capabilities the plugins declare, sorted. All problems are reported,
// joined.
func (r *Runtime) ValidateList(ctx context.Context, list *cni.ConfigList) ([]string, error) {
	if list == nil {
		return nil, cni.Errorf(cni.CodeInvalidNetworkConfig, "no network configuration given")
	}
	version := list.CNIVersion
	if version == "" {
		version = "0.1.0"
	}
	var errs []error
	caps := map[string]bool{}
	for _, p := range list.Plugins {
		if err := r.validatePlugin(ctx, p.Network.Type, version); err != nil {
			errs = append(errs, err)
		}
		for name, enabled := range p.Network.Capabilities {
			if enabled {
				caps[name] = true
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	out := make([]string, 0, len(caps))
	for name := range caps {
		out = append(out, name)
	}
	sort.Strings(out)
	return out, nil
}

func (r *Runtime) validatePlugin(ctx context.Context, pluginType, version string) error {
	info, err := r.VersionInfo(ctx, pluginType)
	if err != nil {
		return fmt.Errorf("plugin %s: %w", pluginType, err)
	}
	if cerr := cni.Reconcile(version, info.SupportedVersions); cerr != nil {
		return cni.Errorf(cni.CodeIncompatibleVersion, "plugin %s does not support config version %q", pluginType, version).
			WithDetails(fmt.Sprintf("it supports %v", info.SupportedVersions))
	}
	return nil
}
