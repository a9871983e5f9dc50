package firewall

import (
	"fmt"
	"net"
	"testing"

	"github.com/cnikit/cnikit/internal/nft"
	"github.com/cnikit/cnikit/internal/nstest"
)

// syntheticResult is a bridge-shaped prevResult for address ip (the firewall
// reads only the result, so no links are needed).
func syntheticResult(ip net.IP) []byte {
	return []byte(fmt.Sprintf(`{"cniVersion":"1.1.0","interfaces":[{"name":"br-bench"},{"name":"vethbench"},`+
		`{"name":"eth0","sandbox":"/var/run/netns/x"}],"ips":[{"address":"%s/16","interface":2}]}`, ip))
}

// BenchmarkAddDel measures one ADD and one DEL (with prevResult, in-process)
// with 0 or 1000 other attachments present: per-container state is map
// elements, so the cost must not grow with their number. The default
// backend includes its detection (no firewalld, no iptables DROP policy).
func BenchmarkAddDel(b *testing.B) {
	for _, bc := range []struct {
		name string
		keys map[string]any
	}{
		{"nftables", map[string]any{"backend": backendNftables}},
		{"nftables-same-bridge", map[string]any{"backend": backendNftables, "ingressPolicy": policySameBridge}},
		{"default", map[string]any{}},
		{"iptables", map[string]any{"backend": backendIptables}},
	} {
		for _, existing := range []int{0, 1000} {
			if bc.name == "iptables" && existing > 0 {
				continue // one process per operation dominates; see README
			}
			b.Run(fmt.Sprintf("%s/existing=%d", bc.name, existing), func(b *testing.B) {
				e := newEnv(b)
				n := network{name: "bench", fw: bc.keys}
				var iso *nft.Isolation
				if bc.keys["ingressPolicy"] == policySameBridge {
					iso = &nft.Isolation{Bridge: "br-bench", SameBridge: true}
				}
				e.host.Do(func() error {
					conn, err := nft.Open()
					if err != nil {
						return err
					}
					defer conn.Close()
					for i := range existing {
						a := nft.Attachment{Network: "bench", ContainerID: fmt.Sprintf("other%d", i), IfName: "eth0"}
						ip := net.IPv4(10, 99, byte(i>>8), byte(i))
						queue := conn.AddFirewallEntries
						if i == 0 {
							queue = conn.AddFirewall
						}
						if err := queue(a, []net.IP{ip}, iso); err != nil {
							return err
						}
						if i%50 == 0 { // batches within netlink's buffers
							if err := conn.Flush(); err != nil {
								return err
							}
						}
					}
					return conn.Flush()
				})
				add := e.fwConf(n, syntheticResult(net.ParseIP("10.98.0.2")))
				netnsPath := nstest.New(b).Path()
				b.ResetTimer()
				for range b.N {
					if _, cerr := e.invoke("firewall", "ADD", "bench", netnsPath, add); cerr != nil {
						b.Fatal(cerr)
					}
					if _, cerr := e.invoke("firewall", "DEL", "bench", netnsPath, add); cerr != nil {
						b.Fatal(cerr)
					}
				}
			})
		}
	}
}
