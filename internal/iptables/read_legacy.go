package iptables

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Legacy iptables keeps each table as one blob of entries that the
// IPT_SO_GET_INFO / IPT_SO_GET_ENTRIES socket options return (and
// IP6T_SO_* for IPv6). The layouts below are those of the kernel's uapi
// headers (linux/netfilter_ipv4/ip_tables.h, netfilter_ipv6/ip6_tables.h,
// netfilter/x_tables.h, netfilter/xt_conntrack.h), in host byte order.
const (
	soGetInfo    = 64 // IPT_SO_GET_INFO, IP6T_SO_GET_INFO
	soGetEntries = 65 // IPT_SO_GET_ENTRIES, IP6T_SO_GET_ENTRIES

	tableNameLen  = 32
	getInfoSize   = tableNameLen + 4 + 5*4 + 5*4 + 4 + 4 // struct ipt_getinfo
	entriesHeader = 40                                   // struct ipt_get_entries, entrytable 8-aligned
	xtHeaderSize  = 32                                   // struct xt_entry_match / xt_entry_target

	invIn, invOut, invSrc, invDst = 0x01, 0x02, 0x08, 0x10
)

// entryLayout is where the fields of an ipt_entry / ip6t_entry are.
type entryLayout struct {
	addrLen                int
	src, dst, smsk, dmsk   int
	iniface, outiface      int
	inmask, outmask        int
	proto, flags, invflags int
	targetOffset, elems    int
	otherFlags, gotoFlag   byte // flags this package does not model
	procNames              string
	sockFamily, sockLevel  int
}

var (
	layout4 = entryLayout{addrLen: 4, src: 0, dst: 4, smsk: 8, dmsk: 12, iniface: 16, outiface: 32,
		proto: 80, flags: 82, invflags: 83, targetOffset: 88, elems: 112, otherFlags: 0x01, gotoFlag: 0x02,
		procNames: "ip_tables_names", sockFamily: unix.AF_INET, sockLevel: unix.IPPROTO_IP}
	layout6 = entryLayout{addrLen: 16, src: 0, dst: 16, smsk: 32, dmsk: 48, iniface: 64, outiface: 80,
		proto: 128, flags: 131, invflags: 132, targetOffset: 140, elems: 168, otherFlags: 0x03, gotoFlag: 0x04,
		procNames: "ip6_tables_names", sockFamily: unix.AF_INET6, sockLevel: unix.IPPROTO_IPV6}
)

// hookNames are the built-in chains by netfilter hook number.
var hookNames = []string{"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}

// legacyTableExists reads the tables the calling thread's namespace has.
// Asking the kernel for a table that does not exist yet would create it
// (and with it legacy hooks on an iptables-nft host), so this comes first.
func legacyTableExists(l entryLayout, table string) (bool, error) {
	f, err := os.Open("/proc/thread-self/net/" + l.procNames)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil // no legacy iptables in this kernel
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if strings.TrimSpace(s.Text()) == table {
			return true, nil
		}
	}
	return false, s.Err()
}

func getsockopt(fd, level, opt int, buf []byte) error {
	size := uint32(len(buf))
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt),
		uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&size)), 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// readLegacy reads a legacy table through the socket options.
func readLegacy(f Family, table string, rulesOf []string) (*Table, error) {
	l := layout4
	if f == IPv6 {
		l = layout6
	}
	t := &Table{Family: f, Name: table, Chains: map[string]*Chain{}}
	exists, err := legacyTableExists(l, table)
	if err != nil || !exists {
		return t, err
	}
	fd, err := unix.Socket(l.sockFamily, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		return nil, fmt.Errorf("opening a raw socket to read %s: %w", f, err)
	}
	defer unix.Close(fd)

	info := make([]byte, getInfoSize)
	copy(info, table)
	if err := getsockopt(fd, l.sockLevel, soGetInfo, info); err != nil {
		return nil, fmt.Errorf("reading %s table %s: %w", f, table, err)
	}
	le := binary.NativeEndian
	validHooks := le.Uint32(info[32:])
	var hookEntry, underflow [5]uint32
	for h := range 5 {
		hookEntry[h] = le.Uint32(info[36+4*h:])
		underflow[h] = le.Uint32(info[56+4*h:])
	}
	size := le.Uint32(info[80:])
	buf := make([]byte, entriesHeader+int(size))
	copy(buf, table)
	le.PutUint32(buf[tableNameLen:], size)
	if err := getsockopt(fd, l.sockLevel, soGetEntries, buf); err != nil {
		return nil, fmt.Errorf("reading %s table %s entries: %w", f, table, err)
	}
	return parseLegacy(t, l, buf[entriesHeader:], validHooks, hookEntry, underflow, rulesOf)
}

// parseLegacy walks the entry blob: built-in chains start at their hook
// entry and end with their policy entry (underflow); user chains start with
// an ERROR entry naming them and end with an implicit RETURN entry.
func parseLegacy(t *Table, l entryLayout, blob []byte, validHooks uint32, hookEntry, underflow [5]uint32, rulesOf []string) (*Table, error) {
	le := binary.NativeEndian
	type entry struct {
		offset int
		chain  string
		rule   Rule
		jumpTo int // offset a standard target jumps to, or -1
	}
	var entries []entry
	chainAt := map[int]string{} // offset of a user chain's first entry
	var current *Chain
	for off := 0; off < len(blob); {
		if off+l.elems > len(blob) {
			return nil, fmt.Errorf("%s table %s: truncated entry at %d", t.Family, t.Name, off)
		}
		e := blob[off:]
		targetOff := int(le.Uint16(e[l.targetOffset:]))
		nextOff := int(le.Uint16(e[l.targetOffset+2:]))
		if nextOff < l.elems || off+nextOff > len(blob) || targetOff+xtHeaderSize > nextOff {
			return nil, fmt.Errorf("%s table %s: malformed entry at %d", t.Family, t.Name, off)
		}
		for h := range 5 {
			if validHooks&(1<<h) != 0 && int(hookEntry[h]) == off {
				current = &Chain{Name: hookNames[h]}
				t.Chains[current.Name] = current
			}
		}
		target := e[targetOff:nextOff]
		targetName := cString(target[2:31])
		verdict := int32(-1 << 30)
		if targetName == "" && len(target) >= xtHeaderSize+4 {
			verdict = int32(le.Uint32(target[xtHeaderSize:]))
		}
		switch {
		case targetName == "ERROR":
			// The previous user chain's last entry was its implicit RETURN.
			if current != nil && current.Policy == "" && len(current.Rules) > 0 {
				current.Rules = current.Rules[:len(current.Rules)-1]
				entries = entries[:len(entries)-1]
			}
			name := cString(target[xtHeaderSize:])
			if name == "ERROR" {
				off = len(blob) // end of table
				continue
			}
			current = &Chain{Name: name}
			t.Chains[name] = current
			chainAt[off+nextOff] = name
		case current == nil:
		case isUnderflow(off, validHooks, underflow):
			current.Policy = "ACCEPT"
			if verdict == -1 { // -NF_DROP-1
				current.Policy = "DROP"
			}
		default:
			r := parseLegacyEntry(l, e[:nextOff], targetOff, targetName, verdict)
			jump := -1
			if targetName == "" && verdict >= 0 {
				jump = int(verdict)
			}
			current.Rules = append(current.Rules, r)
			entries = append(entries, entry{offset: off, chain: current.Name, rule: r, jumpTo: jump})
		}
		off += nextOff
	}
	// Resolve jumps now that every chain's position is known, and drop the
	// rules of chains that were not asked for.
	for _, c := range t.Chains {
		c.Rules = nil
	}
	for _, en := range entries {
		if !slices.Contains(rulesOf, en.chain) {
			continue
		}
		r := en.rule
		if en.jumpTo >= 0 {
			if name, ok := chainAt[en.jumpTo]; ok {
				r.Target = name
			} else {
				r.Opaque = true // a fall-through or an unknown position
			}
		}
		t.Chains[en.chain].Rules = append(t.Chains[en.chain].Rules, r)
	}
	return t, nil
}

func isUnderflow(off int, validHooks uint32, underflow [5]uint32) bool {
	for h := range 5 {
		if validHooks&(1<<h) != 0 && int(underflow[h]) == off {
			return true
		}
	}
	return false
}

// parseLegacyEntry models one rule: its address and interface matches, the
// comment and conntrack state matches, and its target.
func parseLegacyEntry(l entryLayout, e []byte, targetOff int, targetName string, verdict int32) Rule {
	var r Rule
	inv := e[l.invflags]
	if le16(e[l.proto:]) != 0 || e[l.flags]&l.otherFlags != 0 || e[l.flags]&l.gotoFlag != 0 || inv&^(invIn|invOut) != 0 {
		r.Opaque = true
	}
	r.Source = maskedNet(e[l.src:l.src+l.addrLen], e[l.smsk:l.smsk+l.addrLen])
	r.Destination = maskedNet(e[l.dst:l.dst+l.addrLen], e[l.dmsk:l.dmsk+l.addrLen])
	// iptables stores a "name+" wildcard with its '+' (which the interface
	// mask does not cover), so the name alone is the option's value.
	r.InIface = cString(e[l.iniface : l.iniface+16])
	r.NotInIface = inv&invIn != 0
	r.OutIface = cString(e[l.outiface : l.outiface+16])
	r.NotOutIface = inv&invOut != 0

	for m := l.elems; m+xtHeaderSize <= targetOff; {
		size := int(le16(e[m:]))
		if size < xtHeaderSize || m+size > targetOff {
			r.Opaque = true
			break
		}
		name, rev, data := cString(e[m+2:m+31]), e[m+31], e[m+xtHeaderSize:m+size]
		switch {
		case name == "comment":
			r.Comment = cString(data)
		case name == "conntrack" && rev >= 1 && len(data) >= 152:
			flags, invert := le16(data[146:]), le16(data[148:])
			state := uint16(data[150])
			if rev >= 2 {
				state = le16(data[150:])
			}
			r.CtState = legacyStates(flags, invert, state)
			if r.CtState == "" {
				r.Opaque = true
			}
		default:
			r.Opaque = true
		}
		m += size
	}
	switch {
	case targetName != "":
		r.Target, r.Opaque = targetName, true
	case verdict == -2: // -NF_ACCEPT-1
		r.Target = "ACCEPT"
	case verdict == -1:
		r.Target = "DROP"
	case verdict == -5: // XT_RETURN
		r.Target = "RETURN"
	case verdict >= 0:
		// A jump; parseLegacy resolves the chain name.
	default:
		r.Opaque = true
	}
	return r
}

func legacyStates(flags, invert, mask uint16) string {
	var names []string
	if flags != 1 || invert != 0 { // XT_CONNTRACK_STATE only
		return ""
	}
	for _, s := range stateNames {
		if mask&s.xt != 0 {
			names = append(names, s.name)
		}
	}
	return strings.Join(names, ",")
}

func le16(b []byte) uint16 { return binary.NativeEndian.Uint16(b) }

func cString(b []byte) string {
	if i := slices.Index(b, 0); i >= 0 {
		return string(b[:i])
	}
	return string(b)
}

func maskedNet(addr, mask []byte) *net.IPNet {
	if slices.Max(mask) == 0 {
		return nil
	}
	ones, _ := net.IPMask(mask).Size()
	return &net.IPNet{IP: net.IP(slices.Clone(addr)), Mask: net.CIDRMask(ones, len(mask)*8)}
}
