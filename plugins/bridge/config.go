package bridge

import (
	"encoding/json"
	"fmt"
	"net"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/link"
	"github.com/cnikit/cnikit/skel"
)

// defaultBridge is the bridge used when the configuration names none.
const defaultBridge = "cni0"

// conf is the bridge plugin's configuration; README.md lists every key.
type conf struct {
	cni.PluginConf
	BrName                    string       `json:"bridge"`
	IsGW                      bool         `json:"isGateway"`
	IsDefaultGW               bool         `json:"isDefaultGateway"`
	ForceAddress              bool         `json:"forceAddress"`
	IPMasq                    bool         `json:"ipMasq"`
	IPMasqBackend             *string      `json:"ipMasqBackend"`
	MTU                       int          `json:"mtu"`
	HairpinMode               bool         `json:"hairpinMode"`
	PromiscMode               bool         `json:"promiscMode"`
	Vlan                      int          `json:"vlan"`
	VlanTrunk                 []*vlanTrunk `json:"vlanTrunk,omitempty"`
	PreserveDefaultVlan       bool         `json:"preserveDefaultVlan"`
	MacSpoofChk               bool         `json:"macspoofchk"`
	EnableDad                 bool         `json:"enabledad"`
	DisableContainerInterface bool         `json:"disableContainerInterface"`
	PortIsolation             bool         `json:"portIsolation"`

	Args struct {
		Cni struct {
			Mac string `json:"mac,omitempty"`
		} `json:"cni"`
	} `json:"args"`
	RuntimeConfig struct {
		Mac string `json:"mac,omitempty"`
	} `json:"runtimeConfig"`

	// Derived by parse.
	mac   net.HardwareAddr
	trunk []link.VlanRange
}

type vlanTrunk struct {
	MinID *int `json:"minID,omitempty"`
	MaxID *int `json:"maxID,omitempty"`
	ID    *int `json:"id,omitempty"`
}

// macArgs is the CNI_ARGS the plugin reads.
type macArgs struct {
	cni.CommonArgs
	MAC string
}

func invalid(format string, a ...any) error {
	return cni.Errorf(cni.CodeInvalidNetworkConfig, "bridge: "+format, a...)
}

// parse decodes and checks the configuration; every error names the key and
// its value, and nothing has been changed on the host yet.
func parse(args *skel.Args) (*conf, error) {
	// preserveDefaultVlan defaults to true, as in the reference.
	n := &conf{BrName: defaultBridge, PreserveDefaultVlan: true}
	if err := json.Unmarshal(args.StdinData, n); err != nil {
		return nil, cni.Errorf(cni.CodeDecodingFailure, "bridge: decoding configuration: %v", err)
	}
	n.CNIVersion = args.Version
	if err := n.ParsePrevResult(); err != nil {
		return nil, err
	}
	if n.BrName == "" {
		n.BrName = defaultBridge
	}
	if err := cni.ValidateInterfaceName(n.BrName); err != nil {
		return nil, invalid("bridge %q is not a valid interface name: %v", n.BrName, err)
	}
	if n.IsDefaultGW {
		n.IsGW = true
	}
	if n.IPMasqBackend != nil && *n.IPMasqBackend != "iptables" && *n.IPMasqBackend != "nftables" {
		return nil, invalid("ipMasqBackend %q is not supported (\"iptables\" or \"nftables\")", *n.IPMasqBackend)
	}
	if n.MTU < 0 || n.MTU > 65535 {
		return nil, invalid("mtu %d is out of range (0-65535)", n.MTU)
	}
	if n.HairpinMode && n.PromiscMode {
		return nil, invalid("hairpinMode and promiscMode cannot both be set")
	}
	if n.Vlan < 0 || n.Vlan > 4094 {
		return nil, invalid("vlan %d is out of range (0-4094)", n.Vlan)
	}
	if n.Vlan != 0 && n.IsGW && len(fmt.Sprintf("%s.%d", n.BrName, n.Vlan)) > 15 {
		return nil, invalid("bridge %q with vlan %d makes a gateway interface name longer than 15 characters", n.BrName, n.Vlan)
	}
	for i, t := range n.VlanTrunk {
		r, err := t.rangeOf()
		if err != nil {
			return nil, invalid("vlanTrunk[%d]: %v", i, err)
		}
		n.trunk = append(n.trunk, r)
	}
	if n.DisableContainerInterface && n.IPAM.Type != "" {
		return nil, invalid("disableContainerInterface cannot be used with ipam (type %q): the interface must be up to use addresses", n.IPAM.Type)
	}
	if err := n.parseMAC(args.CNIArgs); err != nil {
		return nil, err
	}
	return n, nil
}

func (t *vlanTrunk) rangeOf() (link.VlanRange, error) {
	if t == nil {
		return link.VlanRange{}, fmt.Errorf("empty entry")
	}
	if t.ID != nil {
		if t.MinID != nil || t.MaxID != nil {
			return link.VlanRange{}, fmt.Errorf("id %d cannot be combined with minID/maxID", *t.ID)
		}
		if *t.ID < 1 || *t.ID > 4094 {
			return link.VlanRange{}, fmt.Errorf("id %d is out of range (1-4094)", *t.ID)
		}
		return link.VlanRange{Min: uint16(*t.ID), Max: uint16(*t.ID)}, nil
	}
	if t.MinID == nil || t.MaxID == nil {
		return link.VlanRange{}, fmt.Errorf("minID and maxID must be set together (or id alone)")
	}
	if *t.MinID < 1 || *t.MinID > 4094 {
		return link.VlanRange{}, fmt.Errorf("minID %d is out of range (1-4094)", *t.MinID)
	}
	if *t.MaxID < 1 || *t.MaxID > 4094 {
		return link.VlanRange{}, fmt.Errorf("maxID %d is out of range (1-4094)", *t.MaxID)
	}
	if *t.MinID > *t.MaxID {
		return link.VlanRange{}, fmt.Errorf("minID %d is greater than maxID %d", *t.MinID, *t.MaxID)
	}
	return link.VlanRange{Min: uint16(*t.MinID), Max: uint16(*t.MaxID)}, nil
}

// parseMAC applies the container MAC sources, weakest first: CNI_ARGS MAC,
// args.cni.mac, runtimeConfig.mac.
func (n *conf) parseMAC(cniArgs string) error {
	var fromEnv macArgs
	if cniArgs != "" {
		if err := cni.LoadArgs(cniArgs, &fromEnv); err != nil {
			return err
		}
	}
	for _, src := range []struct{ key, value string }{
		{"CNI_ARGS MAC", fromEnv.MAC}, {"args.cni.mac", n.Args.Cni.Mac}, {"runtimeConfig.mac", n.RuntimeConfig.Mac},
	} {
		if src.value == "" {
			continue
		}
		mac, err := net.ParseMAC(src.value)
		if err != nil || len(mac) != 6 {
			code := cni.CodeInvalidNetworkConfig
			if src.key == "CNI_ARGS MAC" {
				code = cni.CodeInvalidEnvironment
			}
			return cni.Errorf(code, "bridge: %s %q is not a valid Ethernet address", src.key, src.value)
		}
		n.mac = mac
	}
	return nil
}

// usesVLANs reports whether the host port gets VLANs (and a new bridge VLAN
// filtering).
func (n *conf) usesVLANs() bool { return n.Vlan != 0 || len(n.trunk) > 0 }
