package portmap

import (
	"fmt"
	"net"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cnikit/cnikit/internal/nft"
	"github.com/cnikit/cnikit/internal/nstest"
	"github.com/cnikit/cnikit/internal/plugintest"
)

// BenchmarkAddDel measures one ADD and one DEL of a container with a TCP
// mapping, and with a TCP and a UDP one (whose conntrack entries are
// flushed), run in-process in the host namespace, with no other
// attachment and with 1000 others already mapped: the two must cost the
// same, since neither verb lists anything.
func BenchmarkAddDel(b *testing.B) {
	for _, bc := range []struct {
		existing int
		mappings []map[string]any
		name     string
	}{
		{0, []map[string]any{mapping(8080, 80, "tcp", "")}, "tcp"},
		{1000, []map[string]any{mapping(8080, 80, "tcp", "")}, "tcp"},
		{0, []map[string]any{mapping(8080, 80, "tcp", ""), mapping(5353, 53, "udp", "")}, "tcp+udp"},
		{1000, []map[string]any{mapping(8080, 80, "tcp", ""), mapping(5353, 53, "udp", "")}, "tcp+udp"},
	} {
		b.Run(fmt.Sprintf("%s/existing=%d", bc.name, bc.existing), func(b *testing.B) {
			tp := newTopology(b)
			fillOthers(b, tp.host.NS, bc.existing)
			add := configJSON(b, bc.mappings, tp.containerResult(tp.c1), nil)
			del := configJSON(b, nil, nil, nil)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, cerr := tp.host.Invoke(plugintest.Call{Verb: "ADD", ContainerID: "bench", Netns: tp.c1.Path(), Conf: add}); cerr != nil {
					b.Fatal(cerr)
				}
				if _, cerr := tp.host.Invoke(plugintest.Call{Verb: "DEL", ContainerID: "bench", Conf: del}); cerr != nil {
					b.Fatal(cerr)
				}
			}
		})
	}
}

// fillOthers maps one port for each of n other attachments of the network.
func fillOthers(b *testing.B, host *nstest.NS, n int) {
	b.Helper()
	host.Do(func() error {
		c, err := nft.Open()
		if err != nil {
			return err
		}
		defer c.Close()
		for i := 0; i < n; i++ {
			a := nft.Attachment{Network: "testnet", ContainerID: fmt.Sprintf("other%d", i), IfName: "eth0"}
			ip := net.IPv4(10, 89, byte(i>>8), byte(i)).To4()
			p := nft.HostPort{Protocol: unix.IPPROTO_TCP, Port: uint16(20000 + i), ContainerPort: 80,
				Container: net.IPNet{IP: ip, Mask: net.CIDRMask(16, 32)}, SNAT: nft.SNATHairpin}
			if err := c.AddHostPorts(a, []nft.HostPort{p}); err != nil {
				return err
			}
			if i%20 == 0 { // the first batch writes the base
				if err := c.Flush(); err != nil {
					return err
				}
			}
		}
		return c.Flush()
	})
}

// BenchmarkReferenceAddDel is the same work done by the reference portmap
// binary (iptables backend, one process per verb), for comparison. It runs
// in the throw-away host namespace; DEL needs the mappings resent.
func BenchmarkReferenceAddDel(b *testing.B) {
	plugintest.RequireReference(b)
	tp := newTopology(b)
	mappings := []map[string]any{mapping(8080, 80, "tcp", "")}
	prev := tp.containerResult(tp.c1)
	prev["cniVersion"] = "1.0.0" // the newest the reference v1.1.1 knows
	add := configJSON(b, mappings, prev, map[string]any{"cniVersion": "1.0.0"})
	del := add
	bin := filepath.Join(plugintest.ReferenceDir, "portmap")
	run := func(verb string, stdin []byte) {
		tp.host.MustExec(bin, plugintest.Call{Verb: verb, ContainerID: "bench", Netns: tp.c1.Path(), Conf: stdin})
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		run("ADD", add)
		run("DEL", del)
	}
}
