// Package loopback is the loopback plugin: it brings up the container's lo.
package loopback

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/netns"
	"github.com/cnikit/cnikit/skel"
)

func init() {
	skel.Register(&skel.Plugin{
		Name:  "loopback",
		About: "cnikit loopback plugin: brings up the container's loopback interface",
		Add:   add,
		Del:   del,
		Check: check,
	})
}

// conf is the plugin's configuration: nothing beyond the common keys.
type conf struct {
	cni.PluginConf
}

func parse(args *skel.Args) (*conf, error) {
	var c conf
	if err := json.Unmarshal(args.StdinData, &c); err != nil {
		return nil, cni.Errorf(cni.CodeDecodingFailure, "loopback: decoding configuration: %v", err)
	}
	c.CNIVersion = args.Version
	if err := c.ParsePrevResult(); err != nil {
		return nil, err
	}
	return &c, nil
}

func add(ctx context.Context, args *skel.Args) (*cni.Result, error) {
	c, err := parse(args)
	if err != nil {
		return nil, err
	}
	var v4, v6 *net.IPNet
	err = netns.DoPath(args.Netns, func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return fmt.Errorf("finding lo: %w", err)
		}
		if err := netlink.LinkSetUp(lo); err != nil {
			return fmt.Errorf("setting lo up: %w", err)
		}
		addrs, err := netlink.AddrList(lo, netlink.FAMILY_ALL)
		if err != nil {
			return fmt.Errorf("listing lo addresses: %w", err)
		}
		for _, a := range addrs {
			if !a.IP.IsLoopback() {
				return cni.Errorf(cni.CodeInvalidNetworkConfig, "loopback interface has non-loopback address %s", a.IPNet)
			}
			if a.IP.To4() != nil && v4 == nil {
				v4 = a.IPNet
			} else if a.IP.To4() == nil && v6 == nil {
				v6 = a.IPNet
			}
		}
		return nil
	})
	if err != nil {
		return nil, netnsError(err, args.Netns)
	}
	if c.PrevResult != nil {
		return c.PrevResult, nil
	}
	r := &cni.Result{CNIVersion: args.Version,
		Interfaces: []*cni.Interface{{Name: "lo", Mac: "00:00:00:00:00:00", Sandbox: args.Netns}}}
	for _, a := range []*net.IPNet{v4, v6} {
		if a != nil {
			r.IPs = append(r.IPs, &cni.IPConfig{Interface: cni.IntPtr(0), Address: *a})
		}
	}
	return r, nil
}

func del(ctx context.Context, args *skel.Args) error {
	if args.Netns == "" {
		return nil
	}
	err := netns.DoPath(args.Netns, func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return nil // nothing to bring down
		}
		return netlink.LinkSetDown(lo)
	})
	if errors.Is(err, netns.ErrNotExist) {
		return nil // DEL after the namespace is gone succeeds
	}
	return err
}

func check(ctx context.Context, args *skel.Args) error {
	return netnsError(netns.DoPath(args.Netns, func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return fmt.Errorf("finding lo: %w", err)
		}
		if lo.Attrs().Flags&net.FlagUp == 0 {
			return fmt.Errorf("loopback interface is down")
		}
		return nil
	}), args.Netns)
}

// netnsError gives a missing namespace the spec's "unknown container" code.
func netnsError(err error, path string) error {
	if errors.Is(err, netns.ErrNotExist) {
		return cni.Errorf(cni.CodeUnknownContainer, "network namespace %q does not exist", path)
	}
	return err
}
