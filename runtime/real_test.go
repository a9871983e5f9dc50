package runtime

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/nstest"
	"github.com/cnikit/cnikit/internal/plugintest"
)

// TestRealLoopback drives real loopback plugins through ADD, CHECK, DEL and
// DEL again, from a throw-away "host" namespace on a throw-away container
// namespace: cnikit's binary, the reference binary, and cnikit's plugin run
// in-process.
func TestRealLoopback(t *testing.T) {
	nstest.RequireRoot(t)
	impls := []struct {
		name      string
		dir       func(t *testing.T) string
		inProcess bool
	}{
		{"cnikit binary", func(t *testing.T) string { return plugintest.BinDir(t) }, false},
		{"reference binary", func(t *testing.T) string {
			plugintest.RequireReference(t)
			return plugintest.ReferenceDir
		}, false},
		{"cnikit in-process", func(t *testing.T) string { return newRig(t, "loopback").bin }, true},
	}
	for _, impl := range impls {
		for _, version := range []string{"0.4.0", "1.0.0"} {
			t.Run(impl.name+"/"+version, func(t *testing.T) {
				dir := impl.dir(t)
				host, ctr := nstest.New(t), nstest.New(t)
				ctrLinks := ctr.Handle()
				loUp := func() bool {
					lo, err := ctrLinks.LinkByName("lo")
					if err != nil {
						t.Fatal(err)
					}
					return lo.Attrs().Flags&net.FlagUp != 0
				}
				lo, _ := ctrLinks.LinkByName("lo")
				if err := ctrLinks.LinkSetDown(lo); err != nil {
					t.Fatal(err)
				}

				cache := t.TempDir()
				rt := New(Config{Path: []string{dir}, CacheDir: cache, InProcess: impl.inProcess})
				list := parseList(t, `{"cniVersion":"`+version+`","name":"lo-test","plugins":[{"type":"loopback"}]}`)
				att := &Attachment{ContainerID: "lotest", Netns: ctr.Path(), IfName: "lo"}
				cacheFile := filepath.Join(cache, "results", "lo-test-lotest-lo")

				host.Do(func() error {
					res, err := rt.Add(bg, list, att)
					if err != nil {
						t.Fatalf("ADD: %v", err)
					}
					if res.CNIVersion != version || len(res.Interfaces) != 1 || res.Interfaces[0].Name != "lo" {
						t.Errorf("ADD result = %+v", res)
					}
					found := false
					for _, ip := range res.IPs {
						found = found || ip.Address.String() == "127.0.0.1/8"
					}
					if !found {
						t.Errorf("ADD result lacks 127.0.0.1/8: %+v", res.IPs)
					}
					if !loUp() {
						t.Error("lo is down after ADD")
					}
					if _, err := os.Stat(cacheFile); err != nil {
						t.Errorf("no cache entry after ADD: %v", err)
					}
					if err := rt.Check(bg, list, att); err != nil {
						t.Errorf("CHECK: %v", err)
					}
					if err := rt.Del(bg, list, att); err != nil {
						t.Fatalf("DEL: %v", err)
					}
					if loUp() {
						t.Error("lo is up after DEL")
					}
					if _, err := os.Stat(cacheFile); !os.IsNotExist(err) {
						t.Errorf("cache entry left after DEL: %v", err)
					}
					if err := rt.Del(bg, list, att); err != nil {
						t.Errorf("second DEL: %v", err)
					}
					return nil
				})
			})
		}
	}
}

// TestRealLoopbackCleanup: DEL after the container's namespace is gone
// succeeds, and GC deletes every cached attachment it is not told to keep,
// with cnikit's and the reference plugin alike.
func TestRealLoopbackCleanup(t *testing.T) {
	nstest.RequireRoot(t)
	dirs := map[string]func(t *testing.T) string{
		"cnikit":    func(t *testing.T) string { return plugintest.BinDir(t) },
		"reference": func(t *testing.T) string { plugintest.RequireReference(t); return plugintest.ReferenceDir },
	}
	for name, dirOf := range dirs {
		t.Run(name, func(t *testing.T) {
			dir := dirOf(t)
			host, ctr := nstest.New(t), nstest.New(t)
			rt := New(Config{Path: []string{dir}, CacheDir: t.TempDir()})
			list := parseList(t, `{"cniVersion":"1.0.0","name":"lo-test","plugins":[{"type":"loopback"}]}`)
			host.Do(func() error {
				for _, cid := range []string{"keep", "stale", "gone"} {
					if _, err := rt.Add(bg, list, &Attachment{ContainerID: cid, Netns: ctr.Path(), IfName: "lo"}); err != nil {
						t.Fatal(err)
					}
				}
				gone := &Attachment{ContainerID: "gone", Netns: filepath.Join(t.TempDir(), "no-such-netns"), IfName: "lo"}
				if err := rt.Del(bg, list, gone); err != nil {
					t.Errorf("DEL with the namespace gone: %v", err)
				}
				if err := rt.GC(bg, list, []cni.GCAttachment{{ContainerID: "keep", IfName: "lo"}}); err != nil {
					t.Errorf("GC: %v", err)
				}
				return nil
			})
			atts, err := rt.CachedAttachments("")
			if err != nil || len(atts) != 1 || atts[0].ContainerID != "keep" {
				t.Errorf("cached after GC: %+v, %v", atts, err)
			}
		})
	}
}
