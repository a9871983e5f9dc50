package firewall

import (
	"encoding/json"
	"fmt"
	"net"
	"slices"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/iptables"
	"github.com/cnikit/cnikit/internal/nft"
	"github.com/cnikit/cnikit/internal/rundir"
	"github.com/cnikit/cnikit/skel"
)

// Backends.
const (
	backendNftables  = "nftables"
	backendIptables  = "iptables"
	backendFirewalld = "firewalld"
)

// Ingress policies.
const (
	policyOpen       = "open"
	policySameBridge = "same-bridge"
	policyIsolated   = "isolated"
)

const (
	defaultAdminChain = "CNI-ADMIN"
	defaultZone       = "trusted"
	// maxZoneName is firewalld's limit (28-character chain names minus the
	// longest prefix and suffix it adds).
	maxZoneName = 17
)

// conf is the firewall plugin's configuration; README.md lists every key.
type conf struct {
	cni.PluginConf
	Backend                string `json:"backend"`
	IptablesAdminChainName string `json:"iptablesAdminChainName"`
	FirewalldZone          string `json:"firewalldZone"`
	IngressPolicy          string `json:"ingressPolicy"`
	StateDir               string `json:"stateDir"`
}

func invalid(format string, a ...any) error {
	return cni.Errorf(cni.CodeInvalidNetworkConfig, "firewall: "+format, a...)
}

// parse decodes and checks the configuration; every error names the key and
// its value, and nothing has been changed on the host yet.
func parse(args *skel.Args) (*conf, error) {
	c := &conf{}
	if err := json.Unmarshal(args.StdinData, c); err != nil {
		return nil, cni.Errorf(cni.CodeDecodingFailure, "firewall: decoding configuration: %v", err)
	}
	c.CNIVersion = args.Version
	if err := c.ParsePrevResult(); err != nil {
		return nil, err
	}
	if !slices.Contains([]string{"", backendNftables, backendIptables, backendFirewalld}, c.Backend) {
		return nil, invalid("backend %q is not supported (\"nftables\", \"iptables\" or \"firewalld\")", c.Backend)
	}
	if c.IngressPolicy == "" {
		c.IngressPolicy = policyOpen
	}
	if !slices.Contains([]string{policyOpen, policySameBridge, policyIsolated}, c.IngressPolicy) {
		return nil, invalid("ingressPolicy %q is not supported (\"open\", \"same-bridge\" or \"isolated\")", c.IngressPolicy)
	}
	if c.IptablesAdminChainName == "" {
		c.IptablesAdminChainName = defaultAdminChain
	}
	if !iptables.ValidName(c.IptablesAdminChainName, iptables.MaxChainName) {
		return nil, invalid("iptablesAdminChainName %q is not a valid chain name (1-%d letters, digits, '-', '_', '.', '@', not starting with '-')",
			c.IptablesAdminChainName, iptables.MaxChainName)
	}
	if slices.Contains(reservedChains, c.IptablesAdminChainName) {
		return nil, invalid("iptablesAdminChainName %q is a chain or target iptables or this plugin already uses", c.IptablesAdminChainName)
	}
	if c.FirewalldZone == "" {
		c.FirewalldZone = defaultZone
	}
	if !iptables.ValidName(c.FirewalldZone, maxZoneName) {
		return nil, invalid("firewalldZone %q is not a valid zone name (1-%d letters, digits, '-', '_', '.', '@')", c.FirewalldZone, maxZoneName)
	}
	if c.StateDir == "" {
		// rundir.Plugin("firewall"), /run/cni/firewall: it holds the firewalld
		// backend's record of the sources it added and the iptables backend's
		// lock; /run, like iptables rules and firewalld's runtime zones, does
		// not survive a reboot.
		c.StateDir = rundir.Plugin("firewall")
	}
	return c, nil
}

// reservedChains cannot be the admin chain.
var reservedChains = []string{
	"ACCEPT", "DROP", "RETURN", "QUEUE", "INPUT", "OUTPUT", "FORWARD", "PREROUTING", "POSTROUTING",
	forwardChain, isolationStage1, isolationStage2,
}

// isolating reports whether the ingress policy isolates the bridge.
func (c *conf) isolating() bool { return c.IngressPolicy != policyOpen }

// attachment is what every backend works on: the attachment's identity, its
// addresses (from prevResult; none on a DEL without one) and, under an
// isolating ingress policy, its bridge.
type attachment struct {
	nft.Attachment
	IPs []net.IP
	// Isolation is nil under ingressPolicy open or when the bridge is not
	// known (DEL without prevResult).
	Isolation *nft.Isolation
}

// attachmentOf gathers the attachment from the request. With require (ADD,
// CHECK), prevResult must be there and, under an isolating policy, name the
// bridge first, as the bridge plugin's result does.
func (c *conf) attachmentOf(args *skel.Args, require bool) (*attachment, error) {
	a := &attachment{Attachment: nft.Attachment{Network: c.Name, ContainerID: args.ContainerID, IfName: args.IfName}}
	r := c.PrevResult
	if r == nil {
		if require {
			return nil, invalid("prevResult is missing: the firewall plugin must follow an interface plugin in a chain")
		}
		return a, nil
	}
	for _, ip := range r.IPs {
		// Addresses of a host-side interface (not the container's) are not
		// the container's traffic.
		if ip.Interface != nil && *ip.Interface >= 0 && *ip.Interface < len(r.Interfaces) && r.Interfaces[*ip.Interface].Sandbox == "" {
			continue
		}
		if ip.Address.IP == nil {
			continue
		}
		a.IPs = append(a.IPs, ip.Address.IP)
	}
	if c.isolating() {
		bridge, err := bridgeOf(r, c.IngressPolicy)
		if err != nil {
			if require {
				return nil, err
			}
		} else {
			a.Isolation = &nft.Isolation{Bridge: bridge, SameBridge: c.IngressPolicy == policySameBridge}
		}
	}
	return a, nil
}

// bridgeOf returns the host interface the ingress policy is keyed by: the
// result's first interface, which must be on the host.
func bridgeOf(r *cni.Result, policy string) (string, error) {
	if len(r.Interfaces) == 0 || r.Interfaces[0] == nil {
		return "", invalid("ingressPolicy %q needs the bridge as prevResult's first interface, and prevResult has no interfaces (chain the firewall after the bridge plugin)", policy)
	}
	first := r.Interfaces[0]
	if first.Sandbox != "" {
		return "", invalid("ingressPolicy %q needs the bridge as prevResult's first interface, but %q is inside %s", policy, first.Name, first.Sandbox)
	}
	if !iptables.ValidName(first.Name, cni.MaxInterfaceNameLen) {
		return "", invalid("ingressPolicy %q: prevResult's first interface %q is not a usable bridge name", policy, first.Name)
	}
	return first.Name, nil
}

func (a *attachment) String() string {
	return fmt.Sprintf("%s/%s on network %q", a.ContainerID, a.IfName, a.Network)
}
