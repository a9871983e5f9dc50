package portmap

import (
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/nft"
)

// conditionsV4/V6 hold extra matches that restrict which connections a
// mapping applies to. The reference passes them through to iptables or nft;
// cnikit builds the nftables program itself, so it accepts what it can turn
// into address ranges of its allow sets, per attachment:
//
//	iptables style (first token starts with "-" or "!"):
//	  [!] -s|--source|--src ADDR[,ADDR...]        ADDR: address, address/prefix, address/dotted-mask
//	  [!] -d|--destination|--dst ADDR[,ADDR...]
//	  -m iprange [!] --src-range A-B [!] --dst-range A-B
//	nft style:
//	  ip|ip6 saddr|daddr [==|!=] VALUE             VALUE: address, prefix, range A-B, or { VALUE, ... }
//
// Matches are ANDed, as in one iptables rule or one nft rule. Anything else
// (interfaces, marks, ipsets, other modules) is refused with code 2: silently
// dropping a match would widen what the mapping exposes.

// addrSet is a set of addresses of one family as sorted, disjoint,
// non-adjacent ranges. A nil addrSet means "no restriction".
type addrSet []nft.IPRange

// addrMatch is what one family's conditions restrict.
type addrMatch struct {
	sources, destinations addrSet
}

// familyRange is every address of the family.
func familyRange(v6 bool) nft.IPRange {
	if !v6 {
		return nft.IPRange{First: netip.IPv4Unspecified(), Last: netip.AddrFrom4([4]byte{255, 255, 255, 255})}
	}
	var last [16]byte
	for i := range last {
		last[i] = 0xff
	}
	return nft.IPRange{First: netip.IPv6Unspecified(), Last: netip.AddrFrom16(last)}
}

// normalize sorts ranges and merges those that overlap or touch.
func normalize(ranges []nft.IPRange) addrSet {
	sorted := append([]nft.IPRange(nil), ranges...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].First.Less(sorted[j].First) })
	out := addrSet{}
	for _, r := range sorted {
		if n := len(out); n > 0 {
			last := &out[n-1]
			next := last.Last.Next()
			if !next.IsValid() || r.First.Compare(next) <= 0 {
				if r.Last.Compare(last.Last) > 0 {
					last.Last = r.Last
				}
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

// intersect returns the addresses in both sets; nil stands for every address.
func intersect(a, b addrSet) addrSet {
	if a == nil {
		return b
	}
	if b == nil {
		return a
	}
	out := addrSet{}
	for i, j := 0, 0; i < len(a) && j < len(b); {
		first, last := a[i].First, a[i].Last
		if b[j].First.Compare(first) > 0 {
			first = b[j].First
		}
		if b[j].Last.Compare(last) < 0 {
			last = b[j].Last
		}
		if first.Compare(last) <= 0 {
			out = append(out, nft.IPRange{First: first, Last: last})
		}
		if a[i].Last.Compare(b[j].Last) < 0 {
			i++
		} else {
			j++
		}
	}
	return out
}

// complement returns the family's addresses not in s.
func complement(s addrSet, v6 bool) addrSet {
	full := familyRange(v6)
	out := addrSet{}
	next := full.First
	for _, r := range s {
		if r.First.Compare(next) > 0 {
			out = append(out, nft.IPRange{First: next, Last: r.First.Prev()})
		}
		next = r.Last.Next()
		if !next.IsValid() {
			return out
		}
	}
	return append(out, nft.IPRange{First: next, Last: full.Last})
}

// prefixRange is the range a prefix covers.
func prefixRange(p netip.Prefix) nft.IPRange {
	p = p.Masked()
	first := p.Addr()
	b := first.AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	last, _ := netip.AddrFromSlice(b)
	return nft.IPRange{First: first, Last: last}
}

// conditionError builds the errors of the key's conditions.
type conditionError struct {
	key, conditions string
}

func (e conditionError) unsupported(token string) error {
	return cni.Errorf(cni.CodeUnsupportedField,
		"%s: %q in %q is not supported: cnikit matches only source and destination addresses "+
			"(-s, -d, -m iprange --src-range/--dst-range, ip/ip6 saddr/daddr)", e.key, token, e.conditions)
}

func (e conditionError) invalid(format string, args ...any) error {
	return cni.Errorf(cni.CodeInvalidNetworkConfig, "%s: %s in %q", e.key, fmt.Sprintf(format, args...), e.conditions)
}

// isIptablesStyle reports whether conditions are iptables arguments, as the
// reference decides it: the first token starts with "-" or "!".
func isIptablesStyle(conditions []string) bool {
	tokens := strings.Fields(strings.Join(conditions, " "))
	return len(tokens) > 0 && (strings.HasPrefix(tokens[0], "-") || strings.HasPrefix(tokens[0], "!"))
}

// parseConditions turns the conditions of key (conditionsV4 when !v6) into
// the address ranges they allow.
func parseConditions(key string, conditions []string, v6 bool) (addrMatch, error) {
	cerr := conditionError{key: key, conditions: strings.Join(conditions, " ")}
	var m addrMatch
	var err error
	if isIptablesStyle(conditions) {
		m, err = parseIptablesConditions(cerr, strings.Fields(cerr.conditions), v6)
	} else {
		m, err = parseNftConditions(cerr, v6)
	}
	if err != nil {
		return m, err
	}
	if m.sources != nil && len(m.sources) == 0 {
		return m, cerr.invalid("no source address is allowed")
	}
	if m.destinations != nil && len(m.destinations) == 0 {
		return m, cerr.invalid("no destination address is allowed")
	}
	return m, nil
}

// restrict narrows the match's sources or destinations to set, or to its
// complement when negated.
func (m *addrMatch) restrict(destination, negated bool, set addrSet, v6 bool) {
	if negated {
		set = complement(set, v6)
	}
	if destination {
		m.destinations = intersect(m.destinations, set)
	} else {
		m.sources = intersect(m.sources, set)
	}
}

func parseIptablesConditions(cerr conditionError, tokens []string, v6 bool) (addrMatch, error) {
	var m addrMatch
	negated, iprange := false, false
	value := func(i int) (string, error) {
		if i+1 >= len(tokens) {
			return "", cerr.invalid("%s needs a value", tokens[i])
		}
		return tokens[i+1], nil
	}
	for i := 0; i < len(tokens); i++ {
		tok := tokens[i]
		switch tok {
		case "!":
			if negated {
				return m, cerr.invalid("\"!\" twice")
			}
			negated = true
			continue
		case "-s", "--source", "--src", "-d", "--destination", "--dst":
			v, err := value(i)
			if err != nil {
				return m, err
			}
			var ranges []nft.IPRange
			for _, item := range strings.Split(v, ",") {
				r, err := parseIptablesAddr(item, v6)
				if err != nil {
					return m, cerr.invalid("%s %q: %v", tok, v, err)
				}
				ranges = append(ranges, r)
			}
			m.restrict(strings.HasPrefix(tok, "-d") || strings.HasPrefix(tok, "--d"), negated, normalize(ranges), v6)
			i++
		case "-m", "--match":
			v, err := value(i)
			if err != nil {
				return m, err
			}
			if v != "iprange" || negated {
				return m, cerr.unsupported(strings.Join(tokens[i:i+2], " "))
			}
			iprange = true
			i++
		case "--src-range", "--dst-range":
			if !iprange {
				return m, cerr.invalid("%s without -m iprange", tok)
			}
			v, err := value(i)
			if err != nil {
				return m, err
			}
			r, err := parseRange(v, v6)
			if err != nil {
				return m, cerr.invalid("%s %q: %v", tok, v, err)
			}
			m.restrict(tok == "--dst-range", negated, addrSet{r}, v6)
			i++
		default:
			return m, cerr.unsupported(tok)
		}
		negated = false
	}
	if negated {
		return m, cerr.invalid("\"!\" at the end")
	}
	return m, nil
}

// parseIptablesAddr reads an iptables address: an address, a prefix, or an
// address with a dotted mask.
func parseIptablesAddr(s string, v6 bool) (nft.IPRange, error) {
	if addr, mask, ok := strings.Cut(s, "/"); ok && strings.Contains(mask, ".") && !v6 {
		m := net.ParseIP(mask).To4()
		if m == nil {
			return nft.IPRange{}, fmt.Errorf("%q is not a mask", mask)
		}
		ones, bits := net.IPMask(m).Size()
		if bits == 0 {
			return nft.IPRange{}, fmt.Errorf("mask %s is not contiguous", mask)
		}
		s = fmt.Sprintf("%s/%d", addr, ones)
	}
	return parseAddrOrPrefix(s, v6)
}

// parseAddrOrPrefix reads an address or a prefix of the family.
func parseAddrOrPrefix(s string, v6 bool) (nft.IPRange, error) {
	family := "IPv4"
	if v6 {
		family = "IPv6"
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil || p.Addr().Is6() != v6 || p.Addr().Zone() != "" {
			return nft.IPRange{}, fmt.Errorf("%q is not an %s prefix", s, family)
		}
		return prefixRange(p), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Is6() != v6 || a.Zone() != "" {
		return nft.IPRange{}, fmt.Errorf("%q is not an %s address", s, family)
	}
	return nft.IPRange{First: a, Last: a}, nil
}

// parseRange reads "A-B", or a single address or prefix.
func parseRange(s string, v6 bool) (nft.IPRange, error) {
	first, last, ok := strings.Cut(s, "-")
	if !ok {
		return parseAddrOrPrefix(s, v6)
	}
	a, err := parseAddrOrPrefix(first, v6)
	if err != nil || a.First != a.Last {
		return nft.IPRange{}, fmt.Errorf("%q is not an address range", s)
	}
	b, err := parseAddrOrPrefix(last, v6)
	if err != nil || b.First != b.Last || b.First.Less(a.First) {
		return nft.IPRange{}, fmt.Errorf("%q is not an address range", s)
	}
	return nft.IPRange{First: a.First, Last: b.Last}, nil
}

func parseNftConditions(cerr conditionError, v6 bool) (addrMatch, error) {
	var m addrMatch
	spaced := strings.NewReplacer("{", " { ", "}", " } ", ",", " , ").Replace(cerr.conditions)
	tokens := strings.Fields(spaced)
	proto := "ip"
	if v6 {
		proto = "ip6"
	}
	for i := 0; i < len(tokens); {
		tok := tokens[i]
		if tok != "ip" && tok != "ip6" {
			return m, cerr.unsupported(tok)
		}
		if tok != proto {
			return m, cerr.invalid("%q matches the other address family", tok)
		}
		if i+1 >= len(tokens) || (tokens[i+1] != "saddr" && tokens[i+1] != "daddr") {
			if i+1 < len(tokens) {
				return m, cerr.unsupported(tok + " " + tokens[i+1])
			}
			return m, cerr.invalid("%q needs saddr or daddr", tok)
		}
		destination := tokens[i+1] == "daddr"
		i += 2
		negated := false
		if i < len(tokens) {
			switch tokens[i] {
			case "==", "eq":
				i++
			case "!=", "ne":
				negated = true
				i++
			}
		}
		if i >= len(tokens) {
			return m, cerr.invalid("%s %s needs a value", tok, tokens[i-1])
		}
		var values []string
		if tokens[i] == "{" {
			j := i + 1
			for ; j < len(tokens) && tokens[j] != "}"; j++ {
				if tokens[j] != "," {
					values = append(values, tokens[j])
				}
			}
			if j == len(tokens) {
				return m, cerr.invalid("\"{\" without \"}\"")
			}
			i = j + 1
		} else {
			values = []string{tokens[i]}
			i++
		}
		if len(values) == 0 {
			return m, cerr.invalid("empty set")
		}
		var ranges []nft.IPRange
		for _, v := range values {
			r, err := parseRange(v, v6)
			if err != nil {
				return m, cerr.invalid("%v", err)
			}
			ranges = append(ranges, r)
		}
		m.restrict(destination, negated, normalize(ranges), v6)
	}
	return m, nil
}
