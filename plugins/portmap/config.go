package portmap

import (
	"encoding/json"
	"fmt"
	"net"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/nft"
	"github.com/cnikit/cnikit/skel"
)

// conf is the portmap plugin's configuration; README.md lists every key.
type conf struct {
	cni.PluginConf
	SNAT                 *bool     `json:"snat"`
	MasqAll              bool      `json:"masqAll"`
	MarkMasqBit          *int      `json:"markMasqBit"`
	ExternalSetMarkChain *string   `json:"externalSetMarkChain"`
	Backend              *string   `json:"backend"`
	ConditionsV4         *[]string `json:"conditionsV4"`
	ConditionsV6         *[]string `json:"conditionsV6"`
	RuntimeConfig        struct {
		PortMappings []portMapping `json:"portMappings"`
	} `json:"runtimeConfig"`

	// Derived by parse.
	match4, match6 addrMatch
}

// portMapping is one entry of the portMappings capability.
type portMapping struct {
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol"`
	HostIP        string `json:"hostIP,omitempty"`
}

// Backends the reference knows; cnikit serves both with nftables over
// netlink.
const (
	backendIptables = "iptables"
	backendNftables = "nftables"
)

func invalid(format string, args ...any) error {
	return cni.Errorf(cni.CodeInvalidNetworkConfig, "portmap: "+format, args...)
}

// parse decodes and checks the configuration. Mappings are checked by
// mappings, which ADD and CHECK call; DEL and GC do not need them valid.
func parse(args *skel.Args) (*conf, error) {
	var c conf
	if err := json.Unmarshal(args.StdinData, &c); err != nil {
		return nil, cni.Errorf(cni.CodeDecodingFailure, "portmap: decoding configuration: %v", err)
	}
	c.CNIVersion = args.Version
	if err := c.ParsePrevResult(); err != nil {
		return nil, err
	}
	if err := c.checkBackend(); err != nil {
		return nil, err
	}
	var err error
	if c.ConditionsV4 != nil {
		if c.match4, err = parseConditions("conditionsV4", *c.ConditionsV4, false); err != nil {
			return nil, err
		}
	}
	if c.ConditionsV6 != nil {
		if c.match6, err = parseConditions("conditionsV6", *c.ConditionsV6, true); err != nil {
			return nil, err
		}
	}
	return &c, nil
}

// checkBackend validates the backend choice and the keys tied to one
// backend, with the reference's rules: markMasqBit (0-31) and
// externalSetMarkChain exclude each other and belong to iptables, and
// conditions written for the other backend are refused.
func (c *conf) checkBackend() error {
	if c.MarkMasqBit != nil && c.ExternalSetMarkChain != nil {
		return invalid("markMasqBit and externalSetMarkChain cannot both be set")
	}
	if c.MarkMasqBit != nil && (*c.MarkMasqBit < 0 || *c.MarkMasqBit > 31) {
		return invalid("markMasqBit %d is out of range (0-31)", *c.MarkMasqBit)
	}
	if c.ExternalSetMarkChain != nil && *c.ExternalSetMarkChain == "" {
		return invalid("externalSetMarkChain is empty")
	}
	var iptablesOnly, nftablesOnly []string
	if c.MarkMasqBit != nil {
		iptablesOnly = append(iptablesOnly, "markMasqBit")
	}
	if c.ExternalSetMarkChain != nil {
		iptablesOnly = append(iptablesOnly, "externalSetMarkChain")
	}
	for _, cond := range []struct {
		key  string
		list *[]string
	}{{"conditionsV4", c.ConditionsV4}, {"conditionsV6", c.ConditionsV6}} {
		if cond.list == nil || len(strings.Fields(strings.Join(*cond.list, " "))) == 0 {
			continue
		}
		if isIptablesStyle(*cond.list) {
			iptablesOnly = append(iptablesOnly, cond.key)
		} else {
			nftablesOnly = append(nftablesOnly, cond.key)
		}
	}
	backend := ""
	if c.Backend != nil {
		backend = *c.Backend
	}
	switch backend {
	case "":
		if len(iptablesOnly) > 0 && len(nftablesOnly) > 0 {
			return invalid("configuration mixes iptables-specific options %v and nftables-specific options %v", iptablesOnly, nftablesOnly)
		}
	case backendIptables:
		if len(nftablesOnly) > 0 {
			return invalid("iptables backend was requested but configuration contains nftables-specific options %v", nftablesOnly)
		}
	case backendNftables:
		if len(iptablesOnly) > 0 {
			return invalid("nftables backend was requested but configuration contains iptables-specific options %v", iptablesOnly)
		}
	default:
		return invalid("backend %q is not %q or %q", backend, backendIptables, backendNftables)
	}
	return nil
}

// snat reports whether hairpin and localhost connections are masqueraded.
func (c *conf) snat() bool { return c.SNAT == nil || *c.SNAT }

var protocols = map[string]uint8{"tcp": unix.IPPROTO_TCP, "udp": unix.IPPROTO_UDP, "sctp": unix.IPPROTO_SCTP}

// protocolName is the inverse of protocols.
func protocolName(p uint8) string {
	for name, n := range protocols {
		if n == p {
			return name
		}
	}
	return fmt.Sprint(p)
}

// checkedMapping is a validated portMapping.
type checkedMapping struct {
	hostIP        net.IP // nil: any address of the family (or of both, when anyFamily)
	anyFamily     bool
	protocol      uint8
	hostPort      uint16
	containerPort uint16
}

// mappings validates runtimeConfig.portMappings: ports 1-65535, protocol
// tcp, udp or sctp (tcp when empty, any case), hostIP empty or an address.
// A mapping repeated exactly is kept once; the same host port mapped twice
// to different targets is refused.
func (c *conf) mappings() ([]checkedMapping, error) {
	var out []checkedMapping
	seen := map[string]checkedMapping{}
	for i, pm := range c.RuntimeConfig.PortMappings {
		where := fmt.Sprintf("runtimeConfig.portMappings[%d]", i)
		if pm.HostPort < 1 || pm.HostPort > 65535 {
			return nil, invalid("%s: hostPort %d is out of range (1-65535)", where, pm.HostPort)
		}
		if pm.ContainerPort < 1 || pm.ContainerPort > 65535 {
			return nil, invalid("%s: containerPort %d is out of range (1-65535)", where, pm.ContainerPort)
		}
		name := strings.ToLower(pm.Protocol)
		if name == "" {
			name = "tcp"
		}
		proto, ok := protocols[name]
		if !ok {
			return nil, invalid("%s: protocol %q is not tcp, udp or sctp", where, pm.Protocol)
		}
		m := checkedMapping{protocol: proto, hostPort: uint16(pm.HostPort), containerPort: uint16(pm.ContainerPort)}
		if pm.HostIP == "" {
			m.anyFamily = true
		} else {
			ip := net.ParseIP(pm.HostIP)
			if ip == nil {
				return nil, invalid("%s: hostIP %q is not an IP address", where, pm.HostIP)
			}
			if v4 := ip.To4(); v4 != nil {
				ip = v4
			}
			m.hostIP = ip
		}
		// The keys the mapping takes in the host port program, per family.
		var keys []string
		for _, family := range []string{"4", "6"} {
			switch {
			case m.anyFamily:
				keys = append(keys, family+"/any")
			case (m.hostIP.To4() != nil) != (family == "4"):
			case m.hostIP.IsUnspecified():
				keys = append(keys, family+"/any")
			default:
				keys = append(keys, family+"/"+m.hostIP.String())
			}
		}
		fresh := false
		for _, k := range keys {
			k += fmt.Sprintf("/%s/%d", name, m.hostPort)
			if prev, ok := seen[k]; ok {
				if prev.containerPort != m.containerPort {
					return nil, invalid("%s: hostPort %d/%s is already mapped to containerPort %d", where, pm.HostPort, name, prev.containerPort)
				}
				continue
			}
			seen[k] = m
			fresh = true
		}
		if fresh { // a mapping repeated exactly is kept once
			out = append(out, m)
		}
	}
	return out, nil
}

// containerIPs returns the container's first IPv4 and first IPv6 address
// (with their prefix length) in prevResult, as the reference picks them:
// addresses of another interface, or of an interface outside a sandbox,
// are skipped; addresses tied to no interface count.
func containerIPs(r *cni.Result, ifName string) (v4, v6 *net.IPNet) {
	if r == nil {
		return nil, nil
	}
	for _, ip := range r.IPs {
		if i := ip.Interface; i != nil && *i >= 0 && *i < len(r.Interfaces) {
			if iface := r.Interfaces[*i]; iface.Name != ifName || iface.Sandbox == "" {
				continue
			}
		}
		addr := ip.Address
		if addr.IP.To4() != nil {
			if v4 == nil {
				v4 = &net.IPNet{IP: addr.IP.To4(), Mask: addr.Mask}
			}
		} else if v6 == nil {
			v6 = &addr
		}
	}
	return v4, v6
}

// hostPorts turns the validated mappings into the host port program's
// entries for the container's addresses: IPv4 mappings for v4, IPv6 ones
// for v6, and mappings with no host IP for both.
func (c *conf) hostPorts(mappings []checkedMapping, v4, v6 *net.IPNet) []nft.HostPort {
	mode := nft.SNATNone
	if c.snat() {
		mode = nft.SNATHairpin
		if c.MasqAll {
			mode = nft.SNATAll
		}
	}
	var out []nft.HostPort
	for _, fam := range []struct {
		container *net.IPNet
		match     addrMatch
		v6        bool
	}{{v4, c.match4, false}, {v6, c.match6, true}} {
		if fam.container == nil {
			continue
		}
		for _, m := range mappings {
			var hostIP net.IP
			switch {
			case m.anyFamily:
			case (m.hostIP.To4() == nil) != fam.v6:
				continue // a host IP of the other family
			case !m.hostIP.IsUnspecified():
				hostIP = m.hostIP
			}
			out = append(out, nft.HostPort{
				HostIP: hostIP, Protocol: m.protocol, Port: m.hostPort,
				Container: *fam.container, ContainerPort: m.containerPort,
				Sources: fam.match.sources, Destinations: fam.match.destinations,
				SNAT: mode,
			})
		}
	}
	return out
}
