package hostlocal

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/ipam"
)

// config is a request's configuration, checked and with every source of range
// sets and requested addresses merged.
type config struct {
	Name       string
	CNIVersion string
	DataDir    string
	ResolvConf string
	Routes     []*cni.Route
	// Sets in allocation order: runtimeConfig.ipRanges, the legacy single
	// range, then ipam.ranges. The index of a set names its last_reserved_ip file.
	Sets []ipam.RangeSet
	// Requested addresses from args.cni.ips, runtimeConfig.ips and CNI_ARGS IP.
	Requested []netip.Addr
	// PrevIPs are the addresses of prevResult; PrevErr says why they could not
	// be read (DEL goes on without them, CHECK fails).
	PrevIPs []netip.Addr
	PrevErr error
	// Keep lists the attachments a GC request names as valid.
	Keep []ipam.Attachment
	// Warnings are harmless oddities worth a log line.
	Warnings []string
}

// wireConf is the JSON shape of a request's configuration.
type wireConf struct {
	cni.PluginConf
	IPAM          *wireIPAM `json:"ipam"`
	RuntimeConfig *struct {
		IPRanges [][]ipam.RangeSpec `json:"ipRanges"`
		IPs      []string           `json:"ips"`
	} `json:"runtimeConfig"`
	Args *struct {
		CNI *struct {
			IPs []string `json:"ips"`
		} `json:"cni"`
	} `json:"args"`
}

// wireIPAM is the ipam section. The embedded RangeSpec holds the legacy single
// range (subnet, rangeStart, rangeEnd, gateway written directly in ipam).
type wireIPAM struct {
	ipam.RangeSpec
	Type       string             `json:"type"`
	Ranges     [][]ipam.RangeSpec `json:"ranges"`
	Routes     []*wireRoute       `json:"routes"`
	DataDir    string             `json:"dataDir"`
	ResolvConf string             `json:"resolvConf"`
}

type wireRoute struct {
	Dst      string `json:"dst"`
	GW       string `json:"gw"`
	MTU      int    `json:"mtu"`
	AdvMSS   int    `json:"advmss"`
	Priority int    `json:"priority"`
	Table    *int   `json:"table"`
	Scope    *int   `json:"scope"`
}

// envArgs are the CNI_ARGS keys host-local understands.
type envArgs struct {
	cni.CommonArgs
	IP requestedIP
}

// requestedIP is CNI_ARGS IP: "<ip>" or "<ip>/<prefix>"; empty means none, as
// in the reference.
type requestedIP struct{ netip.Addr }

func (r *requestedIP) UnmarshalText(text []byte) error {
	if len(text) == 0 {
		r.Addr = netip.Addr{}
		return nil
	}
	a, err := ipam.ParseRequestedIP(string(text))
	if err != nil {
		return err
	}
	r.Addr = a
	return nil
}

// parseOptions says what a verb needs from the configuration.
type parseOptions struct {
	// rangesOptional lets a configuration without range sets through: GC and
	// STATUS requests carry no runtimeConfig, so ranges given only as the
	// ipRanges capability are absent from them.
	rangesOptional bool
}

// parseConfig decodes and checks a request: stdin, CNI_ARGS and the request's
// version. Errors are *cni.Error: 6 for JSON that does not parse, 7 for values
// that are wrong (naming the value), 4 for bad CNI_ARGS.
func parseConfig(stdin []byte, cniArgs string, opts parseOptions) (*config, error) {
	var w wireConf
	if err := json.Unmarshal(stdin, &w); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return nil, cni.Errorf(cni.CodeInvalidNetworkConfig, "invalid configuration: %s: JSON %s where %s is expected",
				typeErr.Field, typeErr.Value, typeErr.Type)
		}
		return nil, cni.Errorf(cni.CodeDecodingFailure, "decoding configuration: %v", err)
	}
	if err := cni.ValidateNetworkName(w.Name); err != nil {
		return nil, err
	}
	if _, err := cni.ParseVersion(w.CNIVersion); err != nil {
		return nil, cni.Errorf(cni.CodeDecodingFailure, "invalid cniVersion %q: %v", w.CNIVersion, err)
	}
	if w.IPAM == nil {
		return nil, cni.Errorf(cni.CodeInvalidNetworkConfig, "missing ipam section: host-local reads its ranges from the network's ipam key")
	}
	c := &config{Name: w.Name, CNIVersion: w.CNIVersion, DataDir: ipam.DefaultDataDir, ResolvConf: w.IPAM.ResolvConf}
	if w.IPAM.DataDir != "" {
		if !filepath.IsAbs(w.IPAM.DataDir) {
			return nil, cni.Errorf(cni.CodeInvalidNetworkConfig, "ipam.dataDir %q is not an absolute path", w.IPAM.DataDir)
		}
		c.DataDir = filepath.Clean(w.IPAM.DataDir)
	}
	var err error
	if c.Routes, err = parseRoutes(w.IPAM.Routes); err != nil {
		return nil, err
	}
	if err := c.parseSets(&w, opts); err != nil {
		return nil, err
	}
	if err := c.parseRequested(&w, cniArgs); err != nil {
		return nil, err
	}
	c.parsePrevResult(&w)
	for _, a := range w.GCValidAttachments() {
		c.Keep = append(c.Keep, ipam.Attachment{ContainerID: a.ContainerID, IfName: a.IfName})
	}
	return c, nil
}

func parseRoutes(wire []*wireRoute) ([]*cni.Route, error) {
	var routes []*cni.Route
	for i, wr := range wire {
		if wr == nil {
			continue
		}
		if wr.Dst == "" {
			return nil, cni.Errorf(cni.CodeInvalidNetworkConfig, "ipam.routes[%d]: dst is missing", i)
		}
		dst, err := cni.ParseCIDR(wr.Dst)
		if err != nil {
			return nil, cni.Errorf(cni.CodeInvalidNetworkConfig, "ipam.routes[%d]: dst %q is not a CIDR", i, wr.Dst)
		}
		route := &cni.Route{Dst: *dst, MTU: wr.MTU, AdvMSS: wr.AdvMSS, Priority: wr.Priority, Table: wr.Table, Scope: wr.Scope}
		if wr.GW != "" {
			gw := net.ParseIP(wr.GW)
			if gw == nil {
				return nil, cni.Errorf(cni.CodeInvalidNetworkConfig, "ipam.routes[%d]: gw %q is not an IP address", i, wr.GW)
			}
			if v4 := gw.To4(); v4 != nil {
				gw = v4
			}
			if (len(gw) == net.IPv4len) != (len(dst.IP) == net.IPv4len) {
				return nil, cni.Errorf(cni.CodeInvalidNetworkConfig, "ipam.routes[%d]: gw %s is not of the family of dst %s", i, wr.GW, wr.Dst)
			}
			route.GW = gw
		}
		routes = append(routes, route)
	}
	return routes, nil
}

// parseSets gathers the range sets in the reference's order, checks each, and
// checks them against each other and the request's version.
func (c *config) parseSets(w *wireConf, opts parseOptions) error {
	if w.RuntimeConfig != nil {
		for i, specs := range w.RuntimeConfig.IPRanges {
			set, err := ipam.ParseRangeSet(fmt.Sprintf("runtimeConfig.ipRanges[%d]", i), specs)
			if err != nil {
				return err
			}
			c.Sets = append(c.Sets, set)
		}
	}
	legacy := w.IPAM.RangeSpec
	switch {
	case legacy.Subnet != "":
		r, err := ipam.ParseRange("ipam", legacy)
		if err != nil {
			return err
		}
		c.Sets = append(c.Sets, ipam.RangeSet{Where: "ipam", Ranges: []ipam.Range{r}})
	case !legacy.IsZero():
		// The reference ignores these without a subnet; so do we, audibly.
		c.Warnings = append(c.Warnings, "ipam.rangeStart, ipam.rangeEnd and ipam.gateway are ignored without ipam.subnet")
	}
	for i, specs := range w.IPAM.Ranges {
		set, err := ipam.ParseRangeSet(fmt.Sprintf("ipam.ranges[%d]", i), specs)
		if err != nil {
			return err
		}
		c.Sets = append(c.Sets, set)
	}
	if len(c.Sets) == 0 {
		if opts.rangesOptional {
			return nil
		}
		return cni.Errorf(cni.CodeInvalidNetworkConfig, "no IP ranges specified: set ipam.ranges, ipam.subnet or runtimeConfig.ipRanges")
	}
	if err := ipam.CheckDisjoint(c.Sets); err != nil {
		return err
	}
	if ok, _ := cni.VersionAtLeast(c.CNIVersion, "0.3.0"); !ok {
		var v4, v6 int
		for i := range c.Sets {
			if c.Sets[i].Is4() {
				v4++
			} else {
				v6++
			}
		}
		if v4 > 1 || v6 > 1 {
			return cni.Errorf(cni.CodeInvalidNetworkConfig,
				"cniVersion %q allows one address per family, but %d IPv4 and %d IPv6 range sets are configured", c.CNIVersion, v4, v6)
		}
	}
	return nil
}

// parseRequested merges the requested addresses. args.cni.ips and CNI_ARGS IP
// carry the same information; per the conventions, when args.cni.ips is given
// CNI_ARGS IP is ignored. runtimeConfig.ips adds to either.
func (c *config) parseRequested(w *wireConf, cniArgs string) error {
	var env envArgs
	if err := cni.LoadArgs(cniArgs, &env); err != nil {
		return err
	}
	add := func(a netip.Addr) {
		for _, have := range c.Requested {
			if have == a {
				return
			}
		}
		c.Requested = append(c.Requested, a)
	}
	addList := func(where string, list []string) error {
		for i, s := range list {
			a, err := ipam.ParseRequestedIP(s)
			if err != nil {
				return cni.Errorf(cni.CodeInvalidNetworkConfig, "%s[%d]: %v", where, i, err)
			}
			add(a)
		}
		return nil
	}
	var argsIPs []string
	if w.Args != nil && w.Args.CNI != nil {
		argsIPs = w.Args.CNI.IPs
	}
	if err := addList("args.cni.ips", argsIPs); err != nil {
		return err
	}
	if w.RuntimeConfig != nil {
		if err := addList("runtimeConfig.ips", w.RuntimeConfig.IPs); err != nil {
			return err
		}
	}
	if len(argsIPs) == 0 && env.IP.IsValid() {
		add(env.IP.Addr)
	}
	return nil
}

func (c *config) parsePrevResult(w *wireConf) {
	w.PluginConf.CNIVersion = c.CNIVersion
	if err := w.ParsePrevResult(); err != nil {
		c.PrevErr = err
		return
	}
	if w.PrevResult == nil {
		return
	}
	for _, ip := range w.PrevResult.IPs {
		if a, ok := netip.AddrFromSlice(ip.Address.IP); ok {
			c.PrevIPs = append(c.PrevIPs, a.Unmap())
		}
	}
}
