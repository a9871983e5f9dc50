package ptp

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/link"
	"github.com/cnikit/cnikit/internal/nft"
	"github.com/cnikit/cnikit/skel"
)

// conf is the ptp plugin's configuration; README.md lists every key. ipam
// and dns come with cni.PluginConf.
type conf struct {
	cni.PluginConf
	MTU           int     `json:"mtu"`
	IPMasq        bool    `json:"ipMasq"`
	IPMasqBackend *string `json:"ipMasqBackend"`
}

// minMTU is the smallest MTU a veth takes (ETH_MIN_MTU).
const minMTU = 68

func invalid(format string, a ...any) error {
	return cni.Errorf(cni.CodeInvalidNetworkConfig, "ptp: "+format, a...)
}

// parse decodes and checks the configuration; every error names the key and
// its value, and nothing has been changed on the host yet.
func parse(args *skel.Args) (*conf, error) {
	n := &conf{}
	if err := json.Unmarshal(args.StdinData, n); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return nil, invalid("%s: JSON %s where %s is expected", typeErr.Field, typeErr.Value, typeErr.Type)
		}
		return nil, cni.Errorf(cni.CodeDecodingFailure, "ptp: decoding configuration: %v", err)
	}
	n.CNIVersion = args.Version
	if err := n.ParsePrevResult(); err != nil {
		return nil, err
	}
	if n.IPAM.Type == "" {
		return nil, invalid("ipam.type is required: ptp routes the container's addresses, which an IPAM plugin provides")
	}
	if n.MTU != 0 && (n.MTU < minMTU || n.MTU > 65535) {
		return nil, invalid("mtu %d is out of range (0, or %d-65535)", n.MTU, minMTU)
	}
	if n.IPMasqBackend != nil && *n.IPMasqBackend != "iptables" && *n.IPMasqBackend != "nftables" {
		return nil, invalid("ipMasqBackend %q is not supported (\"iptables\" or \"nftables\")", *n.IPMasqBackend)
	}
	return n, nil
}

func (n *conf) attachment(args *skel.Args) nft.Attachment {
	return nft.Attachment{Network: n.Name, ContainerID: args.ContainerID, IfName: args.IfName}
}

// altNamePrefix starts the alternative name of every host end cnikit makes.
const altNamePrefix = "cnikit-"

// hostAltName is the host end's alternative name: the attachment's key, so
// that DEL finds the host end with one lookup, without CNI_NETNS or
// prevResult, and GC finds the leaked ones of a network.
func hostAltName(a nft.Attachment) string { return altNamePrefix + a.Key() }

// networkAltNamePrefix starts the alternative names of a network's host ends.
func networkAltNamePrefix(network string) string {
	return altNamePrefix + nft.NetworkKey(network) + "-"
}

// plan is what an IPAM result means for a point-to-point link.
type plan struct {
	addrs    []*net.IPNet // container addresses, with their prefix
	ips      []net.IP     // the same, bare
	gateways []net.IP     // distinct gateways, which the host end carries
	routes   []link.Route // container routes: gateways, subnets, then IPAM's
}

// planFor checks the IPAM result and derives the container's routes: each
// gateway through a link-scope route, each address's subnet via its gateway
// (so all traffic, even to the subnet, goes through the host), then the
// IPAM routes, via the first gateway of their family when they name none.
func planFor(result *cni.Result, ipamType string) (*plan, error) {
	if len(result.IPs) == 0 {
		return nil, invalid("IPAM plugin %q returned no IP configuration", ipamType)
	}
	p := &plan{}
	scopeLink := int(netlink.SCOPE_LINK)
	seen := map[string]bool{}
	addRoute := func(r link.Route) {
		key := r.Dst.String()
		if r.Table != nil {
			key += fmt.Sprintf(" table %d", *r.Table)
		}
		if !seen[key] {
			seen[key] = true
			p.routes = append(p.routes, r)
		}
	}
	firstGW := map[int]net.IP{}
	for _, ip := range result.IPs {
		addr := ip.Address
		cidr, _ := cni.FormatCIDR(addr)
		switch {
		case ip.Gateway == nil:
			return nil, invalid("IPAM address %s has no gateway: ptp routes everything through the gateway, which the host end carries", cidr)
		case (ip.Gateway.To4() != nil) != (addr.IP.To4() != nil):
			return nil, invalid("IPAM address %s has gateway %s of the other family", cidr, ip.Gateway)
		case ip.Gateway.Equal(addr.IP):
			return nil, invalid("IPAM address %s is its own gateway", cidr)
		}
		p.addrs = append(p.addrs, &addr)
		p.ips = append(p.ips, addr.IP)
		if !containsIP(p.gateways, ip.Gateway) {
			p.gateways = append(p.gateways, ip.Gateway)
		}
		if _, ok := firstGW[ip.Family()]; !ok {
			firstGW[ip.Family()] = ip.Gateway
		}
		addRoute(link.Route{Dst: *link.SingleAddress(ip.Gateway), Scope: &scopeLink, Src: addr.IP})
		subnet := net.IPNet{IP: addr.IP.Mask(addr.Mask), Mask: addr.Mask}
		addRoute(link.Route{Dst: subnet, GW: ip.Gateway, Src: addr.IP})
	}
	for _, r := range result.Routes {
		family := 6
		if r.Dst.IP.To4() != nil {
			family = 4
		}
		gw := r.GW
		if gw == nil {
			// Without an address of its family the route stays direct, as
			// with the reference: useless, but harmless.
			gw = firstGW[family]
		}
		addRoute(link.Route{Dst: r.Dst, GW: gw, Priority: r.Priority, Table: r.Table, Scope: r.Scope})
	}
	return p, nil
}

func containsIP(list []net.IP, ip net.IP) bool {
	for _, x := range list {
		if x.Equal(ip) {
			return true
		}
	}
	return false
}
