package bandwidth

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/cnikit/cnikit/internal/nstest"
	"github.com/cnikit/cnikit/internal/plugintest"
)

// transfer sends n bytes over TCP from a sender in the namespace from to a
// receiver listening on addr in the namespace to, and returns the goodput
// the receiver saw, in bits per second: the bytes after its first read over
// the time from that read to the end of the stream (so connection set-up is
// not counted).
func transfer(t *testing.T, from, to *nstest.NS, addr string, n int) float64 {
	t.Helper()
	var ln net.Listener
	to.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", net.JoinHostPort(addr, "0"))
		return err
	})
	defer ln.Close()
	type measured struct {
		bytes   int64
		elapsed time.Duration
		err     error
	}
	done := make(chan measured, 1)
	go func() {
		// The socket belongs to its namespace whatever thread reads it.
		c, err := ln.Accept()
		if err != nil {
			done <- measured{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(60 * time.Second))
		buf := make([]byte, 256<<10)
		var first time.Time
		var total int64
		for {
			k, err := c.Read(buf)
			if k > 0 {
				if first.IsZero() {
					first = time.Now()
				} else {
					total += int64(k)
				}
			}
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				done <- measured{err: err}
				return
			}
		}
		done <- measured{bytes: total, elapsed: time.Since(first)}
	}()
	var conn net.Conn
	from.Do(func() error {
		var err error
		conn, err = net.Dial("tcp", ln.Addr().String())
		return err
	})
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := conn.Write(make([]byte, n)); err != nil {
		t.Fatalf("sending: %v", err)
	}
	conn.Close()
	m := <-done
	if m.err != nil {
		t.Fatalf("receiving: %v", m.err)
	}
	if m.elapsed <= 0 {
		t.Fatalf("received %d bytes in no time", m.bytes)
	}
	return float64(m.bytes) * 8 / m.elapsed.Seconds()
}

// TestShapingMeasured: a TCP transfer to the container is held to
// ingressRate, one from the container to egressRate, within ±20% (the
// goodput is about 4% under the rate: TBF counts Ethernet, IP and TCP
// headers). Each transfer lasts about two seconds. This checks the shaping
// itself; the plugin's own speed is for the benchmarks.
func TestShapingMeasured(t *testing.T) {
	if testing.Short() {
		t.Skip("transfers take seconds")
	}
	const (
		ingressRate = 16_000_000
		egressRate  = 12_000_000
		burst       = 1_000_000
	)
	e := newEnv(t)
	// Unshaped, the veth is far faster than either limit: a measurement
	// near the limit below cannot be a coincidence.
	if free := transfer(t, e.host.NS, e.cont, contAddr, 4<<20); free < 3*ingressRate {
		t.Fatalf("unshaped transfer ran at only %.1f Mbit/s", free/1e6)
	}
	e.host.MustInvoke(plugintest.Call{Verb: "ADD", Conf: e.conf("bwnet", map[string]any{
		"ingressRate": ingressRate, "ingressBurst": burst, "egressRate": egressRate, "egressBurst": burst}), Netns: e.cont.Path()})

	cases := []struct {
		name     string
		from, to *nstest.NS
		addr     string
		rate     float64
	}{
		{"ingress: host to container", e.host.NS, e.cont, contAddr, ingressRate},
		{"egress: container to host", e.cont, e.host.NS, hostAddr, egressRate},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := transfer(t, tc.from, tc.to, tc.addr, int(tc.rate/8*2))
			t.Logf("%.2f Mbit/s, limit %.0f Mbit/s", got/1e6, tc.rate/1e6)
			if got < 0.8*tc.rate || got > 1.2*tc.rate {
				t.Errorf("measured %.2f Mbit/s, want %.0f Mbit/s ±20%%", got/1e6, tc.rate/1e6)
			}
		})
	}
}
