package portmap

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/nstest"
	"github.com/cnikit/cnikit/internal/plugintest"
	"github.com/cnikit/cnikit/invoke"
	cniruntime "github.com/cnikit/cnikit/runtime"
	"github.com/cnikit/cnikit/skel"
)

// portmapInProcess runs portmap in-process (so that it uses the test's state
// directory) and executes every other plugin's binary.
type portmapInProcess struct{}

func (portmapInProcess) Exec(ctx context.Context, pluginPath string, stdin []byte, env invoke.Env) ([]byte, error) {
	if filepath.Base(pluginPath) != "portmap" {
		return cniruntime.BinaryExecutor{}.Exec(ctx, pluginPath, stdin, env)
	}
	p, _ := skel.Lookup("portmap")
	out, cerr := skel.Invoke(ctx, p, &skel.Args{Env: env, StdinData: stdin})
	if cerr != nil {
		return nil, cerr
	}
	return out, nil
}

// podmanList is the bridge and portmap part of what "podman network create"
// writes (cniVersion 0.4.0), with the IPAM state in a temporary directory.
const podmanList = `{
  "cniVersion": "0.4.0",
  "name": "podnet",
  "plugins": [
    {
      "type": "bridge", "bridge": "cni-podman1", "isGateway": true, "ipMasq": true, "hairpinMode": true,
      "ipam": {"type": "host-local", "routes": [{"dst": "0.0.0.0/0"}], "dataDir": %q,
               "ranges": [[{"subnet": "10.89.0.0/24", "gateway": "10.89.0.1"}]]}
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}`

// TestPodmanChain: cnikit's bridge and host-local, then portmap, run by the
// runtime library from a Podman-style list: the 0.4.0 prevResult the bridge
// returns is enough for portmap, the mapping is reachable from outside and
// from the container itself, and DEL (with the cached result) removes it.
func TestPodmanChain(t *testing.T) {
	tp := newTopology(t)
	list, err := cni.ParseConfigList([]byte(fmt.Sprintf(podmanList, t.TempDir())))
	if err != nil {
		t.Fatal(err)
	}
	rt := cniruntime.New(cniruntime.Config{Path: []string{plugintest.BinDir(t)}, CacheDir: t.TempDir(), Exec: portmapInProcess{}})
	ctr := nstest.New(t)
	att := &cniruntime.Attachment{ContainerID: "podman1", Netns: ctr.Path(), IfName: "eth0",
		CapabilityArgs: map[string]any{"portMappings": []map[string]any{{"hostPort": 8088, "containerPort": 80, "protocol": "tcp"}}}}
	var res *cni.Result
	tp.host.Do(func() error {
		res, err = rt.Add(context.Background(), list, att)
		return err
	})
	v4, _ := containerIPs(res, "eth0")
	if v4 == nil {
		t.Fatalf("no container address in %+v", res)
	}
	serveTCP(t, ctr, "podman1", 80)
	for _, tc := range []struct {
		name string
		from string
	}{{"client", hostClientIP + ":8088"}, {"the container itself", "10.89.0.1:8088"}} {
		from := tp.client
		if tc.name != "client" {
			from = ctr
		}
		r, err := dialTCP(t, from, tc.from)
		if err != nil || r.server != "podman1" {
			t.Errorf("%s to %s: got %+v, %v", tc.name, tc.from, r, err)
		}
	}
	if n := len(tp.elementsOf("podnet", "podman1", "eth0")); n != 2 {
		t.Errorf("%d elements after ADD, want 2", n)
	}
	tp.host.Do(func() error { return rt.Del(context.Background(), list, att) })
	if n := len(tp.elementsOf("podnet", "podman1", "eth0")); n != 0 {
		t.Errorf("%d elements after DEL", n)
	}
	if _, err := dialTCP(t, tp.client, hostClientIP+":8088"); err == nil {
		t.Error("the port is still mapped after DEL")
	}
}
