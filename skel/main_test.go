package skel

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/cnikit/cnikit/cni"
)

// execPluginName is a plugin that exists only when the test binary runs under
// that name: the parent test process does not register it, so Delegate must
// execute the binary instead of calling it in-process.
const execPluginName = "skeltest-exec"

// execPlugin answers ADD with a result naming its own pid, so a test can tell
// that it ran in another process, and fails DEL with a typed error.
var execPlugin = &Plugin{
	Name: execPluginName,
	Add: func(ctx context.Context, args *Args) (*cni.Result, error) {
		return &cni.Result{DNS: cni.DNS{Domain: fmt.Sprintf("pid%d.%s.%s", os.Getpid(), args.Command, args.IfName)},
			IPs: []*cni.IPConfig{{Address: mustCIDR("10.9.0.2/24")}}}, nil
	},
	Del: func(ctx context.Context, args *Args) error {
		return cni.Errorf(cni.CodeTryAgainLater, "exec plugin DEL for %s", args.ContainerID)
	},
}

func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == execPluginName {
		Register(execPlugin)
		Main(execPlugin)
	}
	os.Exit(m.Run())
}

func mustCIDR(s string) net.IPNet {
	p, err := cni.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	return *p
}
