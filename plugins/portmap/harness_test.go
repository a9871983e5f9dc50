package portmap

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/link"
	"github.com/cnikit/cnikit/internal/nft"
	"github.com/cnikit/cnikit/internal/nstest"
	"github.com/cnikit/cnikit/internal/plugintest"
)

// topology is a small network of throw-away namespaces:
//
//	client 192.168.50.2, fd50::2 ── vclient ─┐
//	                                          host (forwarding) ── br0 10.88.0.1/24, fd88::1/64 ── c1 10.88.0.2, fd88::2
//	remote 203.0.113.10 ──────────── vremote ─┘   192.168.50.1, fd50::1, 203.0.113.1              └─ c2 10.88.0.3, fd88::3
//
// The plugin runs in-process inside host; c1 and c2 are the containers.
type topology struct {
	t                      testing.TB
	host                   *plugintest.Host
	c1, c2, client, remote *nstest.NS
}

// Addresses of the topology.
const (
	hostClientIP  = "192.168.50.1"
	hostClientIP6 = "fd50::1"
	clientIP      = "192.168.50.2"
	bridgeIP      = "10.88.0.1"
	bridgeIP6     = "fd88::1"
	c1IP          = "10.88.0.2"
	c1IP6         = "fd88::2"
	c2IP          = "10.88.0.3"
	remoteIP      = "203.0.113.10"
)

func newTopology(t testing.TB) *topology {
	t.Helper()
	host := plugintest.NewHost(t, "portmap")
	host.Defaults.ContainerID = "c1"
	host.Defaults.Path = "/nonexistent"
	stateDir = t.TempDir()
	tp := &topology{t: t, host: host, c1: nstest.New(t), c2: nstest.New(t), client: nstest.New(t), remote: nstest.New(t)}
	h := tp.host.Handle()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
	must(t, h.LinkAdd(br))
	must(t, h.LinkSetUp(br))
	tp.addAddrs(h, br, "10.88.0.1/24", "fd88::1/64")
	tp.host.Do(func() error {
		if err := link.SetSysctl("net/ipv4/ip_forward", "1"); err != nil {
			return err
		}
		return link.SetSysctl("net/ipv6/conf/all/forwarding", "1")
	})
	tp.attach(tp.c1, "vc1", br, []string{"10.88.0.2/24", "fd88::2/64"}, bridgeIP, bridgeIP6)
	tp.attach(tp.c2, "vc2", br, []string{"10.88.0.3/24", "fd88::3/64"}, bridgeIP, bridgeIP6)
	vc := tp.attach(tp.client, "vclient", nil, []string{"192.168.50.2/24", "fd50::2/64"}, hostClientIP, hostClientIP6)
	tp.addAddrs(h, vc, "192.168.50.1/24", "fd50::1/64")
	vr := tp.attach(tp.remote, "vremote", nil, []string{"203.0.113.10/24"}, "203.0.113.1", "")
	tp.addAddrs(h, vr, "203.0.113.1/24")
	return tp
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// addAddrs adds addresses without IPv6 duplicate address detection.
func (tp *topology) addAddrs(h *netlink.Handle, l netlink.Link, addrs ...string) {
	tp.t.Helper()
	for _, a := range addrs {
		addr, err := netlink.ParseAddr(a)
		must(tp.t, err)
		addr.Flags = unix.IFA_F_NODAD
		must(tp.t, h.AddrAdd(l, addr))
	}
}

// attach connects ns to the host with a veth: hostName in the host
// (enslaved to master when given), eth0 in ns with addrs and default routes.
func (tp *topology) attach(ns *nstest.NS, hostName string, master netlink.Link, addrs []string, gw4, gw6 string) netlink.Link {
	tp.t.Helper()
	h := tp.host.Handle()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: hostName}, PeerName: "eth0", PeerNamespace: netlink.NsFd(ns.Fd())}
	must(tp.t, h.LinkAdd(veth))
	l, err := h.LinkByName(hostName)
	must(tp.t, err)
	if master != nil {
		must(tp.t, h.LinkSetMaster(l, master))
		// As the bridge plugin's hairpinMode: with br_netfilter, a
		// container reaching itself through a host port is bridged back
		// out of the port it came in on.
		must(tp.t, h.LinkSetHairpin(l, true))
	}
	must(tp.t, h.LinkSetUp(l))
	nh := ns.Handle()
	eth0, err := nh.LinkByName("eth0")
	must(tp.t, err)
	tp.addAddrs(nh, eth0, addrs...)
	must(tp.t, nh.LinkSetUp(eth0))
	for _, gw := range []string{gw4, gw6} {
		if gw != "" {
			must(tp.t, nh.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: net.ParseIP(gw)}))
		}
	}
	return l
}

// serveTCP answers every connection to port in ns with "<name> <peer address>".
func serveTCP(t testing.TB, ns *nstest.NS, name string, port int) {
	t.Helper()
	var ln net.Listener
	ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", fmt.Sprintf("[::]:%d", port))
		return err
	})
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(conn, "%s %s\n", name, conn.RemoteAddr())
			conn.Close()
		}
	}()
}

// serveUDP answers every datagram to port in ns with "<name> <peer address>".
func serveUDP(t testing.TB, ns *nstest.NS, name string, port int) {
	t.Helper()
	var pc net.PacketConn
	ns.Do(func() error {
		var err error
		pc, err = net.ListenPacket("udp", fmt.Sprintf("[::]:%d", port))
		return err
	})
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo([]byte(fmt.Sprintf("%s %s", name, from)), from)
		}
	}()
}

// reply is who answered a connection, and whom they saw.
type reply struct {
	server string
	peer   net.IP
}

func parseReply(s string) (reply, error) {
	name, addr, ok := strings.Cut(strings.TrimSpace(s), " ")
	if !ok {
		return reply{}, fmt.Errorf("malformed reply %q", s)
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return reply{}, err
	}
	ip := net.ParseIP(host)
	if v4 := ip.To4(); v4 != nil {
		ip = v4
	}
	return reply{server: name, peer: ip}, nil
}

// dialTCP connects to addr from ns and returns the server's reply.
func dialTCP(t testing.TB, ns *nstest.NS, addr string) (reply, error) {
	t.Helper()
	var conn net.Conn
	var dialErr error
	ns.Do(func() error {
		conn, dialErr = net.DialTimeout("tcp", addr, 5*time.Second)
		return nil
	})
	if dialErr != nil {
		return reply{}, dialErr
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return reply{}, err
	}
	return parseReply(line)
}

// prevResult is a bridge-like result for a container with the addresses.
func prevResult(netns string, addrs ...string) map[string]any {
	var ips []map[string]any
	for _, a := range addrs {
		ips = append(ips, map[string]any{"interface": 2, "address": a})
	}
	return map[string]any{
		"cniVersion": "1.1.0",
		"interfaces": []map[string]any{{"name": "br0"}, {"name": "vethxyz"}, {"name": "eth0", "sandbox": netns}},
		"ips":        ips,
	}
}

// containerResult is the prevResult of c1 or c2.
func (tp *topology) containerResult(ns *nstest.NS) map[string]any {
	if ns == tp.c1 {
		return prevResult(ns.Path(), "10.88.0.2/24", "fd88::2/64")
	}
	return prevResult(ns.Path(), "10.88.0.3/24", "fd88::3/64")
}

// configJSON builds a configuration: the common keys, mappings (none: no
// runtimeConfig), prevResult (nil: none) and extra keys.
func configJSON(t testing.TB, mappings []map[string]any, prev map[string]any, extra map[string]any) []byte {
	t.Helper()
	keys := map[string]any{}
	if mappings != nil {
		keys["runtimeConfig"] = map[string]any{"portMappings": mappings}
	}
	if prev != nil {
		keys["prevResult"] = prev
	}
	maps.Copy(keys, extra)
	return plugintest.Conf(t, "portmap", "testnet", keys)
}

// add maps ports of container ns (c1 or c2) and returns the result.
func (tp *topology) add(ns *nstest.NS, cid string, mappings []map[string]any, extra map[string]any) *cni.Result {
	tp.t.Helper()
	res, _ := tp.host.MustAdd(plugintest.Call{ContainerID: cid, Netns: ns.Path(), Conf: configJSON(tp.t, mappings, tp.containerResult(ns), extra)})
	return res
}

// elements lists the host's host port elements of cid (on testnet, eth0).
func (tp *topology) elements(cid string) []nft.HostPortElement {
	tp.t.Helper()
	return tp.elementsOf("testnet", cid, "eth0")
}

// elementsOf lists the host's host port elements carrying the attachment's
// comment.
func (tp *topology) elementsOf(network, cid, ifname string) []nft.HostPortElement {
	tp.t.Helper()
	key := nft.Attachment{Network: network, ContainerID: cid, IfName: ifname}.Key()
	var mine []nft.HostPortElement
	tp.host.Do(func() error {
		c, err := nft.Open()
		if err != nil {
			return err
		}
		defer c.Close()
		all, err := c.ListHostPorts()
		for _, e := range all {
			if strings.HasPrefix(e.Comment, key) {
				mine = append(mine, e)
			}
		}
		return err
	})
	return mine
}

// udpConntrack returns the host's UDP conntrack entries to port.
func (tp *topology) udpConntrack(port uint16) []*netlink.ConntrackFlow {
	tp.t.Helper()
	var out []*netlink.ConntrackFlow
	tp.host.Do(func() error {
		h, err := netlink.NewHandle(unix.NETLINK_NETFILTER)
		if err != nil {
			return err
		}
		defer h.Close()
		flows, err := h.ConntrackTableList(netlink.ConntrackTable, unix.AF_INET)
		for _, f := range flows {
			if f.Forward.Protocol == unix.IPPROTO_UDP && f.Forward.DstPort == port {
				out = append(out, f)
			}
		}
		return err
	})
	return out
}
