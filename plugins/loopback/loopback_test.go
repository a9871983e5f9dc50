package loopback

import (
	"net"
	"path/filepath"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/nstest"
	"github.com/cnikit/cnikit/internal/plugintest"
)

func invokeVerb(t *testing.T, verb, netnsPath, conf string) ([]byte, *cni.Error) {
	t.Helper()
	return plugintest.Invoke(t, plugintest.Call{Plugin: "loopback", Verb: verb, ContainerID: "c1", Netns: netnsPath, IfName: "lo", Conf: []byte(conf)})
}

func loUp(t *testing.T, ns *nstest.NS) bool {
	t.Helper()
	lo, err := ns.Handle().LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	return lo.Attrs().Flags&net.FlagUp != 0
}

func TestLifecycle(t *testing.T) {
	for _, version := range []string{"0.2.0", "0.4.0", "1.0.0", "1.1.0"} {
		t.Run(version, func(t *testing.T) {
			ns := nstest.New(t)
			ns.MustRun("ip", "link", "set", "lo", "down")
			conf := `{"cniVersion":"` + version + `","name":"lo","type":"loopback"}`
			out, err := invokeVerb(t, "ADD", ns.Path(), conf)
			if err != nil {
				t.Fatalf("ADD: %v", err)
			}
			res, perr := cni.ParseResult(out, version)
			if perr != nil || len(res.IPs) == 0 || res.IPs[0].Address.String() != "127.0.0.1/8" {
				t.Fatalf("ADD result %s (%v)", out, perr)
			}
			if !loUp(t, ns) {
				t.Fatal("lo is down after ADD")
			}
			if cni.SupportsCheck(version) {
				if _, err := invokeVerb(t, "CHECK", ns.Path(), conf); err != nil {
					t.Fatalf("CHECK: %v", err)
				}
			}
			for i := 0; i < 2; i++ {
				if _, err := invokeVerb(t, "DEL", ns.Path(), conf); err != nil {
					t.Fatalf("DEL %d: %v", i+1, err)
				}
			}
			if loUp(t, ns) {
				t.Fatal("lo is up after DEL")
			}
			if cni.SupportsCheck(version) {
				if _, err := invokeVerb(t, "CHECK", ns.Path(), conf); err == nil {
					t.Fatal("CHECK passed with lo down")
				}
			}
		})
	}
}

func TestChainedPassesPrevResultThrough(t *testing.T) {
	ns := nstest.New(t)
	prev := `{"cniVersion":"1.1.0","interfaces":[{"name":"eth0","sandbox":"x"}],"ips":[{"address":"10.1.2.3/24","interface":0}]}`
	out, err := invokeVerb(t, "ADD", ns.Path(), `{"cniVersion":"1.1.0","name":"lo","type":"loopback","prevResult":`+prev+`}`)
	if err != nil {
		t.Fatal(err)
	}
	res, _ := cni.ParseResult(out, "1.1.0")
	if len(res.IPs) != 1 || res.IPs[0].Address.String() != "10.1.2.3/24" || res.Interfaces[0].Name != "eth0" {
		t.Fatalf("prevResult not passed through: %s", out)
	}
}

func TestErrors(t *testing.T) {
	ns := nstest.New(t)
	gone := filepath.Join(t.TempDir(), "gone")
	h := ns.Handle()
	lo, _ := h.LinkByName("lo")
	addr, _ := netlink.ParseAddr("10.9.9.9/32")
	if err := h.AddrAdd(lo, addr); err != nil {
		t.Fatal(err)
	}
	conf := `{"cniVersion":"1.1.0","name":"lo","type":"loopback"}`
	cases := []struct {
		name, verb, netns string
		wantCode          cni.Code // 0: success
	}{
		{"ADD with a non-loopback address on lo", "ADD", ns.Path(), cni.CodeInvalidNetworkConfig},
		{"ADD in a namespace that does not exist", "ADD", gone, cni.CodeUnknownContainer},
		{"CHECK in a namespace that does not exist", "CHECK", gone, cni.CodeUnknownContainer},
		{"DEL in a namespace that does not exist", "DEL", gone, 0},
		{"DEL with no namespace", "DEL", "", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := invokeVerb(t, tc.verb, tc.netns, conf)
			if tc.wantCode == 0 {
				if err != nil {
					t.Fatalf("want success, got %v", err)
				}
				return
			}
			if err == nil || err.Code != tc.wantCode {
				t.Fatalf("want code %d, got %v", tc.wantCode, err)
			}
		})
	}
}
