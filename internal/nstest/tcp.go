package nstest

import (
	"fmt"
	"net"
	"time"
)

// AcceptPeer listens on addr (network "tcp", "tcp4" or "tcp6") inside the
// namespace, accepts one connection and sends the address it came from, or
// the accept error's text, on the channel: what a masquerade (or none) made
// of a connection's source. The listener is closed when the test ends.
func (n *NS) AcceptPeer(network, addr string) <-chan string {
	n.t.Helper()
	var ln net.Listener
	n.Do(func() error {
		var err error
		ln, err = net.Listen(network, addr)
		return err
	})
	n.t.Cleanup(func() { ln.Close() })
	peer := make(chan string, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			peer <- err.Error()
			return
		}
		peer <- conn.RemoteAddr().(*net.TCPAddr).IP.String()
		conn.Close()
	}()
	return peer
}

// MustDial connects to addr from inside the namespace and closes the
// connection; the test fails when it cannot connect within 5 s.
func (n *NS) MustDial(network, addr string) {
	n.t.Helper()
	n.Do(func() error {
		conn, err := net.DialTimeout(network, addr, 5*time.Second)
		if err != nil {
			return fmt.Errorf("connecting to %s: %w", addr, err)
		}
		return conn.Close()
	})
}
