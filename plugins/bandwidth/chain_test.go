package bandwidth

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/nstest"
	"github.com/cnikit/cnikit/internal/plugintest"
	cniruntime "github.com/cnikit/cnikit/runtime"
)

// TestStandardChain runs bridge + host-local → tuning → bandwidth at
// cniVersion 0.4.0, as Podman writes its lists, through the runtime library
// and cnikit's binaries: ADD, CHECK, DEL from the cached result, DEL again.
func TestStandardChain(t *testing.T) {
	nstest.RequireRoot(t)
	host, cont := nstest.New(t), nstest.New(t)
	dir := t.TempDir()
	tuningDir := filepath.Join(dir, "tuning")
	list, err := cni.ParseConfigList([]byte(fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": "chainnet",
  "plugins": [
    {"type": "bridge", "bridge": "cni-chain0", "isGateway": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": %q, "routes": [{"dst": "0.0.0.0/0"}],
              "ranges": [[{"subnet": "10.77.0.0/24", "gateway": "10.77.0.1"}]]}},
    {"type": "tuning", "dataDir": %q, "mtu": 1400, "sysctl": {"net.ipv4.conf.IFNAME.arp_ignore": "1"}},
    {"type": "bandwidth", "capabilities": {"bandwidth": true}}
  ]
}`, filepath.Join(dir, "ipam"), tuningDir)))
	if err != nil {
		t.Fatal(err)
	}
	rt := cniruntime.New(cniruntime.Config{Path: []string{plugintest.BinDir(t)}, CacheDir: filepath.Join(dir, "cache")})
	att := &cniruntime.Attachment{ContainerID: "chain1", Netns: cont.Path(), IfName: "eth0",
		CapabilityArgs: map[string]any{"bandwidth": map[string]any{"ingressRate": 20_000_000, "egressRate": 10_000_000}}}
	ctx := context.Background()
	ifb := ifbName("chainnet", "chain1")

	var result *cni.Result
	host.Do(func() error {
		var err error
		if result, err = rt.Add(ctx, list, att); err != nil {
			return fmt.Errorf("ADD: %w", err)
		}
		return rt.Check(ctx, list, att)
	})
	names := []string{}
	for _, iface := range result.Interfaces {
		names = append(names, iface.Name)
	}
	if len(names) != 4 || names[0] != "cni-chain0" || names[2] != "eth0" || names[3] != ifb {
		t.Errorf("result interfaces %v", names)
	}
	if out := cont.MustRun("ip", "link", "show", "eth0"); !strings.Contains(out, "mtu 1400") {
		t.Errorf("tuning's MTU not applied:\n%s", out)
	}
	if out := cont.MustRun("sysctl", "-n", "net.ipv4.conf.eth0.arp_ignore"); strings.TrimSpace(out) != "1" {
		t.Errorf("arp_ignore %q", out)
	}
	if err := cont.Ping("10.77.0.1"); err != nil {
		t.Error(err)
	}
	if out := host.MustRun("tc", "qdisc", "show", "dev", ifb); !strings.Contains(out, "tbf 1: root") {
		t.Errorf("no TBF on %s:\n%s", ifb, out)
	}

	host.Do(func() error {
		for i := 0; i < 2; i++ {
			if err := rt.Del(ctx, list, att); err != nil {
				return fmt.Errorf("DEL %d: %w", i+1, err)
			}
		}
		return nil
	})
	if out := host.MustRun("ip", "-o", "link", "show"); strings.Contains(out, ifb) || strings.Contains(out, "veth") {
		t.Errorf("links left after DEL:\n%s", out)
	}
	if entries, _ := os.ReadDir(tuningDir); len(entries) != 0 {
		t.Errorf("tuning backup files left: %v", entries)
	}
}
