package link

import (
	"strings"
	"testing"

	"github.com/cnikit/cnikit/internal/nstest"
)

func TestContainerHas(t *testing.T) {
	cont := nstest.New(t)
	cont.MustRun("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
	has := ContainerHas(cont.Fd())
	for _, tc := range []struct {
		name string
		want bool
	}{
		{"eth0", true},
		{"lo", true},
		{"eth1", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := has(tc.name); got != tc.want {
				t.Errorf("ContainerHas(%s) = %v, want %v", tc.name, got, tc.want)
			}
		})
	}
}

func TestVerifyContainerVeth(t *testing.T) {
	cont := nstest.New(t)
	cont.MustRun("ip", "link", "add", "eth0", "address", "02:00:00:00:00:01", "type", "veth", "peer", "name", "peer0")
	h := cont.Handle()
	for _, tc := range []struct {
		name, ifname, mac string
		err               string // "": it passes
	}{
		{"veth", "eth0", "", ""},
		{"veth with its MAC", "eth0", "02:00:00:00:00:01", ""},
		{"another MAC", "eth0", "02:00:00:00:00:02", `container interface "eth0" has MAC 02:00:00:00:00:01, prevResult says 02:00:00:00:00:02`},
		{"not a veth", "lo", "", `container interface "lo" is a device, not a veth`},
		{"missing", "eth1", "", `container interface "eth1": `},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := VerifyContainerVeth(h, tc.ifname, tc.mac)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("VerifyContainerVeth: %v", err)
			case tc.err == "" && l.Attrs().ParentIndex == 0:
				t.Errorf("no peer index in %+v", l.Attrs())
			case tc.err != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.err)):
				t.Errorf("VerifyContainerVeth: %v, want an error starting %q", err, tc.err)
			}
		})
	}
}
