package cni

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"slices"
)

// Result is the success result of ADD in canonical form: the 1.1.0 shape, which
// holds everything every older version can express. Marshal encodes it for a
// given version, applying the spec's (sometimes lossy) conversion rules.
type Result struct {
	// CNIVersion is the version the result was produced or last parsed as.
	CNIVersion string
	Interfaces []*Interface
	IPs        []*IPConfig
	Routes     []*Route
	DNS        DNS
}

// Interface is one entry of a result's interfaces list.
type Interface struct {
	Name       string `json:"name"`
	Mac        string `json:"mac,omitempty"`
	MTU        int    `json:"mtu,omitempty"`
	Sandbox    string `json:"sandbox,omitempty"`
	SocketPath string `json:"socketPath,omitempty"`
	PciID      string `json:"pciID,omitempty"`
}

// IPConfig is one address of a result. Interface indexes Result.Interfaces; nil
// means the address is not tied to an interface (IPAM results).
type IPConfig struct {
	Interface *int
	Address   net.IPNet // the address itself with its prefix length (host bits kept)
	Gateway   net.IP
}

// Family returns 4 or 6.
func (ip *IPConfig) Family() int {
	if ip.Address.IP.To4() != nil {
		return 4
	}
	return 6
}

// Route is one route of a result. Table and Scope are pointers because 0 is a
// meaningful value for neither but absent differs from present.
type Route struct {
	Dst      net.IPNet
	GW       net.IP
	MTU      int
	AdvMSS   int
	Priority int
	Table    *int
	Scope    *int
}

// DNS is the DNS section of a result or a configuration.
type DNS struct {
	Nameservers []string `json:"nameservers,omitempty"`
	Domain      string   `json:"domain,omitempty"`
	Search      []string `json:"search,omitempty"`
	Options     []string `json:"options,omitempty"`
}

// IsEmpty reports whether no field of d is set.
func (d DNS) IsEmpty() bool {
	return len(d.Nameservers) == 0 && d.Domain == "" && len(d.Search) == 0 && len(d.Options) == 0
}

// IntPtr returns a pointer to i, for Route.Table, Route.Scope and IPConfig.Interface.
func IntPtr(i int) *int { return &i }

// resultFormat groups versions that share one wire shape.
type resultFormat int

const (
	formatLegacy resultFormat = iota // 0.1.0, 0.2.0: ip4/ip6
	formatV04                        // 0.3.0, 0.3.1, 0.4.0: ips with version
	formatV1                         // 1.0.0, 1.1.0
)

func formatOf(version string) (resultFormat, error) {
	switch version {
	case "", "0.1.0", "0.2.0":
		return formatLegacy, nil
	case "0.3.0", "0.3.1", "0.4.0":
		return formatV04, nil
	case "1.0.0", "1.1.0":
		return formatV1, nil
	}
	return 0, Errorf(CodeIncompatibleVersion, "unsupported CNI result version %q", version)
}

// Wire shapes. ipNet marshals as a CIDR string that keeps the host bits.
type ipNet net.IPNet

func (n ipNet) MarshalJSON() ([]byte, error) {
	s, err := FormatCIDR(net.IPNet(n))
	if err != nil {
		return nil, err
	}
	return json.Marshal(s)
}

func (n *ipNet) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return err
	}
	parsed, err := ParseCIDR(s)
	if err != nil {
		return err
	}
	*n = ipNet(*parsed)
	return nil
}

// ParseCIDR parses "addr/prefix" keeping the host bits of addr, as results do.
// IPv4 addresses, including IPv4-mapped IPv6 ones ("::ffff:10.0.0.1/120"), are
// returned in their 4-byte form with a 4-byte mask, so that they print back the
// same way; a mapped address with a prefix shorter than 96 has no IPv4 form and
// is refused.
func ParseCIDR(s string) (*net.IPNet, error) {
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		return nil, fmt.Errorf("invalid CIDR %q", s)
	}
	mask := n.Mask
	if v4 := ip.To4(); v4 != nil {
		ip = v4
		if ones, bits := mask.Size(); bits == 8*net.IPv6len {
			if ones < 96 {
				return nil, fmt.Errorf("invalid CIDR %q: an IPv4-mapped address needs a prefix of at least 96", s)
			}
			mask = net.CIDRMask(ones-96, 8*net.IPv4len)
		}
	}
	return &net.IPNet{IP: ip, Mask: mask}, nil
}

// FormatCIDR formats n as "addr/prefix", keeping the host bits, and refuses what
// has no such form: a missing address or a non-contiguous mask.
func FormatCIDR(n net.IPNet) (string, error) {
	if n.IP == nil {
		return "", fmt.Errorf("invalid CIDR: missing address")
	}
	ones, bits := n.Mask.Size()
	if bits == 0 {
		return "", fmt.Errorf("invalid CIDR: address %s has no valid prefix mask (%v)", n.IP, n.Mask)
	}
	if v4 := n.IP.To4(); v4 != nil {
		if bits == 8*net.IPv6len {
			if ones < 96 {
				return "", fmt.Errorf("invalid CIDR: IPv4 address %s with a /%d IPv6 mask", v4, ones)
			}
			ones -= 96
		}
		return fmt.Sprintf("%s/%d", v4, ones), nil
	}
	if len(n.IP) != net.IPv6len || bits != 8*net.IPv6len {
		return "", fmt.Errorf("invalid CIDR: address %v with a %d-bit mask", n.IP, bits)
	}
	return fmt.Sprintf("%s/%d", n.IP, ones), nil
}

type wireRoute struct {
	Dst      ipNet  `json:"dst"`
	GW       net.IP `json:"gw,omitempty"`
	MTU      int    `json:"mtu,omitempty"`
	AdvMSS   int    `json:"advmss,omitempty"`
	Priority int    `json:"priority,omitempty"`
	Table    *int   `json:"table,omitempty"`
	Scope    *int   `json:"scope,omitempty"`
}

type wireLegacyRoute struct {
	Dst ipNet  `json:"dst"`
	GW  net.IP `json:"gw,omitempty"`
}

type wireIP struct {
	Version   string `json:"version,omitempty"` // 0.3.x/0.4.0 only
	Interface *int   `json:"interface,omitempty"`
	Address   ipNet  `json:"address"`
	Gateway   net.IP `json:"gateway,omitempty"`
}

type wireInterface04 struct {
	Name    string `json:"name"`
	Mac     string `json:"mac,omitempty"`
	Sandbox string `json:"sandbox,omitempty"`
}

type wireResultV04 struct {
	CNIVersion string             `json:"cniVersion"`
	Interfaces []*wireInterface04 `json:"interfaces,omitempty"`
	IPs        []*wireIP          `json:"ips,omitempty"`
	Routes     []*wireRoute       `json:"routes,omitempty"`
	DNS        *DNS               `json:"dns,omitempty"`
}

type wireResultV1 struct {
	CNIVersion string       `json:"cniVersion"`
	Interfaces []*Interface `json:"interfaces,omitempty"`
	IPs        []*wireIP    `json:"ips,omitempty"`
	Routes     []*wireRoute `json:"routes,omitempty"`
	DNS        *DNS         `json:"dns,omitempty"`
}

type wireLegacyIP struct {
	IP      ipNet              `json:"ip"`
	Gateway net.IP             `json:"gateway,omitempty"`
	Routes  []*wireLegacyRoute `json:"routes,omitempty"`
}

type wireResultLegacy struct {
	CNIVersion string        `json:"cniVersion"`
	IP4        *wireLegacyIP `json:"ip4,omitempty"`
	IP6        *wireLegacyIP `json:"ip6,omitempty"`
	DNS        *DNS          `json:"dns,omitempty"`
}

func dnsPtr(d DNS) *DNS {
	if d.IsEmpty() {
		return nil
	}
	return &d
}

func toWireRoutes(routes []*Route) []*wireRoute {
	out := make([]*wireRoute, 0, len(routes))
	for _, r := range routes {
		out = append(out, &wireRoute{Dst: ipNet(r.Dst), GW: r.GW, MTU: r.MTU, AdvMSS: r.AdvMSS,
			Priority: r.Priority, Table: r.Table, Scope: r.Scope})
	}
	return out
}

func fromWireRoutes(routes []*wireRoute) []*Route {
	out := make([]*Route, 0, len(routes))
	for _, r := range routes {
		if r == nil {
			continue
		}
		out = append(out, &Route{Dst: net.IPNet(r.Dst), GW: normalizeIP(r.GW), MTU: r.MTU,
			AdvMSS: r.AdvMSS, Priority: r.Priority, Table: r.Table, Scope: r.Scope})
	}
	return out
}

func normalizeIP(ip net.IP) net.IP {
	if v4 := ip.To4(); v4 != nil {
		return v4
	}
	return ip
}

// Marshal encodes r as a result of the given version. Converting to 0.1.0 or 0.2.0
// keeps the first IPv4 and first IPv6 address and the routes of those families,
// and fails when there is no address at all, as the spec requires.
func (r *Result) Marshal(version string) ([]byte, error) {
	format, err := formatOf(version)
	if err != nil {
		return nil, err
	}
	var wire any
	switch format {
	case formatLegacy:
		w, err := r.toLegacy(version)
		if err != nil {
			return nil, err
		}
		wire = w
	case formatV04:
		w := &wireResultV04{CNIVersion: version, Routes: toWireRoutes(r.Routes), DNS: dnsPtr(r.DNS)}
		for _, i := range r.Interfaces {
			w.Interfaces = append(w.Interfaces, &wireInterface04{Name: i.Name, Mac: i.Mac, Sandbox: i.Sandbox})
		}
		for _, ip := range r.IPs {
			w.IPs = append(w.IPs, &wireIP{Version: fmt.Sprint(ip.Family()), Interface: ip.Interface,
				Address: ipNet(ip.Address), Gateway: ip.Gateway})
		}
		wire = w
	case formatV1:
		w := &wireResultV1{CNIVersion: version, Interfaces: r.Interfaces, Routes: toWireRoutes(r.Routes), DNS: dnsPtr(r.DNS)}
		for _, ip := range r.IPs {
			w.IPs = append(w.IPs, &wireIP{Interface: ip.Interface, Address: ipNet(ip.Address), Gateway: ip.Gateway})
		}
		wire = w
	}
	return json.Marshal(wire)
}

func (r *Result) toLegacy(version string) (*wireResultLegacy, error) {
	w := &wireResultLegacy{CNIVersion: version, DNS: dnsPtr(r.DNS)}
	for _, ip := range r.IPs {
		entry := &wireLegacyIP{IP: ipNet(ip.Address), Gateway: ip.Gateway}
		if ip.Family() == 4 && w.IP4 == nil {
			w.IP4 = entry
		} else if ip.Family() == 6 && w.IP6 == nil {
			w.IP6 = entry
		}
	}
	if w.IP4 == nil && w.IP6 == nil {
		return nil, Errorf(CodeIncompatibleVersion, "cannot convert result to version %s: no valid IP addresses", version)
	}
	for _, route := range r.Routes {
		lr := &wireLegacyRoute{Dst: ipNet(route.Dst), GW: route.GW}
		if route.Dst.IP.To4() != nil {
			if w.IP4 != nil {
				w.IP4.Routes = append(w.IP4.Routes, lr)
			}
		} else if w.IP6 != nil {
			w.IP6.Routes = append(w.IP6.Routes, lr)
		}
	}
	return w, nil
}

// Print writes r as JSON of the given version, indented as plugins print it.
func (r *Result) Print(w io.Writer, version string) error {
	data, err := r.Marshal(version)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, data, "", "    "); err != nil {
		return err
	}
	buf.WriteByte('\n')
	_, err = w.Write(buf.Bytes())
	return err
}

// Convert returns r as it reads after conversion to version: the same data a
// plugin of that version would see.
func (r *Result) Convert(version string) (*Result, error) {
	data, err := r.Marshal(version)
	if err != nil {
		return nil, err
	}
	return ParseResult(data, version)
}

// ParseResult decodes a result of any supported version into canonical form. A
// result without cniVersion is read as fallbackVersion (the configuration's), and
// as 0.1.0 when that is empty too.
func ParseResult(data []byte, fallbackVersion string) (*Result, error) {
	var head struct {
		CNIVersion string `json:"cniVersion"`
	}
	if err := jsonUnmarshal(data, &head); err != nil {
		return nil, Errorf(CodeDecodingFailure, "decoding result: %v", err)
	}
	if trimmed := bytes.TrimLeft(data, " \t\r\n"); len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, Errorf(CodeDecodingFailure, "decoding result: not a JSON object")
	}
	version := head.CNIVersion
	if version == "" {
		version = fallbackVersion
	}
	format, err := formatOf(version)
	if err != nil {
		return nil, err
	}
	if version == "" {
		version = "0.1.0"
	}
	r := &Result{CNIVersion: version}
	switch format {
	case formatLegacy:
		var w wireResultLegacy
		if err := jsonUnmarshal(data, &w); err != nil {
			return nil, Errorf(CodeDecodingFailure, "decoding %s result: %v", version, err)
		}
		for _, slot := range []struct {
			key    string
			ip     *wireLegacyIP
			family int
		}{{"ip4", w.IP4, 4}, {"ip6", w.IP6, 6}} {
			if slot.ip == nil {
				continue
			}
			ipc := &IPConfig{Address: net.IPNet(slot.ip.IP), Gateway: normalizeIP(slot.ip.Gateway)}
			if ipc.Address.IP == nil {
				return nil, Errorf(CodeDecodingFailure, "decoding %s result: %s has no ip", version, slot.key)
			}
			if ipc.Family() != slot.family {
				return nil, Errorf(CodeDecodingFailure, "decoding %s result: %s holds %s, not an IPv%d address",
					version, slot.key, (*net.IPNet)(&ipc.Address), slot.family)
			}
			r.IPs = append(r.IPs, ipc)
			for i, lr := range slot.ip.Routes {
				if lr == nil || lr.Dst.IP == nil {
					return nil, Errorf(CodeDecodingFailure, "decoding %s result: %s.routes[%d] has no dst", version, slot.key, i)
				}
				r.Routes = append(r.Routes, &Route{Dst: net.IPNet(lr.Dst), GW: normalizeIP(lr.GW)})
			}
		}
		if w.DNS != nil {
			r.DNS = *w.DNS
		}
	case formatV04, formatV1:
		var w wireResultV1 // a superset of the 0.4.0 shape; ips[].version is recomputed, not read
		if err := jsonUnmarshal(data, &w); err != nil {
			return nil, Errorf(CodeDecodingFailure, "decoding %s result: %v", version, err)
		}
		for i, iface := range w.Interfaces {
			if iface == nil {
				// Dropping it would shift the indexes ips[].interface refers to.
				return nil, Errorf(CodeDecodingFailure, "decoding %s result: interfaces[%d] is null", version, i)
			}
			if format == formatV04 {
				iface = &Interface{Name: iface.Name, Mac: iface.Mac, Sandbox: iface.Sandbox}
			}
			r.Interfaces = append(r.Interfaces, iface)
		}
		for i, ip := range w.IPs {
			if ip == nil || ip.Address.IP == nil {
				return nil, Errorf(CodeDecodingFailure, "decoding %s result: ips[%d] has no address", version, i)
			}
			r.IPs = append(r.IPs, &IPConfig{Interface: ip.Interface, Address: net.IPNet(ip.Address), Gateway: normalizeIP(ip.Gateway)})
		}
		for i, rt := range w.Routes {
			if rt == nil || rt.Dst.IP == nil {
				return nil, Errorf(CodeDecodingFailure, "decoding %s result: routes[%d] has no dst", version, i)
			}
		}
		// 0.4.0's text knows only dst and gw, but the reference keeps the other
		// route attributes across versions (CV5), and so do we.
		r.Routes = fromWireRoutes(w.Routes)
		if w.DNS != nil {
			r.DNS = *w.DNS
		}
	}
	return r, nil
}

// Copy returns a deep copy of r.
func (r *Result) Copy() *Result {
	c := &Result{CNIVersion: r.CNIVersion, DNS: DNS{
		Nameservers: slices.Clone(r.DNS.Nameservers),
		Domain:      r.DNS.Domain,
		Search:      slices.Clone(r.DNS.Search),
		Options:     slices.Clone(r.DNS.Options),
	}}
	for _, i := range r.Interfaces {
		ci := *i
		c.Interfaces = append(c.Interfaces, &ci)
	}
	for _, ip := range r.IPs {
		cip := IPConfig{Interface: cloneIntPtr(ip.Interface), Address: cloneIPNet(ip.Address), Gateway: slices.Clone(ip.Gateway)}
		c.IPs = append(c.IPs, &cip)
	}
	for _, rt := range r.Routes {
		crt := *rt
		crt.Dst = cloneIPNet(rt.Dst)
		crt.GW = slices.Clone(rt.GW)
		crt.Table = cloneIntPtr(rt.Table)
		crt.Scope = cloneIntPtr(rt.Scope)
		c.Routes = append(c.Routes, &crt)
	}
	return c
}

func cloneIntPtr(p *int) *int {
	if p == nil {
		return nil
	}
	return IntPtr(*p)
}

func cloneIPNet(n net.IPNet) net.IPNet {
	return net.IPNet{IP: slices.Clone(n.IP), Mask: slices.Clone(n.Mask)}
}
