package link

import (
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/cnikit/cnikit/internal/nstest"
)

// WaitOperUp returns once the link comes up (woken by the kernel's
// notification whenever it is set up), and times out with the state in the
// error when it never does. The waited-for link is kept administratively
// down until then: its peer's state alone would not do, since older kernels
// (Debian 12's 6.1) report a fresh veth as "unknown", which counts as up.
func TestWaitOperUp(t *testing.T) {
	cases := []struct {
		name      string
		up        time.Duration // when va is set up; <0: never
		wantError string
	}{
		{name: "already up", up: 0},
		{name: "comes up later", up: 50 * time.Millisecond},
		{name: "never comes up", up: -1, wantError: "not up, after"},
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
			if err := h.LinkSetUp(vb); err != nil {
				t.Fatal(err)
			}
			if tc.up == 0 {
				h.LinkSetUp(va)
			} else if tc.up > 0 {
				go func() {
					time.Sleep(tc.up)
					h.LinkSetUp(va)
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
			if state := link.Attrs().OperState; err != nil || state != netlink.OperUp && state != netlink.OperUnknown {
				t.Fatalf("got %v, state %v", err, state)
			}
		})
	}
}
