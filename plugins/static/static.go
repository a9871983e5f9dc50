// Package static is the static IPAM plugin: it hands out the addresses, routes
// and DNS settings written in the configuration (or requested through
// CNI_ARGS, args.cni.ips or the ips capability), and holds no state. Drop-in
// compatible with the reference static plugin, with stricter validation.
package static

import (
	"context"
	"slices"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/skel"
)

func init() {
	skel.Register(&skel.Plugin{
		Name:  "static",
		About: "cnikit static IPAM plugin: returns the addresses its configuration names",
		Add:   add,
		Check: check,
		// DEL, STATUS and GC have nothing to release, report or collect:
		// a nil function is a successful no-op.
	})
}

func load(args *skel.Args) (*config, error) {
	c, err := parseConfig(args.StdinData, args.CNIArgs, args.Version)
	if err != nil {
		return nil, err
	}
	for _, w := range c.Warnings {
		args.Log.Warn(w)
	}
	return c, nil
}

// add returns the addresses as an IPAM result: no interfaces, so no
// interface index on the addresses; the interface plugin assigns them.
func add(_ context.Context, args *skel.Args) (*cni.Result, error) {
	c, err := load(args)
	if err != nil {
		return nil, err
	}
	return &cni.Result{CNIVersion: args.Version, IPs: c.Addresses, Routes: c.Routes, DNS: c.DNS}, nil
}

// check verifies that every address static would return is in prevResult,
// with the same prefix length and, when one is configured, the same gateway
// (the reference only compares the gateways of addresses it finds).
func check(_ context.Context, args *skel.Args) error {
	c, err := load(args)
	if err != nil {
		return err
	}
	if c.PrevResult == nil {
		return cni.Errorf(cni.CodeInvalidNetworkConfig, "static: prevResult is required for CHECK")
	}
	for _, want := range c.Addresses {
		i := slices.IndexFunc(c.PrevResult.IPs, func(got *cni.IPConfig) bool { return got.Address.IP.Equal(want.Address.IP) })
		if i < 0 {
			return cni.Errorf(cni.CodeInvalidNetworkConfig, "static: address %s is not in prevResult", cidr(want))
		}
		got := c.PrevResult.IPs[i]
		if got.Address.String() != want.Address.String() {
			return cni.Errorf(cni.CodeInvalidNetworkConfig, "static: prevResult has %s, the configuration %s", cidr(got), cidr(want))
		}
		if want.Gateway != nil && !want.Gateway.Equal(got.Gateway) {
			return cni.Errorf(cni.CodeInvalidNetworkConfig, "static: prevResult gives %s gateway %v, the configuration %s", cidr(want), got.Gateway, want.Gateway)
		}
	}
	return nil
}
