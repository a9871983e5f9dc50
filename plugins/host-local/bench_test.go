package hostlocal

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// benchConf is a dual-stack network with room for the pre-filled allocations.
func benchConf(b *testing.B) (stdin, dataDir string) {
	dataDir = b.TempDir()
	return conf(b, "1.0.0", map[string]any{"dataDir": dataDir, "ranges": ranges("10.64.0.0/16", "fd64::/112")}, nil), dataDir
}

// prefill adds n other containers, as a busy node would have them: their
// reservations at the start of both ranges, their index entries, and
// last_reserved_ip after them. They are flushed to disk first, as they would
// have been long ago: otherwise the journal commit and writeback of thousands
// of fresh files would fall into the timed ADDs and measure the setup.
func prefill(b *testing.B, stdin, dataDir string, n int) {
	for i := 0; i < n; i++ {
		mustAdd(b, stdin, fmt.Sprintf("existing%d", i))
	}
	fd, err := unix.Open(dataDir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Syncfs(fd); err != nil {
		b.Fatal(err)
	}
}

// opTimes collects the duration of each timed operation, to report the
// median beside the mean: on a shared machine a few stalls move the mean,
// and p50 is what the latency targets are about.
type opTimes []time.Duration

func (o *opTimes) time(fn func()) {
	start := time.Now()
	fn()
	*o = append(*o, time.Since(start))
}

func (o opTimes) report(b *testing.B) {
	if len(o) == 0 {
		return
	}
	slices.Sort(o)
	b.ReportMetric(float64(o[len(o)/2].Nanoseconds()), "p50-ns/op")
}

// BenchmarkAdd measures one in-process ADD (two range sets) next to n existing
// allocations; each allocation is deleted again outside the timer.
func BenchmarkAdd(b *testing.B) {
	for _, n := range []int{0, 1000} {
		b.Run(fmt.Sprintf("existing=%d", n), func(b *testing.B) {
			stdin, dataDir := benchConf(b)
			prefill(b, stdin, dataDir, n)
			var times opTimes
			for b.Loop() {
				times.time(func() {
					if _, err := run(b, request{verb: "ADD", stdin: stdin, containerID: "bench"}); err != nil {
						b.Fatal(err)
					}
				})
				b.StopTimer()
				if _, err := run(b, request{verb: "DEL", stdin: stdin, containerID: "bench"}); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			times.report(b)
		})
	}
}

// BenchmarkDel measures one in-process DEL next to n existing allocations,
// with prevResult and without: either way the addresses are found through
// the attachment's index entry and released by name, and the directory is
// not read (the reference reads every file of it).
func BenchmarkDel(b *testing.B) {
	for _, n := range []int{0, 1000} {
		for _, withPrevResult := range []bool{true, false} {
			b.Run(fmt.Sprintf("existing=%d/prevResult=%v", n, withPrevResult), func(b *testing.B) {
				stdin, dataDir := benchConf(b)
				prefill(b, stdin, dataDir, n)
				var times opTimes
				for b.Loop() {
					b.StopTimer()
					res := mustAdd(b, stdin, "bench")
					del := stdin
					if withPrevResult {
						del = withPrev(b, stdin, res, "1.0.0")
					}
					b.StartTimer()
					times.time(func() {
						if _, err := run(b, request{verb: "DEL", stdin: del, containerID: "bench"}); err != nil {
							b.Fatal(err)
						}
					})
				}
				times.report(b)
			})
		}
	}
}
