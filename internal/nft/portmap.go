package nft

import (
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// Host port program (portmap plugin), in table inet cnikit. Per family
// (4 shown; 6 is the same with ip6 and ipv6_addr):
//
//	map hostports-ip4   { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service }
//	                    # host IP . protocol . host port : container IP . container port
//	map hostports-any4  { type inet_proto . inet_service : ipv4_addr . inet_service }
//	                    # protocol . host port (any local address) : container IP . container port
//	set hostports-ip4-cond  { type ipv4_addr . inet_proto . inet_service }
//	set hostports-any4-cond { type inet_proto . inet_service }
//	                    # the mappings that have conditions (conditionsV4/V6) ...
//	set hostports-ip4-allow  { type ipv4_addr . ipv4_addr . inet_proto . inet_service; flags interval }
//	set hostports-any4-allow { type ipv4_addr . ipv4_addr . inet_proto . inet_service; flags interval }
//	                    # ... and the connections they apply to:
//	                    # source range . destination range . protocol . host port
//	map hostports-masq4 { type ipv4_addr . inet_proto . inet_service . inet_service : verdict }
//	                    # container IP . protocol . container port . host port : jump <snat chain>
//
//	chain hostports-prerouting { type nat hook prerouting priority dstnat + 10
//	    fib daddr type local jump hostports-dnat }
//	chain hostports-output { type nat hook output priority dstnat + 10
//	    fib daddr type local jump hostports-dnat }
//	chain hostports-dnat {
//	    ip6 daddr ::1 return
//	    ip daddr . meta l4proto . th dport @hostports-ip4-cond ip saddr . ip daddr . meta l4proto . th dport != @hostports-ip4-allow return
//	    dnat ip to ip daddr . meta l4proto . th dport map @hostports-ip4
//	    meta l4proto . th dport @hostports-any4-cond ip saddr . ip daddr . meta l4proto . th dport != @hostports-any4-allow return
//	    dnat ip to meta l4proto . th dport map @hostports-any4 }
//	chain hostports-postrouting { type nat hook postrouting priority srcnat + 10
//	    meta l4proto tcp ct status dnat ip daddr . meta l4proto . tcp dport . ct original proto-dst vmap @hostports-masq4
//	    (the same for udp and sctp) }
//	chain hostports-masq-all { masquerade }
//	chain hairpin-<subnet hash> { ip saddr <subnet> masquerade; ip saddr 127.0.0.0/8 masquerade }
//	                    # (IPv6: the subnet only; see ::1 in hostports-dnat)
//
// Only traffic addressed to the host itself (fib daddr type local) is
// translated, so a mapping whose host IP is not local never captures
// forwarded traffic (CVE-2025-67499). The nat chains come after dstnat's, so
// that a DNAT made at dstnat (kube-proxy's service dispatch, iptables-nft's
// PREROUTING) wins: netfilter runs only the first nat chain that translates a
// connection (CVE-2019-9946). A mapping specific to a host IP is tried before
// one for any address. Masquerade decisions use conntrack (the connection was
// DNATed, and its original port is the mapping's host port), so no packet mark
// bit is consumed.
//
// A mapping is one element in the DNAT map and, with SNAT, one in the
// masquerade map; with conditions, one more in the cond set and one per
// range pair in the allow set. All carry Attachment.Comment. The work of an
// ADD or DEL does not depend on how many containers exist: the base (sets
// and chains) is written only when missing, and only hash sets are touched
// unless the mapping has conditions. Keys are exact, so a second attachment
// asking for a host port already mapped makes the batch fail (the kernel
// refuses an element whose key exists with other data) instead of silently
// taking the port over.
//
// With route_localnet set on an interface (for connections from 127.0.0.1),
// the localnet guard drops 127.0.0.0/8 traffic on every interface but lo, as
// kube-proxy does for CVE-2020-8558:
//
//	chain localnet-guard-in { type filter hook prerouting priority raw
//	    iif != "lo" ip daddr 127.0.0.0/8 drop
//	    iif != "lo" ip saddr 127.0.0.0/8 drop }
//	chain localnet-guard-out { type filter hook postrouting priority srcnat + 20
//	    oif != "lo" ip saddr 127.0.0.0/8 drop
//	    oif != "lo" ip daddr 127.0.0.0/8 drop }
//
// A change to the base must also rename HostPortsPostrouting (written last),
// which AddHostPorts probes to decide whether the base is there.
const (
	HostPortsPrerouting  = "hostports-prerouting"
	HostPortsOutput      = "hostports-output"
	HostPortsDNAT        = "hostports-dnat"
	HostPortsPostrouting = "hostports-postrouting"
	// HostPortsMasqAll masquerades every connection through a mapping (masqAll).
	HostPortsMasqAll = "hostports-masq-all"
	// LocalnetGuardIn and LocalnetGuardOut drop martian 127.0.0.0/8 traffic.
	LocalnetGuardIn  = "localnet-guard-in"
	LocalnetGuardOut = "localnet-guard-out"
	// hairpinPrefix starts the name of each subnet's hairpin SNAT chain.
	hairpinPrefix = "hairpin-"
)

// Chain priorities of the host port program.
const (
	HostPortsDNATPriority = -90  // dstnat + 10: after kube-proxy's and iptables-nft's DNAT
	HostPortsSNATPriority = 110  // srcnat + 10
	localnetGuardInPrio   = -300 // raw: before conntrack undoes any NAT
	localnetGuardOutPrio  = 120  // srcnat + 20: after every SNAT is applied
)

// rtnLocal is RTN_LOCAL, the fib address type of the host's own addresses.
const rtnLocal = 2

// ipsDstNAT is IPS_DST_NAT, the conntrack status bit of a DNATed connection.
const ipsDstNAT = 1 << 5

// mappedProtocols are the protocols a host port can use.
var mappedProtocols = []uint8{unix.IPPROTO_TCP, unix.IPPROTO_UDP, unix.IPPROTO_SCTP}

// SNATMode says which connections through a mapping are masqueraded.
type SNATMode uint8

const (
	// SNATNone masquerades nothing (snat false).
	SNATNone SNATMode = iota
	// SNATHairpin masquerades connections from the container's subnet (a
	// container reaching itself or a neighbour through the host) and, for
	// IPv4, from 127.0.0.0/8.
	SNATHairpin
	// SNATAll masquerades every connection (masqAll).
	SNATAll
)

// IPRange is an inclusive range of addresses of one family.
type IPRange struct {
	First, Last netip.Addr
}

// HostPort is one port mapping as the host port program holds it:
// connections to HostIP (any local address when nil) on Protocol and Port,
// from a source in Sources (any when nil) to a destination in Destinations
// (any when nil), go to Container.IP:ContainerPort.
type HostPort struct {
	HostIP        net.IP
	Protocol      uint8 // unix.IPPROTO_TCP, IPPROTO_UDP or IPPROTO_SCTP
	Port          uint16
	Container     net.IPNet // the container's address, with its subnet's prefix length
	ContainerPort uint16
	Sources       []IPRange
	Destinations  []IPRange
	SNAT          SNATMode
}

// portFamily holds what differs between IPv4 and IPv6 in the program.
type portFamily struct {
	nfproto  byte
	addrLen  uint32
	saddrOff uint32
	daddrOff uint32
	addrType nftables.SetDatatype
	loopback net.IPNet
	// set names
	specific, any, specificCond, anyCond, specificAllow, anyAllow, masq string
}

var (
	portFamily4 = &portFamily{
		nfproto: unix.NFPROTO_IPV4, addrLen: 4, saddrOff: 12, daddrOff: 16, addrType: nftables.TypeIPAddr,
		loopback: net.IPNet{IP: net.IPv4(127, 0, 0, 0).To4(), Mask: net.CIDRMask(8, 32)},
		specific: "hostports-ip4", any: "hostports-any4", specificCond: "hostports-ip4-cond", anyCond: "hostports-any4-cond",
		specificAllow: "hostports-ip4-allow", anyAllow: "hostports-any4-allow",
		masq: "hostports-masq4",
	}
	portFamily6 = &portFamily{
		nfproto: unix.NFPROTO_IPV6, addrLen: 16, saddrOff: 8, daddrOff: 24, addrType: nftables.TypeIP6Addr,
		loopback: net.IPNet{IP: net.IPv6loopback, Mask: net.CIDRMask(128, 128)},
		specific: "hostports-ip6", any: "hostports-any6", specificCond: "hostports-ip6-cond", anyCond: "hostports-any6-cond",
		specificAllow: "hostports-ip6-allow", anyAllow: "hostports-any6-allow",
		masq: "hostports-masq6",
	}
	portFamilies = []*portFamily{portFamily4, portFamily6}
)

func familyOf(ip net.IP) *portFamily {
	if ip.To4() != nil {
		return portFamily4
	}
	return portFamily6
}

// addr returns ip in the family's length.
func (f *portFamily) addr(ip net.IP) []byte {
	if f == portFamily4 {
		return ip.To4()
	}
	return ip.To16()
}

// The sets are built fresh for each use: AddSet gives a set an ID that rules
// queued in the same batch refer to.
func (f *portFamily) specificMap() *nftables.Set {
	return &nftables.Set{Table: inetTable, Name: f.specific, IsMap: true, Concatenation: true,
		KeyType:  nftables.MustConcatSetType(f.addrType, nftables.TypeInetProto, nftables.TypeInetService),
		DataType: nftables.MustConcatSetType(f.addrType, nftables.TypeInetService)}
}

func (f *portFamily) anyMap() *nftables.Set {
	return &nftables.Set{Table: inetTable, Name: f.any, IsMap: true, Concatenation: true,
		KeyType:  nftables.MustConcatSetType(nftables.TypeInetProto, nftables.TypeInetService),
		DataType: nftables.MustConcatSetType(f.addrType, nftables.TypeInetService)}
}

func (f *portFamily) specificCondSet() *nftables.Set {
	return &nftables.Set{Table: inetTable, Name: f.specificCond, Concatenation: true,
		KeyType: nftables.MustConcatSetType(f.addrType, nftables.TypeInetProto, nftables.TypeInetService)}
}

func (f *portFamily) anyCondSet() *nftables.Set {
	return &nftables.Set{Table: inetTable, Name: f.anyCond, Concatenation: true,
		KeyType: nftables.MustConcatSetType(nftables.TypeInetProto, nftables.TypeInetService)}
}

func (f *portFamily) allowSet(name string) *nftables.Set {
	return &nftables.Set{Table: inetTable, Name: name, Interval: true, Concatenation: true,
		KeyType: nftables.MustConcatSetType(f.addrType, f.addrType, nftables.TypeInetProto, nftables.TypeInetService)}
}

func (f *portFamily) specificAllowSet() *nftables.Set { return f.allowSet(f.specificAllow) }
func (f *portFamily) anyAllowSet() *nftables.Set      { return f.allowSet(f.anyAllow) }

func (f *portFamily) masqMap() *nftables.Set {
	return &nftables.Set{Table: inetTable, Name: f.masq, IsMap: true, Concatenation: true,
		KeyType:  nftables.MustConcatSetType(f.addrType, nftables.TypeInetProto, nftables.TypeInetService, nftables.TypeInetService),
		DataType: nftables.TypeVerdict}
}

func (f *portFamily) sets() []*nftables.Set {
	return []*nftables.Set{f.specificMap(), f.anyMap(), f.specificCondSet(), f.anyCondSet(), f.specificAllowSet(), f.anyAllowSet(), f.masqMap()}
}

// hostPortSetNames lists every set and map of the program.
func hostPortSetNames() []string {
	var names []string
	for _, f := range portFamilies {
		names = append(names, f.specific, f.any, f.specificCond, f.anyCond, f.specificAllow, f.anyAllow, f.masq)
	}
	return names
}

// Key encodings: in a concatenation each field fills whole 4-byte registers.
func protoField(p uint8) []byte { return []byte{p, 0, 0, 0} }
func portField(p uint16) []byte { return []byte{byte(p >> 8), byte(p), 0, 0} }

func concat(fields ...[]byte) []byte {
	var out []byte
	for _, f := range fields {
		out = append(out, f...)
	}
	return out
}

// reg32 is the number of the 4-byte register holding byte offset off of a
// concatenation that starts in register 1.
func reg32(off uint32) uint32 { return unix.NFT_REG32_00 + off/4 }

// HairpinChain names the chain that masquerades hairpin and loopback traffic
// to containers of subnet.
func HairpinChain(subnet *net.IPNet) string {
	return hairpinPrefix + hash16(subnet.String())
}

// snatChain is the chain a mapping's masquerade element jumps to, or "".
func (p *HostPort) snatChain() string {
	switch p.SNAT {
	case SNATHairpin:
		return HairpinChain(p.subnet())
	case SNATAll:
		return HostPortsMasqAll
	}
	return ""
}

func (p *HostPort) subnet() *net.IPNet {
	f := familyOf(p.Container.IP)
	ip := net.IP(f.addr(p.Container.IP))
	mask := p.Container.Mask
	if len(mask) != len(ip) {
		ones, _ := mask.Size()
		mask = net.CIDRMask(ones, len(ip)*8)
	}
	return &net.IPNet{IP: ip.Mask(mask), Mask: mask}
}

// setElement is one element to queue, and the set it goes in.
type setElement struct {
	set  *nftables.Set
	elem nftables.SetElement
}

// hostPortElements returns the elements of ports, each once, with comment.
func hostPortElements(ports []HostPort, comment string) ([]setElement, error) {
	sets := map[string]*nftables.Set{}
	setFor := func(mk func() *nftables.Set) *nftables.Set {
		s := mk()
		if have, ok := sets[s.Name]; ok {
			return have
		}
		sets[s.Name] = s
		return s
	}
	var out []setElement
	seen := map[string]bool{}
	add := func(s *nftables.Set, e nftables.SetElement) {
		id := s.Name + "/" + string(e.Key) + "/" + string(e.KeyEnd)
		if seen[id] {
			return
		}
		seen[id] = true
		e.Comment = comment
		out = append(out, setElement{set: s, elem: e})
	}
	for i := range ports {
		p := &ports[i]
		f := familyOf(p.Container.IP)
		if p.HostIP != nil && familyOf(p.HostIP) != f {
			return nil, fmt.Errorf("host IP %s and container IP %s are of different families", p.HostIP, p.Container.IP)
		}
		proto, port := protoField(p.Protocol), portField(p.Port)
		target := concat(f.addr(p.Container.IP), portField(p.ContainerPort))
		sources, dests := p.Sources, p.Destinations
		if sources == nil {
			sources = []IPRange{fullRange(f)}
		}
		if dests == nil {
			dests = []IPRange{fullRange(f)}
		}
		dnatMap, condSet, allowSet := setFor(f.anyMap), setFor(f.anyCondSet), setFor(f.anyAllowSet)
		dnatKey := concat(proto, port)
		if p.HostIP != nil {
			dnatMap, condSet, allowSet = setFor(f.specificMap), setFor(f.specificCondSet), setFor(f.specificAllowSet)
			dnatKey = concat(f.addr(p.HostIP), proto, port)
			// The mapping's destination is the host IP, if the
			// conditions allow it at all.
			hostIP, _ := netip.AddrFromSlice(f.addr(p.HostIP))
			allowed := dests
			dests = nil
			for _, r := range allowed {
				if r.contains(hostIP) {
					dests = []IPRange{{First: hostIP, Last: hostIP}}
					break
				}
			}
		}
		add(dnatMap, nftables.SetElement{Key: dnatKey, Val: target})
		if p.Sources != nil || p.Destinations != nil {
			add(condSet, nftables.SetElement{Key: dnatKey})
			for _, s := range sources {
				for _, d := range dests {
					add(allowSet, nftables.SetElement{
						Key:    concat(s.First.AsSlice(), d.First.AsSlice(), proto, port),
						KeyEnd: concat(s.Last.AsSlice(), d.Last.AsSlice(), proto, port)})
				}
			}
		}
		if chain := p.snatChain(); chain != "" {
			add(setFor(f.masqMap), nftables.SetElement{
				Key:         concat(f.addr(p.Container.IP), proto, portField(p.ContainerPort), port),
				VerdictData: &expr.Verdict{Kind: expr.VerdictJump, Chain: chain}})
		}
	}
	return out, nil
}

func (r IPRange) contains(a netip.Addr) bool {
	return r.First.Compare(a) <= 0 && a.Compare(r.Last) <= 0
}

func fullRange(f *portFamily) IPRange {
	if f == portFamily4 {
		return IPRange{First: netip.IPv4Unspecified(), Last: netip.AddrFrom4([4]byte{255, 255, 255, 255})}
	}
	var last [16]byte
	for i := range last {
		last[i] = 0xff
	}
	return IPRange{First: netip.IPv6Unspecified(), Last: netip.AddrFrom16(last)}
}

// queueHostPortBase queues the table, sets and chains of the program
// (everything but the hairpin chains). Chains are flushed and rewritten, so
// the program converges to this version.
func (c *Conn) queueHostPortBase() error {
	c.nft.AddTable(inetTable)
	named := map[string]*nftables.Set{}
	for _, f := range portFamilies {
		for _, s := range f.sets() {
			if err := c.nft.AddSet(s, nil); err != nil {
				return fmt.Errorf("queueing set %s: %w", s.Name, err)
			}
			named[s.Name] = s
		}
	}

	masqAll := c.nft.AddChain(&nftables.Chain{Table: inetTable, Name: HostPortsMasqAll})
	c.nft.FlushChain(masqAll)
	c.nft.AddRule(&nftables.Rule{Table: inetTable, Chain: masqAll, Exprs: []expr.Any{&expr.Masq{}}})

	dnat := c.nft.AddChain(&nftables.Chain{Table: inetTable, Name: HostPortsDNAT})
	c.nft.FlushChain(dnat)
	// ip6 daddr ::1 return: the kernel drops packets to ::1 that arrive on
	// any interface but lo (RFC 4291 2.5.3), so a reply to a connection from
	// ::1 could never come back; such connections are left to the host.
	c.nft.AddRule(&nftables.Rule{Table: inetTable, Chain: dnat, Exprs: append(
		matchPrefix(portFamily6, portFamily6.daddrOff, portFamily6.loopback, expr.CmpOpEq), &expr.Verdict{Kind: expr.VerdictReturn})})
	for _, f := range portFamilies {
		for _, specific := range []bool{true, false} {
			dnatMap, cond, allow := named[f.any], named[f.anyCond], named[f.anyAllow]
			if specific {
				dnatMap, cond, allow = named[f.specific], named[f.specificCond], named[f.specificAllow]
			}
			c.nft.AddRule(&nftables.Rule{Table: inetTable, Chain: dnat, Exprs: refusedByConditionsRule(f, cond, allow, specific)})
			c.nft.AddRule(&nftables.Rule{Table: inetTable, Chain: dnat, Exprs: dnatRule(f, dnatMap, specific)})
		}
	}

	toLocal := []expr.Any{
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(rtnLocal)},
		&expr.Verdict{Kind: expr.VerdictJump, Chain: HostPortsDNAT},
	}
	for _, hook := range []struct {
		name string
		hook *nftables.ChainHook
	}{{HostPortsPrerouting, nftables.ChainHookPrerouting}, {HostPortsOutput, nftables.ChainHookOutput}} {
		chain := c.nft.AddChain(&nftables.Chain{Table: inetTable, Name: hook.name, Type: nftables.ChainTypeNAT,
			Hooknum: hook.hook, Priority: nftables.ChainPriorityRef(HostPortsDNATPriority)})
		c.nft.FlushChain(chain)
		c.nft.AddRule(&nftables.Rule{Table: inetTable, Chain: chain, Exprs: toLocal})
	}

	post := c.nft.AddChain(&nftables.Chain{Table: inetTable, Name: HostPortsPostrouting, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityRef(HostPortsSNATPriority)})
	c.nft.FlushChain(post)
	for _, f := range portFamilies {
		for _, proto := range mappedProtocols {
			c.nft.AddRule(&nftables.Rule{Table: inetTable, Chain: post, Exprs: masqRule(f, proto, named[f.masq])})
		}
	}
	c.queued++
	return nil
}

// queueHairpinChain queues the chain that masquerades connections from
// subnet (and, for IPv4, from 127.0.0.0/8) through a mapping.
func (c *Conn) queueHairpinChain(subnet *net.IPNet) {
	f := familyOf(subnet.IP)
	chain := c.nft.AddChain(&nftables.Chain{Table: inetTable, Name: HairpinChain(subnet)})
	c.nft.FlushChain(chain)
	sources := []net.IPNet{*subnet}
	if f == portFamily4 {
		sources = append(sources, f.loopback)
	}
	for _, src := range sources {
		c.nft.AddRule(&nftables.Rule{Table: inetTable, Chain: chain, Exprs: append(
			matchPrefix(f, f.saddrOff, src, expr.CmpOpEq), &expr.Masq{})})
	}
	c.queued++
}

// hasChain reports whether table inet cnikit has the chain: one request,
// whatever the size of the ruleset.
func (c *Conn) hasChain(name string) (bool, error) {
	_, err := c.nft.ListChain(inetTable, name)
	if IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("looking up nftables chain %s %s: %w", TableName, name, err)
	}
	return true, nil
}

// loadKey loads "[ip daddr .] meta l4proto . th dport" into the registers
// from 1: the key of a DNAT map or cond set.
func loadKey(f *portFamily, specific bool) []expr.Any {
	var exprs []expr.Any
	off := uint32(0)
	if specific {
		exprs = append(exprs, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: f.daddrOff, Len: f.addrLen})
		off = f.addrLen
	}
	return append(exprs,
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg32(off)},
		&expr.Payload{DestRegister: reg32(off + 4), Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
	)
}

// refusedByConditionsRule is "<key> @<cond> ip saddr . ip daddr . meta
// l4proto . th dport != @<allow> return": a mapping with conditions does
// not apply to the connections they leave out.
func refusedByConditionsRule(f *portFamily, cond, allow *nftables.Set, specific bool) []expr.Any {
	a := f.addrLen
	exprs := append(nfproto([]byte{f.nfproto}), loadKey(f, specific)...)
	return append(exprs,
		&expr.Lookup{SourceRegister: 1, SetName: cond.Name, SetID: cond.ID},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: f.saddrOff, Len: a},
		&expr.Payload{DestRegister: reg32(a), Base: expr.PayloadBaseNetworkHeader, Offset: f.daddrOff, Len: a},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg32(2 * a)},
		&expr.Payload{DestRegister: reg32(2*a + 4), Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: 1, SetName: allow.Name, SetID: allow.ID, Invert: true},
		&expr.Verdict{Kind: expr.VerdictReturn},
	)
}

// dnatRule is "dnat ip to <key> map @<map>".
func dnatRule(f *portFamily, dnat *nftables.Set, specific bool) []expr.Any {
	exprs := append(nfproto([]byte{f.nfproto}), loadKey(f, specific)...)
	return append(exprs,
		&expr.Lookup{SourceRegister: 1, SetName: dnat.Name, SetID: dnat.ID, IsDestRegSet: true, DestRegister: 1},
		dnatTo(f),
	)
}

// dnatTo translates to the address and port a map lookup left in register 1.
func dnatTo(f *portFamily) *expr.NAT {
	port := reg32(f.addrLen)
	return &expr.NAT{Type: expr.NATTypeDestNAT, Family: uint32(f.nfproto),
		RegAddrMin: 1, RegAddrMax: 1, RegProtoMin: port, RegProtoMax: port, Specified: true}
}

// masqRule is "meta l4proto <proto> ct status dnat ip daddr . meta l4proto .
// th dport . ct original proto-dst vmap @<masq>". The protocol match is
// redundant for the lookup but gives nft the context to print the rule.
func masqRule(f *portFamily, proto uint8, masq *nftables.Set) []expr.Any {
	a := f.addrLen
	return append(nfproto([]byte{f.nfproto}),
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Ct{Register: 1, Key: expr.CtKeySTATUS},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(ipsDstNAT), Xor: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: f.daddrOff, Len: a},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg32(a)},
		&expr.Payload{DestRegister: reg32(a + 4), Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Ct{Register: reg32(a + 8), Key: expr.CtKeyPROTODST, Direction: 0},
		&expr.Lookup{SourceRegister: 1, SetName: masq.Name, SetID: masq.ID, IsDestRegSet: true, DestRegister: 0},
	)
}

// matchPrefix matches the address at off (in the network header) against
// prefix with op, after checking the family.
func matchPrefix(f *portFamily, off uint32, prefix net.IPNet, op expr.CmpOp) []expr.Any {
	addr := f.addr(prefix.IP)
	mask := []byte(prefix.Mask)
	if len(mask) != len(addr) {
		ones, _ := prefix.Mask.Size()
		mask = net.CIDRMask(ones, len(addr)*8)
	}
	return append(nfproto([]byte{f.nfproto}),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: f.addrLen},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: f.addrLen, Mask: mask, Xor: make([]byte, f.addrLen)},
		&expr.Cmp{Op: op, Register: 1, Data: []byte(net.IP(addr).Mask(mask))},
	)
}

// AddHostPorts queues the attachment's mappings. An element that exists with
// the same data (a re-ADD, or a leaked element of a previous holder of the
// same address) is replaced so that it carries this attachment's comment.
// One whose key exists with other data makes the Flush fail with an error
// IsClash recognises; HostPortClashes then says who holds what.
func (c *Conn) AddHostPorts(a Attachment, ports []HostPort) error {
	if len(ports) == 0 {
		return nil
	}
	elems, err := hostPortElements(ports, a.Comment())
	if err != nil {
		return err
	}
	// Probing costs a request each; rewriting the base every time would
	// cost the kernel far more.
	present, err := c.hasChain(HostPortsPostrouting)
	if err != nil {
		return err
	}
	if !present {
		if err := c.queueHostPortBase(); err != nil {
			return err
		}
	}
	hairpins := map[string]bool{}
	for i := range ports {
		if ports[i].SNAT != SNATHairpin {
			continue
		}
		subnet := ports[i].subnet()
		name := HairpinChain(subnet)
		if hairpins[name] {
			continue
		}
		hairpins[name] = true
		if present {
			if have, err := c.hasChain(name); err != nil || have {
				if err != nil {
					return err
				}
				continue
			}
		}
		c.queueHairpinChain(subnet)
	}
	for _, e := range elems {
		bare := e.elem
		bare.Comment = ""
		// Add (a no-op when present with the same data, a clash with other
		// data), delete, add: the element ends up with this comment.
		for _, step := range []struct {
			del  bool
			elem nftables.SetElement
		}{{false, bare}, {true, keyOnly(e.elem)}, {false, e.elem}} {
			if err := c.queueElement(e.set, step.elem, step.del); err != nil {
				return err
			}
		}
	}
	return nil
}

// DelHostPorts queues the removal of the attachment's mappings, as recorded
// at ADD. Each element is first added with the data it was given (a no-op
// when present, nothing when absent), then deleted: a missing element is not
// an error, and one now holding another attachment's data makes the Flush
// fail with an error IsClash recognises (fall back to DelHostPortsOf then).
// The Flush fails with an error IsNotFound recognises when the program does
// not exist at all.
func (c *Conn) DelHostPorts(a Attachment, ports []HostPort) error {
	elems, err := hostPortElements(ports, "")
	if err != nil {
		return err
	}
	for _, e := range elems {
		if err := c.queueElement(e.set, e.elem, false); err != nil {
			return err
		}
		if err := c.queueElement(e.set, keyOnly(e.elem), true); err != nil {
			return err
		}
	}
	return nil
}

// keyOnly is what deleting an element needs.
func keyOnly(e nftables.SetElement) nftables.SetElement {
	return nftables.SetElement{Key: e.Key, KeyEnd: e.KeyEnd}
}

func (c *Conn) queueElement(s *nftables.Set, e nftables.SetElement, del bool) error {
	var err error
	if del {
		err = c.nft.SetDeleteElements(s, []nftables.SetElement{e})
	} else {
		err = c.nft.SetAddElements(s, []nftables.SetElement{e})
	}
	if err != nil {
		return fmt.Errorf("queueing element of nftables set %s: %w", s.Name, err)
	}
	c.queued++
	return nil
}

// HostPortElement is one element of the host port program, as listed.
type HostPortElement struct {
	Set     string
	Key     []byte
	KeyEnd  []byte
	Val     []byte
	Chain   string // the jump target, for the masquerade maps
	Comment string
}

// ListHostPorts returns every element of the host port program; none when
// the program does not exist.
func (c *Conn) ListHostPorts() ([]HostPortElement, error) {
	var out []HostPortElement
	for _, name := range hostPortSetNames() {
		elems, err := c.nft.GetSetElements(&nftables.Set{Table: inetTable, Name: name})
		if IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("listing nftables set %s %s: %w", TableName, name, err)
		}
		for _, e := range elems {
			he := HostPortElement{Set: name, Key: e.Key, KeyEnd: e.KeyEnd, Val: e.Val, Comment: e.Comment}
			if e.VerdictData != nil {
				he.Chain = e.VerdictData.Chain
			} else if name == portFamily4.masq || name == portFamily6.masq {
				he.Chain = verdictChain(e.Val)
			}
			out = append(out, he)
		}
	}
	return out, nil
}

func (c *Conn) queueHostPortDeletes(elems []HostPortElement) error {
	for _, e := range elems {
		s := &nftables.Set{Table: inetTable, Name: e.Set}
		if err := c.queueElement(s, nftables.SetElement{Key: e.Key, KeyEnd: e.KeyEnd}, true); err != nil {
			return err
		}
	}
	return nil
}

// DelHostPortsOf finds the attachment's elements by their comment and queues
// their deletion. It lists every element, so its cost grows with the number
// of containers: it is the fallback when the attachment's record is lost.
// It returns the elements found.
func (c *Conn) DelHostPortsOf(a Attachment) ([]HostPortElement, error) {
	elems, err := c.ListHostPorts()
	if err != nil {
		return nil, err
	}
	key := a.Key()
	var mine []HostPortElement
	for _, e := range elems {
		if strings.HasPrefix(e.Comment, key) {
			mine = append(mine, e)
		}
	}
	return mine, c.queueHostPortDeletes(mine)
}

// GCHostPorts queues the deletion of network's elements whose attachment is
// not in keep, and returns them.
func (c *Conn) GCHostPorts(network string, keep KeepSet) ([]HostPortElement, error) {
	elems, err := c.ListHostPorts()
	if err != nil {
		return nil, err
	}
	var stale []HostPortElement
	for _, e := range elems {
		if keep.stale(network, e.Comment) {
			stale = append(stale, e)
		}
	}
	return stale, c.queueHostPortDeletes(stale)
}

// HostPortClash is a mapping an attachment asked for whose key another
// attachment holds with other data.
type HostPortClash struct {
	Port   HostPort
	Holder string // the comment of the element holding the key
}

// ResolveHostPortClashes is for the retry after a Flush of AddHostPorts
// failed with IsClash. It lists the program and reports each element of
// ports whose key another attachment holds with other data: a clash the
// caller must refuse. When there is none, it queues the eviction of what
// made the Flush fail: every element of this very attachment (stale ones of
// an earlier ADD whose record was lost; the retry adds the current ones
// again), and masquerade elements at ports' keys (their key holds the
// container's own address, so their holder is gone).
func (c *Conn) ResolveHostPortClashes(a Attachment, ports []HostPort) ([]HostPortClash, error) {
	have, err := c.ListHostPorts()
	if err != nil {
		return nil, err
	}
	key := a.Key()
	index := map[string]HostPortElement{}
	var evict []HostPortElement
	for _, e := range have {
		index[e.Set+"/"+string(e.Key)] = e
		if strings.HasPrefix(e.Comment, key) {
			evict = append(evict, e)
		}
	}
	var clashes []HostPortClash
	for i := range ports {
		want, err := hostPortElements(ports[i:i+1], "")
		if err != nil {
			return nil, err
		}
		for _, w := range want {
			e, ok := index[w.set.Name+"/"+string(w.elem.Key)]
			if !ok || sameElementData(e, w.elem) || strings.HasPrefix(e.Comment, key) {
				continue
			}
			if w.set.Name == portFamily4.masq || w.set.Name == portFamily6.masq {
				evict = append(evict, e)
				continue
			}
			clashes = append(clashes, HostPortClash{Port: ports[i], Holder: e.Comment})
		}
	}
	if len(clashes) > 0 {
		return clashes, nil
	}
	return nil, c.queueHostPortDeletes(evict)
}

func sameElementData(have HostPortElement, want nftables.SetElement) bool {
	if want.VerdictData != nil {
		return have.Chain == want.VerdictData.Chain
	}
	return string(have.KeyEnd) == string(want.KeyEnd) && string(have.Val) == string(want.Val)
}

// CheckHostPorts reports the first of the attachment's elements for ports
// that is missing, holds other data or belongs to another attachment.
func (c *Conn) CheckHostPorts(a Attachment, ports []HostPort) error {
	want, err := hostPortElements(ports, "")
	if err != nil {
		return err
	}
	have, err := c.ListHostPorts()
	if err != nil {
		return err
	}
	index := map[string]HostPortElement{}
	for _, e := range have {
		index[e.Set+"/"+string(e.Key)+"/"+string(e.KeyEnd)] = e
	}
	key := a.Key()
	for _, w := range want {
		e, ok := index[w.set.Name+"/"+string(w.elem.Key)+"/"+string(w.elem.KeyEnd)]
		switch {
		case !ok:
			return fmt.Errorf("nftables set %s %s lacks an element of container %s interface %s", TableName, w.set.Name, a.ContainerID, a.IfName)
		case !sameElementData(e, w.elem):
			return fmt.Errorf("nftables set %s %s has an element of container %s interface %s with other data", TableName, w.set.Name, a.ContainerID, a.IfName)
		case !strings.HasPrefix(e.Comment, key):
			return fmt.Errorf("nftables set %s %s: the element of container %s interface %s is held by %q", TableName, w.set.Name, a.ContainerID, a.IfName, e.Comment)
		}
	}
	return nil
}

// AddLocalnetGuard queues the chains that drop 127.0.0.0/8 traffic on every
// interface but lo, unless they exist. Set them before setting
// route_localnet anywhere.
func (c *Conn) AddLocalnetGuard() error {
	if have, err := c.hasChain(LocalnetGuardOut); err != nil || have {
		return err
	}
	c.nft.AddTable(inetTable)
	policy := nftables.ChainPolicyAccept
	f := portFamily4
	notLo := func(key expr.MetaKey) []expr.Any {
		return []expr.Any{
			&expr.Meta{Key: key, Register: 1},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(1)}, // lo is always ifindex 1
		}
	}
	for _, g := range []struct {
		name string
		hook *nftables.ChainHook
		prio int32
		dev  expr.MetaKey
		offs []uint32
	}{
		{LocalnetGuardIn, nftables.ChainHookPrerouting, localnetGuardInPrio, expr.MetaKeyIIF, []uint32{f.daddrOff, f.saddrOff}},
		{LocalnetGuardOut, nftables.ChainHookPostrouting, localnetGuardOutPrio, expr.MetaKeyOIF, []uint32{f.saddrOff, f.daddrOff}},
	} {
		chain := c.nft.AddChain(&nftables.Chain{Table: inetTable, Name: g.name, Type: nftables.ChainTypeFilter,
			Hooknum: g.hook, Priority: nftables.ChainPriorityRef(nftables.ChainPriority(g.prio)), Policy: &policy})
		c.nft.FlushChain(chain)
		for _, off := range g.offs {
			exprs := append(notLo(g.dev), matchPrefix(f, off, f.loopback, expr.CmpOpEq)...)
			c.nft.AddRule(&nftables.Rule{Table: inetTable, Chain: chain, Exprs: append(exprs, &expr.Verdict{Kind: expr.VerdictDrop})})
		}
	}
	c.queued++
	return nil
}

// ProbeHostPorts checks that nf_tables answers in this namespace: it looks
// the table up (absent is fine).
func (c *Conn) ProbeHostPorts() error {
	if _, err := c.nft.ListTableOfFamily(TableName, nftables.TableFamilyINet); err != nil && !IsNotFound(err) {
		return fmt.Errorf("querying nftables: %w", err)
	}
	return nil
}

// The reference portmap's nftables backend (containernetworking/plugins
// v1.6.0 and later, backend "nftables") keeps one rule per mapping in tables
// ip and ip6 cni_hostport, chains hostports, hostip_hostports and
// masquerading, commented with the container ID alone. cnikit removes a
// container's rules there when it deletes an attachment it has no record of,
// so that a host upgraded from the reference leaks nothing. (The reference's
// default iptables backend is left alone: cnikit starts no iptables process.)
const ReferenceHostPortTable = "cni_hostport"

var referenceHostPortChains = []string{"hostports", "hostip_hostports", "masquerading"}

// DelReferenceHostPorts queues the deletion of the reference portmap's rules
// for containerID, and reports how many. It costs one request per family
// when the reference tables do not exist.
func (c *Conn) DelReferenceHostPorts(containerID string) (int, error) {
	n := 0
	for _, family := range []nftables.TableFamily{nftables.TableFamilyIPv4, nftables.TableFamilyIPv6} {
		table, err := c.nft.ListTableOfFamily(ReferenceHostPortTable, family)
		if IsNotFound(err) {
			continue
		}
		if err != nil {
			return n, fmt.Errorf("looking up nftables table %s: %w", ReferenceHostPortTable, err)
		}
		for _, name := range referenceHostPortChains {
			rules, err := c.nft.GetRules(table, &nftables.Chain{Table: table, Name: name})
			if IsNotFound(err) {
				continue
			}
			if err != nil {
				return n, fmt.Errorf("listing nftables chain %s %s: %w", ReferenceHostPortTable, name, err)
			}
			var mine []*nftables.Rule
			for _, r := range rules {
				if comment, _ := userdata.GetString(r.UserData, userdata.TypeComment); comment == containerID {
					mine = append(mine, r)
				}
			}
			if err := c.queueRuleDeletes(mine); err != nil {
				return n, err
			}
			n += len(mine)
		}
	}
	return n, nil
}
