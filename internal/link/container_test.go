package link

import (
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
