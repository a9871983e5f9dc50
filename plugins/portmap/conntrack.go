package portmap

import (
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/cnikit/cnikit/internal/nft"
)

// udpHostPorts matches conntrack entries of UDP connections to mapped host
// ports: their original destination port is the host port and, for a
// mapping with a host IP, their original destination is that address.
// UDP entries outlive a container (a client that keeps sending keeps its
// entry alive), so an entry made before the mapping existed, or pointing at
// a container that is gone, would keep blackholing the traffic (reference
// issues plugins#123, plugins#1190).
type udpHostPorts map[uint16][]net.IP // host port: host IPs, nil meaning any

// MatchConntrackFlow implements netlink.CustomConntrackFilter.
func (f udpHostPorts) MatchConntrackFlow(flow *netlink.ConntrackFlow) bool {
	if flow.Forward.Protocol != unix.IPPROTO_UDP {
		return false
	}
	ips, ok := f[flow.Forward.DstPort]
	if !ok {
		return false
	}
	for _, ip := range ips {
		if ip == nil || ip.Equal(flow.Forward.DstIP) {
			return true
		}
	}
	return false
}

// flushUDPConntrack deletes the conntrack entries of UDP connections to the
// host ports of ports, in the calling thread's namespace. It dumps the
// conntrack table once per family that has UDP mappings.
func flushUDPConntrack(ports []nft.HostPort) error {
	filters := map[netlink.InetFamily]udpHostPorts{}
	for _, p := range ports {
		if p.Protocol != unix.IPPROTO_UDP {
			continue
		}
		family := netlink.InetFamily(unix.AF_INET)
		if p.Container.IP.To4() == nil {
			family = unix.AF_INET6
		}
		if filters[family] == nil {
			filters[family] = udpHostPorts{}
		}
		filters[family][p.Port] = append(filters[family][p.Port], p.HostIP)
	}
	if len(filters) == 0 {
		return nil
	}
	h, err := netlink.NewHandle(unix.NETLINK_NETFILTER)
	if err != nil {
		return fmt.Errorf("opening conntrack netlink: %w", err)
	}
	defer h.Close()
	for family, filter := range filters {
		if _, err := h.ConntrackDeleteFilters(netlink.ConntrackTable, family, filter); err != nil {
			return fmt.Errorf("deleting UDP conntrack entries: %w", err)
		}
	}
	return nil
}
