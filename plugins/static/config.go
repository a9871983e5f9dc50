package static

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/cnikit/cnikit/cni"
)

// wireConf is the JSON shape of a request's configuration: the interface
// plugin's whole configuration, of which static reads the ipam section and
// the requested addresses.
type wireConf struct {
	cni.PluginConf
	IPAM          *wireIPAM `json:"ipam"`
	RuntimeConfig *struct {
		IPs []string `json:"ips"`
	} `json:"runtimeConfig"`
	Args *struct {
		CNI *struct {
			IPs []string `json:"ips"`
		} `json:"cni"`
	} `json:"args"`
}

// wireIPAM is the ipam section; README.md lists every key.
type wireIPAM struct {
	Type      string        `json:"type"`
	Addresses []wireAddress `json:"addresses"`
	Routes    []*wireRoute  `json:"routes"`
	DNS       cni.DNS       `json:"dns"`
}

// wireAddress is one entry of ipam.addresses.
type wireAddress struct {
	Address string `json:"address"`
	Gateway string `json:"gateway"`
}

// wireRoute is one entry of ipam.routes, as results carry routes.
type wireRoute struct {
	Dst      string `json:"dst"`
	GW       string `json:"gw"`
	MTU      int    `json:"mtu"`
	AdvMSS   int    `json:"advmss"`
	Priority int    `json:"priority"`
	Table    *int   `json:"table"`
	Scope    *int   `json:"scope"`
}

// envArgs are the CNI_ARGS keys static understands; like the reference, it
// refuses any other key unless IgnoreUnknown=1.
type envArgs struct {
	cni.CommonArgs
	// IP is a comma-separated list of addresses in CIDR notation.
	IP string
	// GATEWAY is a comma-separated list of gateways, each given to the
	// CNI_ARGS IP addresses whose subnet contains it.
	GATEWAY string
}

// config is a request, checked, with every source of addresses applied.
type config struct {
	// Addresses is what ADD returns, in order, with their gateways.
	Addresses []*cni.IPConfig
	Routes    []*cni.Route
	DNS       cni.DNS
	// PrevResult is the request's prevResult, for CHECK.
	PrevResult *cni.Result
	// Warnings are harmless oddities worth a log line.
	Warnings []string
}

// source is where an address came from, for error messages.
type source struct {
	where string // "ipam.addresses[0].address", "CNI_ARGS IP", ...
	code  cni.Code
}

// parseConfig decodes and checks a request. The address sources apply as in
// the reference: ipam.addresses, then CNI_ARGS IP appended (with the gateways
// of CNI_ARGS GATEWAY); args.cni.ips replaces all of them, and
// runtimeConfig.ips replaces everything, args.cni.ips included. Errors are
// *cni.Error: 6 for JSON that does not parse, 7 for a bad value in the
// configuration, 4 for a bad CNI_ARGS value; each names the value.
func parseConfig(stdin []byte, cniArgs, version string) (*config, error) {
	var w wireConf
	if err := json.Unmarshal(stdin, &w); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return nil, cni.Errorf(cni.CodeInvalidNetworkConfig, "static: invalid configuration: %s: JSON %s where %s is expected",
				typeErr.Field, typeErr.Value, typeErr.Type)
		}
		return nil, cni.Errorf(cni.CodeDecodingFailure, "static: decoding configuration: %v", err)
	}
	if w.IPAM == nil {
		return nil, cni.Errorf(cni.CodeInvalidNetworkConfig, "static: missing ipam section: static reads its addresses from the network's ipam key")
	}
	c := &config{DNS: w.IPAM.DNS}
	var err error
	if c.Routes, err = parseRoutes(w.IPAM.Routes); err != nil {
		return nil, err
	}

	var sources []source
	for i, a := range w.IPAM.Addresses {
		where := fmt.Sprintf("ipam.addresses[%d]", i)
		ip, err := parseAddress(where+".address", a.Address, cni.CodeInvalidNetworkConfig)
		if err != nil {
			return nil, err
		}
		if a.Gateway != "" {
			if ip.Gateway, err = parseGateway(where+".gateway", a.Gateway, cni.CodeInvalidNetworkConfig); err != nil {
				return nil, err
			}
		}
		c.Addresses = append(c.Addresses, ip)
		sources = append(sources, source{where: where, code: cni.CodeInvalidNetworkConfig})
	}

	fromArgs, err := parseEnvArgs(cniArgs)
	if err != nil {
		return nil, err
	}
	for i, ip := range fromArgs {
		c.Addresses = append(c.Addresses, ip)
		sources = append(sources, source{where: fmt.Sprintf("CNI_ARGS IP (item %d)", i+1), code: cni.CodeInvalidEnvironment})
	}

	replace := func(where string, list []string) error {
		if len(list) == 0 {
			return nil
		}
		c.Addresses, sources = nil, nil
		for i, s := range list {
			item := fmt.Sprintf("%s[%d]", where, i)
			ip, err := parseAddress(item, s, cni.CodeInvalidNetworkConfig)
			if err != nil {
				return err
			}
			c.Addresses = append(c.Addresses, ip)
			sources = append(sources, source{where: item, code: cni.CodeInvalidNetworkConfig})
		}
		return nil
	}
	if w.Args != nil && w.Args.CNI != nil {
		if err := replace("args.cni.ips", w.Args.CNI.IPs); err != nil {
			return nil, err
		}
	}
	if w.RuntimeConfig != nil {
		if err := replace("runtimeConfig.ips", w.RuntimeConfig.IPs); err != nil {
			return nil, err
		}
	}

	if err := checkAddresses(c.Addresses, sources, version); err != nil {
		return nil, err
	}
	if len(c.Addresses) == 0 {
		c.Warnings = append(c.Warnings, "no addresses configured: the result holds none")
	}

	w.PluginConf.CNIVersion = version
	if err := w.ParsePrevResult(); err != nil {
		return nil, err
	}
	c.PrevResult = w.PrevResult
	return c, nil
}

// parseAddress reads "address/prefix", keeping the host bits.
func parseAddress(where, s string, code cni.Code) (*cni.IPConfig, error) {
	if !strings.Contains(s, "/") {
		return nil, cni.Errorf(code, "static: %s %q is not in CIDR notation (address/prefix)", where, s)
	}
	n, err := cni.ParseCIDR(s)
	if err != nil {
		return nil, cni.Errorf(code, "static: %s %q is not a valid CIDR", where, s)
	}
	return &cni.IPConfig{Address: *n}, nil
}

// parseGateway reads a gateway address.
func parseGateway(where, s string, code cni.Code) (net.IP, error) {
	gw := net.ParseIP(s)
	if gw == nil {
		return nil, cni.Errorf(code, "static: %s %q is not an IP address", where, s)
	}
	if v4 := gw.To4(); v4 != nil {
		gw = v4
	}
	return gw, nil
}

// parseEnvArgs reads CNI_ARGS IP and GATEWAY. Each gateway goes to the IP
// addresses whose subnet contains it, a later one winning; as in the
// reference, it never applies to ipam.addresses, which carry their own.
func parseEnvArgs(cniArgs string) ([]*cni.IPConfig, error) {
	var env envArgs
	if err := cni.LoadArgs(cniArgs, &env); err != nil {
		return nil, err
	}
	var ips []*cni.IPConfig
	if env.IP != "" {
		for _, item := range strings.Split(env.IP, ",") {
			ip, err := parseAddress("CNI_ARGS IP", strings.TrimSpace(item), cni.CodeInvalidEnvironment)
			if err != nil {
				return nil, err
			}
			ips = append(ips, ip)
		}
	}
	if env.GATEWAY != "" {
		for _, item := range strings.Split(env.GATEWAY, ",") {
			gw, err := parseGateway("CNI_ARGS GATEWAY", strings.TrimSpace(item), cni.CodeInvalidEnvironment)
			if err != nil {
				return nil, err
			}
			for _, ip := range ips {
				if ip.Address.Contains(gw) {
					ip.Gateway = gw
				}
			}
		}
	}
	return ips, nil
}

// checkAddresses refuses what no interface plugin can apply: a gateway of
// the other family or equal to the address, an address listed twice, and
// more than one address per family in a result of version 0.2.0 or older.
func checkAddresses(ips []*cni.IPConfig, sources []source, version string) error {
	seen := map[string]string{}
	var v4, v6 int
	for i, ip := range ips {
		src := sources[i]
		addr := ip.Address.IP.String()
		if ip.Gateway != nil {
			if (ip.Gateway.To4() != nil) != (ip.Address.IP.To4() != nil) {
				return cni.Errorf(src.code, "static: %s: gateway %s is not of the family of address %s", src.where, ip.Gateway, cidr(ip))
			}
			if ip.Gateway.Equal(ip.Address.IP) {
				return cni.Errorf(src.code, "static: %s: gateway %s is the address itself", src.where, ip.Gateway)
			}
		}
		if first, dup := seen[addr]; dup {
			return cni.Errorf(src.code, "static: %s: address %s is already given by %s", src.where, addr, first)
		}
		seen[addr] = src.where
		if ip.Family() == 4 {
			v4++
		} else {
			v6++
		}
	}
	if ok, _ := cni.VersionAtLeast(version, "0.3.0"); !ok && (v4 > 1 || v6 > 1) {
		return cni.Errorf(cni.CodeInvalidNetworkConfig,
			"static: cniVersion %q allows one address per family, but %d IPv4 and %d IPv6 addresses are configured", version, v4, v6)
	}
	return nil
}

func cidr(ip *cni.IPConfig) string {
	s, _ := cni.FormatCIDR(ip.Address)
	return s
}

// parseRoutes reads ipam.routes; dst is required, gw must be of its family.
func parseRoutes(wire []*wireRoute) ([]*cni.Route, error) {
	var routes []*cni.Route
	for i, wr := range wire {
		if wr == nil {
			continue
		}
		where := fmt.Sprintf("ipam.routes[%d]", i)
		if wr.Dst == "" {
			return nil, cni.Errorf(cni.CodeInvalidNetworkConfig, "static: %s: dst is missing", where)
		}
		dst, err := cni.ParseCIDR(wr.Dst)
		if err != nil {
			return nil, cni.Errorf(cni.CodeInvalidNetworkConfig, "static: %s: dst %q is not a CIDR", where, wr.Dst)
		}
		route := &cni.Route{Dst: *dst, MTU: wr.MTU, AdvMSS: wr.AdvMSS, Priority: wr.Priority, Table: wr.Table, Scope: wr.Scope}
		if wr.GW != "" {
			gw, err := parseGateway(where+".gw", wr.GW, cni.CodeInvalidNetworkConfig)
			if err != nil {
				return nil, err
			}
			if (gw.To4() != nil) != (dst.IP.To4() != nil) {
				return nil, cni.Errorf(cni.CodeInvalidNetworkConfig, "static: %s: gw %s is not of the family of dst %s", where, wr.GW, wr.Dst)
			}
			route.GW = gw
		}
		routes = append(routes, route)
	}
	return routes, nil
}
