package portmap

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/nft"
	"github.com/cnikit/cnikit/internal/nstest"
	"github.com/cnikit/cnikit/internal/plugintest"
	"github.com/cnikit/cnikit/internal/rundir"
	"github.com/cnikit/cnikit/invoke"
)

// TestTCPMappingReachesContainer: one mapping (any address, both families)
// is reachable from everywhere it should be, with masquerade exactly where
// a reply would otherwise not find its way back.
func TestTCPMappingReachesContainer(t *testing.T) {
	tp := newTopology(t)
	serveTCP(t, tp.c1, "c1", 80)
	res := tp.add(tp.c1, "c1", []map[string]any{mapping(8080, 80, "tcp", "")}, nil)
	if len(res.IPs) != 2 || res.Interfaces[2].Name != "eth0" {
		t.Errorf("ADD did not pass prevResult through: %+v", res)
	}
	for _, tc := range []struct {
		name   string
		from   *nstest.NS
		to     string
		peerIs string // the source address the container must see
	}{
		{"client to the host's address", tp.client, hostClientIP + ":8080", clientIP},
		{"client over IPv6", tp.client, "[" + hostClientIP6 + "]:8080", "fd50::2"},
		{"host to its own address", tp.host.NS, hostClientIP + ":8080", hostClientIP},
		{"host to 127.0.0.1 (masqueraded)", tp.host.NS, "127.0.0.1:8080", bridgeIP},
		{"container to itself through the bridge address (hairpin)", tp.c1, bridgeIP + ":8080", bridgeIP},
		{"neighbour through another host address (hairpin)", tp.c2, hostClientIP + ":8080", bridgeIP},
		{"neighbour over IPv6 (hairpin)", tp.c2, "[" + bridgeIP6 + "]:8080", bridgeIP6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := dialTCP(t, tc.from, tc.to)
			if err != nil {
				t.Fatalf("connecting to %s: %v", tc.to, err)
			}
			if r.server != "c1" || !r.peer.Equal(net.ParseIP(tc.peerIs)) {
				t.Errorf("got %s seeing %s, want c1 seeing %s", r.server, r.peer, tc.peerIs)
			}
		})
	}
	// ::1 is left to the host (nothing listens there): IPv6 has no
	// route_localnet, and a reply to ::1 arriving on br0 would be dropped.
	if _, err := dialTCP(t, tp.host.NS, "[::1]:8080"); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("host to [::1]:8080: got %v, want connection refused", err)
	}
	// Connections from 127.0.0.1 cross br0 thanks to route_localnet, which
	// comes with the martian guard.
	if v := plugintest.Sysctl(t, tp.host.NS, "net/ipv4/conf/br0/route_localnet"); v != "1" {
		t.Errorf("route_localnet on br0 is %q", v)
	}
	out := tp.host.MustRun("nft", "list", "chain", "inet", "cnikit", "localnet-guard-in")
	if !strings.Contains(out, `iif != "lo" ip daddr 127.0.0.0/8 drop`) {
		t.Errorf("no martian guard:\n%s", out)
	}
	if n := len(tp.elements("c1")); n != 4 {
		t.Errorf("c1 has %d elements, want 4 (dnat and masquerade for each family)", n)
	}
}

// TestMartianGuard: with route_localnet on br0, a neighbour still cannot
// send to the host's 127.0.0.0/8 services through the bridge
// (CVE-2020-8558): a datagram is enough to reach a UDP service.
func TestMartianGuard(t *testing.T) {
	tp := newTopology(t)
	tp.add(tp.c1, "c1", []map[string]any{mapping(8080, 80, "tcp", "")}, nil)
	if v := plugintest.Sysctl(t, tp.host.NS, "net/ipv4/conf/br0/route_localnet"); v != "1" {
		t.Fatalf("route_localnet on br0 is %q", v)
	}
	var service net.PacketConn
	tp.host.Do(func() error {
		var err error
		service, err = net.ListenPacket("udp4", "0.0.0.0:9999")
		return err
	})
	defer service.Close()
	// c2 sends to 127.0.0.2 through the host instead of its own lo.
	tp.c2.MustRun("ip", "route", "del", "local", "127.0.0.0/8", "dev", "lo", "table", "local")
	tp.c2.MustRun("ip", "route", "add", "127.0.0.2/32", "via", bridgeIP)
	tp.c2.Do(func() error {
		conn, err := net.Dial("udp4", "127.0.0.2:9999")
		if err != nil {
			return err
		}
		defer conn.Close()
		_, err = conn.Write([]byte("from c2"))
		return err
	})
	// A datagram from the host itself follows: the service must see it
	// first, proving c2's never arrived.
	tp.host.Do(func() error {
		conn, err := net.Dial("udp4", "127.0.0.2:9999")
		if err != nil {
			return err
		}
		defer conn.Close()
		_, err = conn.Write([]byte("from the host"))
		return err
	})
	service.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 100)
	n, _, err := service.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "from the host" {
		t.Errorf("the host's loopback service first received %q (%v), want only the host's datagram", buf[:n], err)
	}
}

// TestHostIP: a mapping for a local host IP applies to that address only; one
// for an address that is not the host's never captures forwarded traffic
// (CVE-2025-67499).
func TestHostIP(t *testing.T) {
	tp := newTopology(t)
	serveTCP(t, tp.c1, "c1", 80)
	serveTCP(t, tp.remote, "remote", 8081)
	tp.add(tp.c1, "c1", []map[string]any{
		mapping(8081, 80, "tcp", remoteIP),     // not an address of the host
		mapping(8082, 80, "tcp", hostClientIP), // a local address
	}, nil)

	r, err := dialTCP(t, tp.client, remoteIP+":8081")
	if err != nil || r.server != "remote" {
		t.Errorf("client to %s:8081 through the host: got %+v, %v; want the real destination", remoteIP, r, err)
	}
	if r, err := dialTCP(t, tp.client, hostClientIP+":8082"); err != nil || r.server != "c1" {
		t.Errorf("client to the mapped host IP: got %+v, %v", r, err)
	}
	// Another address of the host is not mapped: nothing listens there.
	if _, err := dialTCP(t, tp.client, bridgeIP+":8082"); err == nil {
		t.Error("a mapping for one host IP captured another host address")
	}
}

// TestUDPConntrackFlushed: a UDP flow that reached the host before the
// mapping existed would keep its conntrack entry (no DNAT) for as long as
// the client keeps sending; ADD flushes it, and so does DEL.
func TestUDPConntrackFlushed(t *testing.T) {
	tp := newTopology(t)
	serveUDP(t, tp.c1, "c1", 53)
	var pc net.PacketConn
	tp.client.Do(func() error {
		var err error
		pc, err = net.ListenPacket("udp4", clientIP+":40000")
		return err
	})
	defer pc.Close()
	target := &net.UDPAddr{IP: net.ParseIP(hostClientIP), Port: 5353}
	send := func() (string, error) {
		if _, err := pc.WriteTo([]byte("ping"), target); err != nil {
			return "", err
		}
		pc.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 100)
		n, _, err := pc.ReadFrom(buf)
		return string(buf[:n]), err
	}
	// Another container's mapping makes the host track connections, as
	// any host with a firewall does.
	tp.add(tp.c2, "c2", []map[string]any{mapping(9999, 99, "tcp", "")}, nil)
	send() // nothing listens yet: the entry is made, without DNAT
	if len(tp.udpConntrack(5353)) == 0 {
		t.Fatal("no conntrack entry for the first datagram")
	}

	tp.add(tp.c1, "c1", []map[string]any{mapping(5353, 53, "udp", "")}, nil)
	if n := len(tp.udpConntrack(5353)); n != 0 {
		t.Errorf("%d stale UDP conntrack entries survived ADD", n)
	}
	got, err := send()
	if err != nil || !strings.HasPrefix(got, "c1 ") {
		t.Fatalf("the same client flow after ADD: got %q, %v", got, err)
	}
	if len(tp.udpConntrack(5353)) == 0 {
		t.Fatal("no conntrack entry for the mapped flow")
	}
	tp.host.MustInvoke(plugintest.Call{Verb: "DEL", ContainerID: "c1", Conf: configJSON(t, nil, nil, nil)})
	if n := len(tp.udpConntrack(5353)); n != 0 {
		t.Errorf("%d UDP conntrack entries of the mapping survived DEL", n)
	}
}

// TestDelNeedsNothingResent: DEL without prevResult, portMappings or netns
// removes everything ADD made, and is idempotent.
func TestDelNeedsNothingResent(t *testing.T) {
	tp := newTopology(t)
	serveTCP(t, tp.c1, "c1", 80)
	tp.add(tp.c1, "c1", []map[string]any{mapping(8080, 80, "tcp", ""), mapping(5353, 53, "udp", hostClientIP)}, nil)
	if n := len(tp.elements("c1")); n != 6 {
		t.Fatalf("c1 has %d elements after ADD, want 6", n)
	}
	for i := 0; i < 2; i++ {
		tp.host.MustInvoke(plugintest.Call{Verb: "DEL", ContainerID: "c1", Conf: configJSON(t, nil, nil, nil)})
		if n := len(tp.elements("c1")); n != 0 {
			t.Errorf("DEL %d left %d elements", i+1, n)
		}
		if _, err := os.Stat(recordPath(attachmentOf("c1"))); !os.IsNotExist(err) {
			t.Errorf("DEL %d left the record: %v", i+1, err)
		}
		if _, err := dialTCP(t, tp.client, hostClientIP+":8080"); err == nil {
			t.Errorf("the port is still mapped after DEL %d", i+1)
		}
	}
}

// TestDelWithoutRecord: records lost (or an attachment made before they
// existed): a DEL with the mappings resent finds the elements by comment; a
// DEL with nothing resent does nothing and succeeds.
func TestDelWithoutRecord(t *testing.T) {
	tp := newTopology(t)
	mappings := []map[string]any{mapping(8080, 80, "tcp", "")}
	tp.add(tp.c1, "c1", mappings, nil)
	must(t, os.RemoveAll(stateDir))
	tp.host.MustInvoke(plugintest.Call{Verb: "DEL", ContainerID: "c1", Conf: configJSON(t, nil, nil, nil)})
	if n := len(tp.elements("c1")); n != 4 {
		t.Fatalf("a DEL with nothing to go on removed %d elements", 4-n)
	}
	tp.host.MustInvoke(plugintest.Call{Verb: "DEL", ContainerID: "c1", Conf: configJSON(t, mappings, nil, nil)})
	if n := len(tp.elements("c1")); n != 0 {
		t.Errorf("DEL with the mappings resent left %d elements", n)
	}
}

func attachmentOf(cid string) nft.Attachment {
	return nft.Attachment{Network: "testnet", ContainerID: cid, IfName: "eth0"}
}

// TestNoMappings: without mappings ADD passes prevResult through and creates
// nothing, and DEL touches nothing.
func TestNoMappings(t *testing.T) {
	tp := newTopology(t)
	prev := tp.containerResult(tp.c1)
	for _, mappings := range [][]map[string]any{nil, {}} {
		out := tp.host.MustInvoke(plugintest.Call{Verb: "ADD", Netns: tp.c1.Path(), Conf: configJSON(t, mappings, prev, nil)})
		want, _ := json.Marshal(prev)
		res, err := cni.ParseResult(out, "1.1.0")
		must(t, err)
		wantRes, err := cni.ParseResult(want, "1.1.0")
		must(t, err)
		if a, b := resultJSON(t, res), resultJSON(t, wantRes); a != b {
			t.Errorf("ADD changed prevResult:\n got %s\nwant %s", a, b)
		}
	}
	tp.host.MustInvoke(plugintest.Call{Verb: "DEL", Conf: configJSON(t, nil, nil, nil)})
	if out := tp.host.MustRun("nft", "list", "tables"); strings.TrimSpace(out) != "" {
		t.Errorf("nftables touched without mappings:\n%s", out)
	}
	if _, err := os.Stat(stateDir + "/testnet"); !os.IsNotExist(err) {
		t.Errorf("a record was written without mappings: %v", err)
	}
}

func resultJSON(t testing.TB, r *cni.Result) string {
	data, err := r.Marshal("1.1.0")
	must(t, err)
	return string(data)
}

// TestSamePortTwice: a second container asking for a mapped host port is
// refused with an error naming the holder; the first keeps its mapping.
func TestSamePortTwice(t *testing.T) {
	tp := newTopology(t)
	serveTCP(t, tp.c1, "c1", 80)
	tp.add(tp.c1, "c1", []map[string]any{mapping(8080, 80, "tcp", "")}, nil)
	_, cerr := tp.host.Invoke(plugintest.Call{Verb: "ADD", ContainerID: "c2", Netns: tp.c2.Path(),
		Conf: configJSON(t, []map[string]any{mapping(9090, 80, "tcp", ""), mapping(8080, 80, "tcp", "")}, tp.containerResult(tp.c2), nil)})
	if cerr == nil || cerr.Code != cni.CodeInvalidNetworkConfig ||
		!strings.Contains(cerr.Msg, "hostPort 8080/tcp (any address) is already mapped by another container (net: testnet, if: eth0, id: c1)") {
		t.Fatalf("second ADD of port 8080: got %v", cerr)
	}
	if r, err := dialTCP(t, tp.client, hostClientIP+":8080"); err != nil || r.server != "c1" {
		t.Errorf("c1's mapping after the refused ADD: %+v, %v", r, err)
	}
	if n := len(tp.elements("c2")); n != 0 {
		t.Errorf("the refused ADD left %d elements", n)
	}
	if _, err := os.Stat(recordPath(attachmentOf("c2"))); !os.IsNotExist(err) {
		t.Errorf("the refused ADD left a record: %v", err)
	}
	// After c1's DEL the port is free.
	tp.host.MustInvoke(plugintest.Call{Verb: "DEL", ContainerID: "c1", Conf: configJSON(t, nil, nil, nil)})
	tp.add(tp.c2, "c2", []map[string]any{mapping(8080, 80, "tcp", "")}, nil)
}

// TestReAdd: a second ADD of the same attachment replaces the first's
// mappings.
func TestReAdd(t *testing.T) {
	tp := newTopology(t)
	serveTCP(t, tp.c1, "c1", 80)
	tp.add(tp.c1, "c1", []map[string]any{mapping(8080, 80, "tcp", "")}, nil)
	tp.add(tp.c1, "c1", []map[string]any{mapping(8081, 80, "tcp", "")}, map[string]any{"snat": false})
	if _, err := dialTCP(t, tp.client, hostClientIP+":8080"); err == nil {
		t.Error("the first ADD's mapping survived the second")
	}
	if r, err := dialTCP(t, tp.client, hostClientIP+":8081"); err != nil || r.server != "c1" {
		t.Errorf("the second ADD's mapping: %+v, %v", r, err)
	}
	if n := len(tp.elements("c1")); n != 2 {
		t.Errorf("c1 has %d elements, want 2 (no masquerade with snat false)", n)
	}
}

// TestSNATOptions: the source a container sees, per snat and masqAll, for a
// client outside and for a neighbour on the bridge (hairpin).
func TestSNATOptions(t *testing.T) {
	for _, tc := range []struct {
		name         string
		extra        map[string]any
		clientSeen   string
		neighbourSee string // "" means: not masqueraded (seen as itself, or not working)
	}{
		{"default", nil, clientIP, bridgeIP},
		{"masqAll", map[string]any{"masqAll": true}, bridgeIP, bridgeIP},
		{"snat false", map[string]any{"snat": false}, clientIP, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp := newTopology(t)
			serveTCP(t, tp.c1, "c1", 80)
			tp.add(tp.c1, "c1", []map[string]any{mapping(8080, 80, "tcp", "")}, tc.extra)
			r, err := dialTCP(t, tp.client, hostClientIP+":8080")
			if err != nil || r.server != "c1" || !r.peer.Equal(net.ParseIP(tc.clientSeen)) {
				t.Errorf("client: got %+v, %v; want c1 seeing %s", r, err, tc.clientSeen)
			}
			r, err = dialTCP(t, tp.c2, bridgeIP+":8080")
			switch {
			case tc.neighbourSee != "" && (err != nil || !r.peer.Equal(net.ParseIP(tc.neighbourSee))):
				t.Errorf("hairpin from c2: got %+v, %v; want c1 seeing %s", r, err, tc.neighbourSee)
			case tc.neighbourSee == "" && err == nil && !r.peer.Equal(net.ParseIP(c2IP)):
				// Without masquerade the reply goes straight to c2; it
				// only works where br_netfilter undoes the DNAT.
				t.Errorf("hairpin from c2 without snat: c1 saw %s, want %s", r.peer, c2IP)
			}
		})
	}
}

// TestConditionsApply: conditions restrict who reaches the mapping, per
// attachment.
func TestConditionsApply(t *testing.T) {
	for _, tc := range []struct {
		name       string
		conditions []string
		clientOK   bool
		hostOK     bool // from the host to 127.0.0.1
	}{
		{"client subnet allowed", []string{"-s", "192.168.50.0/24"}, true, false},
		{"client excluded", []string{"!", "-s", clientIP}, false, true},
		{"loopback destinations excluded", []string{"ip daddr != 127.0.0.0/8"}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp := newTopology(t)
			serveTCP(t, tp.c1, "c1", 80)
			tp.add(tp.c1, "c1", []map[string]any{mapping(8080, 80, "tcp", "")}, map[string]any{"conditionsV4": tc.conditions})
			_, err := dialTCP(t, tp.client, hostClientIP+":8080")
			if (err == nil) != tc.clientOK {
				t.Errorf("client: %v, want reachable=%v", err, tc.clientOK)
			}
			_, err = dialTCP(t, tp.host.NS, "127.0.0.1:8080")
			if (err == nil) != tc.hostOK {
				t.Errorf("host to 127.0.0.1: %v, want reachable=%v", err, tc.hostOK)
			}
		})
	}
}

// TestCheck: CHECK passes after ADD and fails once an element is gone.
func TestCheck(t *testing.T) {
	tp := newTopology(t)
	mappings := []map[string]any{mapping(8080, 80, "tcp", "")}
	tp.add(tp.c1, "c1", mappings, nil)
	checkConf := configJSON(t, mappings, tp.containerResult(tp.c1), nil)
	tp.host.MustInvoke(plugintest.Call{Verb: "CHECK", Netns: tp.c1.Path(), Conf: checkConf})
	tp.host.MustRun("nft", "delete", "element", "inet", "cnikit", "hostports-any4", "{ tcp . 8080 }")
	if _, cerr := tp.host.Invoke(plugintest.Call{Verb: "CHECK", Netns: tp.c1.Path(), Conf: checkConf}); cerr == nil || !strings.Contains(cerr.Msg, "hostports-any4") {
		t.Errorf("CHECK with an element gone: %v", cerr)
	}
	if _, cerr := tp.host.Invoke(plugintest.Call{Verb: "CHECK", Netns: tp.c1.Path(), Conf: configJSON(t, mappings, nil, nil)}); cerr == nil || cerr.Code != cni.CodeInvalidNetworkConfig {
		t.Errorf("CHECK without prevResult: %v", cerr)
	}
}

// TestGC: GC removes the elements and records of the network's attachments
// that are not valid any more, and keeps the rest.
func TestGC(t *testing.T) {
	tp := newTopology(t)
	serveTCP(t, tp.c1, "c1", 80)
	tp.add(tp.c1, "c1", []map[string]any{mapping(8080, 80, "tcp", "")}, nil)
	tp.add(tp.c2, "c2", []map[string]any{mapping(8081, 80, "tcp", ""), mapping(5353, 53, "udp", "")}, nil)
	gcConf := configJSON(t, nil, nil, map[string]any{"cni.dev/valid-attachments": []map[string]string{{"containerID": "c1", "ifname": "eth0"}}})
	tp.host.MustInvoke(plugintest.Call{Verb: "GC", Conf: gcConf})
	if n := len(tp.elements("c2")); n != 0 {
		t.Errorf("GC left %d elements of c2", n)
	}
	if _, err := os.Stat(recordPath(attachmentOf("c2"))); !os.IsNotExist(err) {
		t.Errorf("GC left c2's record: %v", err)
	}
	if n := len(tp.elements("c1")); n != 4 {
		t.Errorf("GC removed elements of c1: %d left", n)
	}
	if r, err := dialTCP(t, tp.client, hostClientIP+":8080"); err != nil || r.server != "c1" {
		t.Errorf("c1 after GC: %+v, %v", r, err)
	}
	// GC of another network removes nothing.
	other := configJSON(t, nil, nil, map[string]any{"name": "othernet", "cni.dev/valid-attachments": []map[string]string{}})
	tp.host.MustInvoke(plugintest.Call{Verb: "GC", Conf: other})
	if n := len(tp.elements("c1")); n != 4 {
		t.Errorf("GC of another network removed elements of c1: %d left", n)
	}
}

// TestStatus: STATUS succeeds where nftables works, and reports a bad
// configuration.
func TestStatus(t *testing.T) {
	tp := newTopology(t)
	tp.host.MustInvoke(plugintest.Call{Verb: "STATUS", Conf: configJSON(t, nil, nil, nil)})
	if _, cerr := tp.host.Invoke(plugintest.Call{Verb: "STATUS", Conf: configJSON(t, nil, nil, map[string]any{"backend": "bpf"})}); cerr == nil || cerr.Code != cni.CodeInvalidNetworkConfig {
		t.Errorf("STATUS with a bad backend: %v", cerr)
	}
}

// TestBadInputChangesNothing: refused requests leave no trace.
func TestBadInputChangesNothing(t *testing.T) {
	tp := newTopology(t)
	prev := tp.containerResult(tp.c1)
	for _, tc := range []struct {
		name string
		conf []byte
		code cni.Code
		msg  string
	}{
		{"no prevResult", configJSON(t, []map[string]any{mapping(80, 80, "tcp", "")}, nil, nil), cni.CodeInvalidNetworkConfig, "prevResult is missing"},
		{"port 0", configJSON(t, []map[string]any{mapping(0, 80, "tcp", "")}, prev, nil), cni.CodeInvalidNetworkConfig, "hostPort 0 is out of range"},
		{"port 70000", configJSON(t, []map[string]any{mapping(70000, 80, "tcp", "")}, prev, nil), cni.CodeInvalidNetworkConfig, "hostPort 70000"},
		{"bad protocol", configJSON(t, []map[string]any{mapping(80, 80, "gre", "")}, prev, nil), cni.CodeInvalidNetworkConfig, `protocol "gre"`},
		{"bad host IP", configJSON(t, []map[string]any{mapping(80, 80, "tcp", "localhost")}, prev, nil), cni.CodeInvalidNetworkConfig, `hostIP "localhost"`},
		{"port as a string", []byte(`{"cniVersion":"1.1.0","name":"testnet","type":"portmap","runtimeConfig":{"portMappings":[{"hostPort":"80","containerPort":80}]}}`),
			cni.CodeDecodingFailure, "decoding configuration"},
		{"unsupported condition", configJSON(t, []map[string]any{mapping(80, 80, "tcp", "")}, prev, map[string]any{"conditionsV4": []string{"-i", "eth0"}}),
			cni.CodeUnsupportedField, `conditionsV4: "-i"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, cerr := tp.host.Invoke(plugintest.Call{Verb: "ADD", Netns: tp.c1.Path(), Conf: tc.conf})
			if cerr == nil || cerr.Code != tc.code || !strings.Contains(cerr.Msg, tc.msg) {
				t.Errorf("got %v, want code %d with %q", cerr, tc.code, tc.msg)
			}
		})
	}
	if out := tp.host.MustRun("nft", "list", "tables"); strings.TrimSpace(out) != "" {
		t.Errorf("refused requests touched nftables:\n%s", out)
	}
	if _, err := os.Stat(stateDir + "/testnet"); !os.IsNotExist(err) {
		t.Errorf("refused requests wrote records: %v", err)
	}
}

// TestDelRemovesReferenceRules: on a host upgraded from the reference
// portmap (nftables backend), DEL of a container cnikit has no record of
// removes the reference's rules for that container, and only those.
func TestDelRemovesReferenceRules(t *testing.T) {
	tp := newTopology(t)
	// The reference's layout, as its nftables backend writes it.
	for _, cmd := range [][]string{
		{"add", "table", "ip", "cni_hostport", "{ comment \"CNI portmap plugin\"; }"},
		{"add", "chain", "ip", "cni_hostport", "hostports"},
		{"add", "chain", "ip", "cni_hostport", "hostip_hostports"},
		{"add", "chain", "ip", "cni_hostport", "masquerading", "{ type nat hook postrouting priority srcnat; }"},
		{"add", "rule", "ip", "cni_hostport", "hostports", "tcp", "dport", "8080", "dnat", "to", "10.88.0.2:80", "comment", "c1"},
		{"add", "rule", "ip", "cni_hostport", "hostip_hostports", "ip", "daddr", "192.168.50.1", "tcp", "dport", "8081", "dnat", "to", "10.88.0.2:80", "comment", "c1"},
		{"add", "rule", "ip", "cni_hostport", "masquerading", "ip", "saddr", "10.88.0.2", "ip", "daddr", "10.88.0.2", "masquerade", "comment", "c1"},
		{"add", "rule", "ip", "cni_hostport", "hostports", "tcp", "dport", "9090", "dnat", "to", "10.88.0.3:80", "comment", "c2"},
	} {
		tp.host.MustRun("nft", cmd...)
	}
	tp.host.MustInvoke(plugintest.Call{Verb: "DEL", ContainerID: "c1", Conf: configJSON(t, []map[string]any{mapping(8080, 80, "tcp", "")}, nil, nil)})
	out := tp.host.MustRun("nft", "list", "table", "ip", "cni_hostport")
	if strings.Contains(out, `comment "c1"`) || !strings.Contains(out, `comment "c2"`) {
		t.Errorf("after DEL of c1:\n%s", out)
	}
}

// TestConcurrentAdds: ADDs of different containers run at once all apply;
// of two racing for the same host port, exactly one gets it.
func TestConcurrentAdds(t *testing.T) {
	tp := newTopology(t)
	const n = 12
	errs := make(chan *cni.Error, n+2)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			prev := prevResult(tp.c1.Path(), fmt.Sprintf("10.88.0.%d/24", 100+i))
			_, cerr := tp.host.Invoke(plugintest.Call{Verb: "ADD", ContainerID: fmt.Sprintf("ctr%d", i), Netns: tp.c1.Path(),
				Conf: configJSON(t, []map[string]any{mapping(10000+i, 80, "tcp", "")}, prev, nil)})
			errs <- cerr
		}(i)
	}
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			prev := prevResult(tp.c1.Path(), fmt.Sprintf("10.88.0.%d/24", 200+i))
			_, cerr := tp.host.Invoke(plugintest.Call{Verb: "ADD", ContainerID: fmt.Sprintf("racer%d", i), Netns: tp.c1.Path(),
				Conf: configJSON(t, []map[string]any{mapping(20000, 80, "tcp", "")}, prev, nil)})
			errs <- cerr
		}(i)
	}
	wg.Wait()
	close(errs)
	refused := 0
	for cerr := range errs {
		if cerr != nil {
			refused++
			if !strings.Contains(cerr.Msg, "hostPort 20000/tcp") {
				t.Errorf("unexpected failure: %v", cerr)
			}
		}
	}
	if refused != 1 {
		t.Errorf("%d ADDs were refused, want exactly 1 (a racer)", refused)
	}
	for i := 0; i < n; i++ {
		if got := len(tp.elements(fmt.Sprintf("ctr%d", i))); got != 2 {
			t.Errorf("ctr%d has %d elements, want 2", i, got)
		}
	}
	if a, b := len(tp.elements("racer0")), len(tp.elements("racer1")); a+b != 2 || a*b != 0 {
		t.Errorf("racers hold %d and %d elements, want 2 and 0", a, b)
	}
}

// TestStatusWithoutNftables: a plugin process that may not use nftables
// (here: running as nobody, without CAP_NET_ADMIN) reports code 50.
func TestStatusWithoutNftables(t *testing.T) {
	tp := newTopology(t)
	bin := filepath.Join(plugintest.BinDir(t), "portmap")
	var out []byte
	var runErr error
	tp.host.Do(func() error {
		cmd := exec.Command(bin)
		cmd.Env = []string{"CNI_COMMAND=STATUS", "CNI_PATH=/nonexistent"}
		cmd.Stdin = bytes.NewReader(configJSON(t, nil, nil, nil))
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, runErr = cmd.Output()
		return nil
	})
	var cerr cni.Error
	if runErr == nil || json.Unmarshal(out, &cerr) != nil || cerr.Code != cni.CodePluginNotAvailable {
		t.Errorf("STATUS as nobody: %v, %s; want code 50", runErr, out)
	}
}

// TestBinaryStateDir: the plugin binary, executed as a runtime does, keeps its
// records under $CNIKIT_STATE_DIR/portmap.
func TestBinaryStateDir(t *testing.T) {
	tp := newTopology(t)
	serveTCP(t, tp.c1, "c1", 80)
	dir := t.TempDir()
	bin := filepath.Join(plugintest.BinDir(t), "portmap")
	exec := func(verb string, conf []byte) {
		env := invoke.Env{Command: verb, ContainerID: "bin1", Netns: tp.c1.Path(), IfName: "eth0", Path: "/nonexistent"}
		var err error
		tp.host.Do(func() error {
			_, err = invoke.Exec(context.Background(), bin, conf, append(env.Environ(nil), rundir.Env+"="+dir), nil)
			return nil
		})
		if err != nil {
			t.Fatalf("%s: %v", verb, err)
		}
	}
	exec("ADD", configJSON(t, []map[string]any{mapping(8080, 80, "tcp", "")}, tp.containerResult(tp.c1), nil))
	if _, err := os.Stat(filepath.Join(dir, "portmap", "testnet", "bin1_eth0")); err != nil {
		t.Errorf("no record in %s: %v", dir, err)
	}
	if r, err := dialTCP(t, tp.client, hostClientIP+":8080"); err != nil || r.server != "c1" {
		t.Errorf("mapping made by the binary: %+v, %v", r, err)
	}
	exec("DEL", configJSON(t, nil, nil, nil))
	if n := len(tp.elementsOf("testnet", "bin1", "eth0")); n != 0 {
		t.Errorf("DEL by the binary left %d elements", n)
	}
}
