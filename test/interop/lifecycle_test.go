package interop

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/nstest"
	"github.com/cnikit/cnikit/internal/plugintest"
)

// chainCase is a network configuration to drive through its whole life.
type chainCase struct {
	name string
	// conf is a conflist template: %VERSION%, %DATA% (host-local's data
	// dir) and %NET% (a network name) are replaced.
	conf string
	// l3 says the chain gives the container an address on 10.%SUBNET%.0/24
	// whose gateway answers ping.
	l3 bool
}

var cnikitChains = []chainCase{
	{name: "bridge+host-local", l3: true, conf: `{"cniVersion":"%VERSION%","name":"%NET%","plugins":[
	  {"type":"bridge","bridge":"br-%NET%","isGateway":true,"ipMasq":true,
	   "ipam":{"type":"host-local","dataDir":"%DATA%","ranges":[[{"subnet":"10.124.0.0/24"}]]}}]}`},
	{name: "loopback", conf: `{"cniVersion":"%VERSION%","name":"%NET%","plugins":[{"type":"loopback"}]}`},
}

func render(c chainCase, version, network, dataDir string) []byte {
	r := strings.NewReplacer("%VERSION%", version, "%NET%", network, "%DATA%", dataDir)
	return []byte(r.Replace(c.conf))
}

// lifecycle drives one chain through ADD → CHECK → STATUS → GC → DEL → DEL
// with driver d, running it inside host, and checks the container works in
// between and that nothing is left afterwards. Verbs the version lacks are
// skipped as a runtime would (CHECK needs 0.4.0, STATUS and GC 1.1.0).
func lifecycle(t *testing.T, d driver, host *nstest.NS, conf []byte, version string, l3 bool, cacheDir, ipamDir string) {
	t.Helper()
	container := nstest.New(t)
	att := attachment{containerID: "interop1", netns: container.Path(), ifName: "eth0"}
	if !l3 {
		att.ifName = "lo"
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out []byte
	host.Do(func() (err error) { out, err = d.add(ctx, conf, att); return err })
	res, err := cni.ParseResult(out, version)
	if err != nil {
		t.Fatalf("%s: ADD result %s: %v", d.name(), out, err)
	}
	if l3 {
		if len(res.IPs) == 0 {
			t.Fatalf("%s: ADD gave no address: %s", d.name(), out)
		}
		if err := container.Ping("10.124.0.1"); err != nil {
			t.Fatal(err)
		}
	}
	if cni.SupportsCheck(version) {
		host.Do(func() error { return d.check(ctx, conf, att) })
	}
	if cni.SupportsGCAndStatus(version) {
		host.Do(func() error { return d.status(ctx, conf) })
		host.Do(func() error { return d.gc(ctx, conf, []attachment{att}) })
		if cni.SupportsCheck(version) {
			host.Do(func() error { return wrap("CHECK after GC kept the attachment", d.check(ctx, conf, att)) })
		}
	}
	for i := 0; i < 2; i++ {
		host.Do(func() error { return wrap(fmt.Sprintf("DEL %d", i+1), d.del(ctx, conf, att)) })
	}
	if l3 {
		assertNothingLeft(t, host, res.IPs[0].Address.IP, ipamDir, cacheDir)
	}
}

func wrap(what string, err error) error {
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// The reference runtime library drives every cnikit plugin through its whole
// life, for every spec version a current runtime sends.
func TestLibcniDrivesCnikitPlugins(t *testing.T) {
	binDir := plugintest.BinDir(t)
	for _, version := range []string{"0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		for _, c := range cnikitChains {
			t.Run(version+"/"+c.name, func(t *testing.T) {
				dir := t.TempDir()
				d := newLibcniDriver([]string{binDir}, filepath.Join(dir, "cache"))
				conf := render(c, version, "interop", filepath.Join(dir, "ipam"))
				lifecycle(t, d, nstest.New(t), conf, version, c.l3, filepath.Join(dir, "cache"), filepath.Join(dir, "ipam", "interop"))
			})
		}
	}
}

// cnikit's runtime library drives the reference plugin binaries through the
// same life. Debian 12's reference plugins (v1.1.1) stop at spec 1.0.0; a
// 1.1.0 configuration gets their "incompatible CNI versions" error, code 1.
func TestCnikitDrivesReferencePlugins(t *testing.T) {
	plugintest.RequireReference(t)
	for _, version := range []string{"0.3.1", "0.4.0", "1.0.0"} {
		for _, c := range cnikitChains {
			t.Run(version+"/"+c.name, func(t *testing.T) {
				dir := t.TempDir()
				d := newCnikitDriver([]string{plugintest.ReferenceDir}, filepath.Join(dir, "cache"))
				conf := render(c, version, "interop", filepath.Join(dir, "ipam"))
				lifecycle(t, d, nstest.New(t), conf, version, c.l3, filepath.Join(dir, "cache"), filepath.Join(dir, "ipam", "interop"))
			})
		}
	}
	t.Run("1.1.0 is refused with code 1", func(t *testing.T) {
		dir := t.TempDir()
		d := newCnikitDriver([]string{plugintest.ReferenceDir}, filepath.Join(dir, "cache"))
		conf := render(cnikitChains[0], "1.1.0", "interop", filepath.Join(dir, "ipam"))
		host, container := nstest.New(t), nstest.New(t)
		var err error
		host.NS.Do(func() error {
			_, err = d.add(context.Background(), conf, attachment{containerID: "c", netns: container.Path(), ifName: "eth0"})
			return nil
		})
		if cni.CodeOf(err) != cni.CodeIncompatibleVersion {
			t.Fatalf("want code 1, got %v", err)
		}
	})
}
