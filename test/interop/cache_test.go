package interop

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cnikit/cnikit/internal/nstest"
	"github.com/cnikit/cnikit/internal/plugintest"
)

// cli runs the cnikit binary inside host with the test's dirs.
func cli(t *testing.T, host *nstest.NS, confDir, cacheDir string, args ...string) (string, error) {
	t.Helper()
	bin := plugintest.Binary(t)
	full := append([]string{"--conf-dir", confDir, "--cache-dir", cacheDir, "--cni-path", plugintest.BinDir(t)}, args...)
	var out []byte
	var err error
	host.NS.Do(func() error {
		out, err = exec.Command(bin, full...).CombinedOutput()
		return nil
	})
	return string(out), err
}

// An attachment added by the reference library is listed, checked and deleted
// by the cnikit CLI, and one added by the CLI is checked and deleted by the
// reference library: both read and write the same result cache.
func TestCacheInterop(t *testing.T) {
	binDir := plugintest.BinDir(t)
	conf := func(dir string) []byte {
		return []byte(`{"cniVersion":"1.0.0","name":"cachenet","plugins":[
		  {"type":"bridge","bridge":"br-cachenet","isGateway":true,"ipMasq":true,
		   "ipam":{"type":"host-local","dataDir":"` + filepath.Join(dir, "ipam") + `","ranges":[[{"subnet":"10.124.0.0/24"}]]}}]}`)
	}
	setup := func(t *testing.T) (dir, confDir, cacheDir string, host, container *nstest.NS) {
		dir = t.TempDir()
		confDir, cacheDir = filepath.Join(dir, "net.d"), filepath.Join(dir, "cache")
		os.MkdirAll(confDir, 0o755)
		if err := os.WriteFile(filepath.Join(confDir, "10-cachenet.conflist"), conf(dir), 0o644); err != nil {
			t.Fatal(err)
		}
		return dir, confDir, cacheDir, nstest.New(t), nstest.New(t)
	}

	t.Run("added by libcni, handled by cnikit", func(t *testing.T) {
		dir, confDir, cacheDir, host, container := setup(t)
		lib := newLibcniDriver([]string{binDir}, cacheDir)
		att := attachment{containerID: "fromlibcni", netns: container.Path(), ifName: "eth0"}
		host.Do(func() error { _, err := lib.add(context.Background(), conf(dir), att); return err })

		out, err := cli(t, host, confDir, cacheDir, "ls", "--json")
		var listed []map[string]any
		if err != nil || json.Unmarshal([]byte(out), &listed) != nil || len(listed) != 1 ||
			listed[0]["containerID"] != "fromlibcni" || listed[0]["network"] != "cachenet" {
			t.Fatalf("cnikit ls: %v\n%s", err, out)
		}
		for _, verb := range []string{"check", "del", "del"} {
			if out, err := cli(t, host, confDir, cacheDir, verb, "cachenet", container.Path(), "--container-id", "fromlibcni"); err != nil {
				t.Fatalf("cnikit %s: %v\n%s", verb, err, out)
			}
		}
		assertCacheEmpty(t, cacheDir)
	})

	t.Run("added by cnikit, handled by libcni", func(t *testing.T) {
		dir, confDir, cacheDir, host, container := setup(t)
		if out, err := cli(t, host, confDir, cacheDir, "add", "cachenet", container.Path(), "--container-id", "fromcnikit"); err != nil {
			t.Fatalf("cnikit add: %v\n%s", err, out)
		}
		lib := newLibcniDriver([]string{binDir}, cacheDir)
		att := attachment{containerID: "fromcnikit", netns: container.Path(), ifName: "eth0"}
		cached, err := lib.cfg.GetCachedAttachments("fromcnikit")
		if err != nil || len(cached) != 1 || cached[0].Network != "cachenet" {
			t.Fatalf("libcni GetCachedAttachments: %v %+v", err, cached)
		}
		host.Do(func() error { return lib.check(context.Background(), conf(dir), att) })
		host.Do(func() error { return lib.del(context.Background(), conf(dir), att) })
		assertCacheEmpty(t, cacheDir)
		if out, _ := cli(t, host, confDir, cacheDir, "ls"); strings.Contains(out, "fromcnikit") {
			t.Fatalf("cnikit ls still lists it:\n%s", out)
		}
	})
}

func assertCacheEmpty(t *testing.T, cacheDir string) {
	t.Helper()
	if entries, _ := os.ReadDir(filepath.Join(cacheDir, "results")); len(entries) != 0 {
		t.Fatalf("%d cache entries left", len(entries))
	}
}
