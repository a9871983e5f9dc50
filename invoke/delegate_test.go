package invoke_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/invoke"
	"github.com/cnikit/cnikit/skel"
)

// delegateIPAM is an IPAM plugin registered in the test binary: skel.Delegate
// runs it in-process when CNI_PATH leads to this executable, and executes it
// when CNI_PATH leads to a copy.
var delegateIPAM = &skel.Plugin{
	Name: "delegate-ipam",
	Add: func(ctx context.Context, args *skel.Args) (*cni.Result, error) {
		if strings.Contains(string(args.StdinData), `"exhausted":true`) {
			return nil, cni.Errorf(cni.CodeTryAgainLater, "no addresses left").WithDetails("range 10.9.0.0/30")
		}
		return &cni.Result{CNIVersion: args.Version, IPs: []*cni.IPConfig{{Address: *mustCIDR("10.9.0.2/30")}},
			DNS: cni.DNS{Domain: fmt.Sprintf("pid%d-%s", os.Getpid(), args.ContainerID)}}, nil
	},
}

// delegatePluginVar makes the re-executed test binary run delegateIPAM.
const delegatePluginVar = "INVOKE_DELEGATE_PLUGIN"

func init() {
	skel.Register(delegateIPAM)
	// init runs before the package's TestMain: a child started as the plugin
	// never reaches the tests.
	if os.Getenv(delegatePluginVar) != "" {
		skel.Main(delegateIPAM)
	}
}

func mustCIDR(s string) *net.IPNet {
	n, err := cni.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	return n
}

func TestDelegate(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// A copy is another file: Delegate must execute it rather than run the
	// plugin in-process.
	copyDir := t.TempDir()
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(copyDir, "delegate-ipam"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	linkDir := t.TempDir()
	if err := os.Symlink(self, filepath.Join(linkDir, "delegate-ipam")); err != nil {
		t.Fatal(err)
	}
	t.Setenv(delegatePluginVar, "1") // only the executed copy sees it at start-up

	for _, tt := range []struct {
		name      string
		dir       string
		inProcess bool
	}{{"in-process", linkDir, true}, {"executed", copyDir, false}} {
		t.Run(tt.name, func(t *testing.T) {
			args := &skel.Args{Env: invoke.Env{Command: "ADD", ContainerID: "c1", Netns: "/run/netns/c1", IfName: "eth0", Path: tt.dir}, Version: "1.0.0"}
			res, err := skel.Delegate(context.Background(), args, "ADD", "delegate-ipam",
				[]byte(`{"cniVersion":"1.0.0","name":"net1","type":"bridge","ipam":{"type":"delegate-ipam"}}`))
			if err != nil {
				t.Fatal(err)
			}
			if len(res.IPs) != 1 || res.IPs[0].Address.String() != "10.9.0.2/30" {
				t.Errorf("result = %+v", res)
			}
			ranHere := strings.HasPrefix(res.DNS.Domain, fmt.Sprintf("pid%d-", os.Getpid()))
			if ranHere != tt.inProcess || !strings.HasSuffix(res.DNS.Domain, "-c1") {
				t.Errorf("delegate ran as %q; want in-process=%v with the caller's CNI_CONTAINERID", res.DNS.Domain, tt.inProcess)
			}
			_, err = skel.Delegate(context.Background(), args, "ADD", "delegate-ipam",
				[]byte(`{"cniVersion":"1.0.0","name":"net1","type":"bridge","exhausted":true}`))
			if cni.CodeOf(err) != cni.CodeTryAgainLater || !strings.Contains(err.Error(), "no addresses left; range 10.9.0.0/30") {
				t.Errorf("failing delegate = %v, want its code-11 error", err)
			}
		})
	}
}
