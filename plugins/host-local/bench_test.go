package hostlocal

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/cnikit/cnikit/internal/ipam"
)

// benchConf is a dual-stack network with room for the pre-filled allocations.
func benchConf(b *testing.B) (stdin, dataDir string) {
	dataDir = b.TempDir()
	return conf(b, "1.0.0", map[string]any{"dataDir": dataDir, "ranges": ranges("10.64.0.0/16", "fd64::/112")}, nil), dataDir
}

// prefill reserves n addresses for other containers, at the start of both
// ranges, as a busy node would have them.
func prefill(b *testing.B, dataDir string, n int) {
	s, err := ipam.Open(dataDir, "testnet")
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if err := s.Lock(); err != nil {
		b.Fatal(err)
	}
	v4, v6 := netip.MustParseAddr("10.64.0.2"), netip.MustParseAddr("fd64::2")
	for i := 0; i < n; i++ {
		att := ipam.Attachment{ContainerID: fmt.Sprintf("existing%d", i), IfName: "eth0"}
		if _, err := s.Reserve(v4, att); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Reserve(v6, att); err != nil {
			b.Fatal(err)
		}
		v4, v6 = v4.Next(), v6.Next()
	}
}

// BenchmarkAdd measures one in-process ADD (two range sets) next to n existing
// allocations; each allocation is deleted again outside the timer.
func BenchmarkAdd(b *testing.B) {
	for _, n := range []int{0, 1000} {
		b.Run(fmt.Sprintf("existing=%d", n), func(b *testing.B) {
			stdin, dataDir := benchConf(b)
			prefill(b, dataDir, n)
			for i := 0; b.Loop(); i++ {
				out, err := run(b, request{verb: "ADD", stdin: stdin, containerID: "bench"})
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				_ = out
				if _, err := run(b, request{verb: "DEL", stdin: stdin, containerID: "bench"}); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}

// BenchmarkDel measures one in-process DEL next to n existing allocations:
// with prevResult (the addresses are released by name, the directory is not
// read) and without (the directory is scanned, as the reference always does).
func BenchmarkDel(b *testing.B) {
	for _, n := range []int{0, 1000} {
		for _, withPrevResult := range []bool{true, false} {
			b.Run(fmt.Sprintf("existing=%d/prevResult=%v", n, withPrevResult), func(b *testing.B) {
				stdin, dataDir := benchConf(b)
				prefill(b, dataDir, n)
				for b.Loop() {
					b.StopTimer()
					res := mustAdd(b, stdin, "bench")
					del := stdin
					if withPrevResult {
						del = withPrev(b, stdin, res, "1.0.0")
					}
					b.StartTimer()
					if _, err := run(b, request{verb: "DEL", stdin: del, containerID: "bench"}); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
