package nstest

import "testing"

// TestAcceptPeer: a connection over loopback inside one namespace arrives
// from the loopback address, in either family.
func TestAcceptPeer(t *testing.T) {
	for _, tc := range []struct{ network, addr, want string }{
		{"tcp4", "127.0.0.1:8080", "127.0.0.1"},
		{"tcp6", "[::1]:8080", "::1"},
	} {
		t.Run(tc.network, func(t *testing.T) {
			ns := New(t)
			peer := ns.AcceptPeer(tc.network, tc.addr)
			ns.MustDial(tc.network, tc.addr)
			if got := <-peer; got != tc.want {
				t.Errorf("peer %s, want %s", got, tc.want)
			}
		})
	}
}
