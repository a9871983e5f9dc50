package link

import (
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/cnikit/cnikit/internal/nstest"
)

// WaitOperUp returns once the link comes up (woken by the kernel's
// notification, whenever the peer is set up), and times out with the state in
// the error when it never does.
func TestWaitOperUp(t *testing.T) {
	cases := []struct {
		name      string
		peerUp    time.Duration // <0: never
		wantError string
	}{
		{name: "already up", peerUp: 0},
		{name: "comes up later", peerUp: 50 * time.Millisecond},
		{name: "never comes up", peerUp: -1, wantError: "not up, after"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			host := nstest.New(t)
			h := host.Handle()
			veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "va"}, PeerName: "vb"}
			if err := h.LinkAdd(veth); err != nil {
				t.Fatal(err)
			}
			va, _ := h.LinkByName("va")
			vb, _ := h.LinkByName("vb")
			if err := h.LinkSetUp(va); err != nil {
				t.Fatal(err)
			}
			if tc.peerUp == 0 {
				h.LinkSetUp(vb)
			} else if tc.peerUp > 0 {
				go func() {
					time.Sleep(tc.peerUp)
					h.LinkSetUp(vb)
				}()
			}
			var err error
			var link netlink.Link
			host.Do(func() error {
				link, err = WaitOperUp(h, va.Attrs().Index, 400*time.Millisecond)
				return nil
			})
			if tc.wantError != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantError) {
					t.Fatalf("got %v, want an error containing %q", err, tc.wantError)
				}
				return
			}
			if err != nil || link.Attrs().OperState != netlink.OperUp {
				t.Fatalf("got %v, state %v", err, link.Attrs().OperState)
			}
		})
	}
}
