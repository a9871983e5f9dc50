package runtime

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/skel"
)

// inprocTestPlugin is registered in the test binary, so that it runs either
// in-process or as the executed test binary (see TestMain).
const inprocTestPlugin = "inproc-test"

func init() {
	skel.Register(&skel.Plugin{
		Name: inprocTestPlugin,
		Add: func(ctx context.Context, args *skel.Args) (*cni.Result, error) {
			args.Log.Info("inproc-test adding", "netns", args.Netns)
			if strings.Contains(string(args.StdinData), `"fail":true`) {
				return nil, cni.Errorf(cni.CodeInvalidNetworkConfig, "told to fail").WithDetails("by its configuration")
			}
			if strings.Contains(string(args.StdinData), `"panic":true`) {
				panic("told to panic")
			}
			// The pid tells the test where the plugin ran.
			return &cni.Result{CNIVersion: args.Version,
				Interfaces: []*cni.Interface{{Name: args.IfName, Sandbox: args.Netns}},
				DNS:        cni.DNS{Domain: fmt.Sprintf("pid%d", os.Getpid())}}, nil
		},
		Del: func(ctx context.Context, args *skel.Args) error {
			if !strings.Contains(string(args.StdinData), `"prevResult"`) {
				return cni.Errorf(cni.CodeInvalidNetworkConfig, "DEL without prevResult")
			}
			return nil
		},
	})
}

func TestInProcess(t *testing.T) {
	self := fmt.Sprintf("pid%d", os.Getpid())
	for _, inProcess := range []bool{false, true} {
		t.Run(fmt.Sprintf("InProcess=%v", inProcess), func(t *testing.T) {
			r := newRig(t, inprocTestPlugin)
			r.rt = New(Config{Path: []string{r.bin}, CacheDir: r.cache, Stderr: &r.stderr, InProcess: inProcess})
			list := parseList(t, `{"cniVersion":"1.0.0","name":"net1","plugins":[{"type":"inproc-test"}]}`)
			att := testAttachment("c1")

			res, err := r.rt.Add(bg, list, att)
			if err != nil {
				t.Fatal(err)
			}
			if res.CNIVersion != "1.0.0" || len(res.Interfaces) != 1 || res.Interfaces[0].Name != "eth0" || res.Interfaces[0].Sandbox != "/run/netns/c1" {
				t.Errorf("result = %+v", res)
			}
			if ranHere := res.DNS.Domain == self; ranHere != inProcess {
				t.Errorf("plugin ran in %s, InProcess=%v", res.DNS.Domain, inProcess)
			}
			if !strings.Contains(r.stderr.String(), "inproc-test adding") {
				t.Errorf("the plugin's log did not reach Config.Stderr: %q", r.stderr.String())
			}
			if err := r.rt.Del(bg, list, att); err != nil {
				t.Fatal(err)
			}

			failing := parseList(t, `{"cniVersion":"1.0.0","name":"net1","plugins":[{"type":"inproc-test","fail":true}]}`)
			_, err = r.rt.Add(bg, failing, att)
			want := `plugin type="inproc-test" failed (add): told to fail; by its configuration`
			if err == nil || err.Error() != want || cni.CodeOf(err) != cni.CodeInvalidNetworkConfig {
				t.Errorf("Add = %v, want %q with code 7", err, want)
			}

			// skel's own checks apply either way: an unsupported version.
			old := parseList(t, `{"cniVersion":"9.0.0","name":"net1","plugins":[{"type":"inproc-test"}]}`)
			if _, err := r.rt.Add(bg, old, att); cni.CodeOf(err) != cni.CodeIncompatibleVersion {
				t.Errorf("Add of version 9.0.0 = %v, want code 1", err)
			}

			info, err := r.rt.VersionInfo(bg, inprocTestPlugin)
			if err != nil || info.CNIVersion != "1.1.0" || len(info.SupportedVersions) != len(cni.AllVersions) {
				t.Errorf("VersionInfo = %+v, %v", info, err)
			}
		})
	}
}

func TestInProcessPanicBecomesError(t *testing.T) {
	r := newRig(t, inprocTestPlugin)
	r.rt = New(Config{Path: []string{r.bin}, CacheDir: r.cache, Stderr: &r.stderr, InProcess: true})
	list := parseList(t, `{"cniVersion":"1.0.0","name":"net1","plugins":[{"type":"inproc-test","panic":true}]}`)
	_, err := r.rt.Add(bg, list, testAttachment("c1"))
	if err == nil || !strings.Contains(err.Error(), "panicked: told to panic") || cni.CodeOf(err) != cni.CodeInternal {
		t.Fatalf("Add = %v", err)
	}
}

func TestInProcessOnlyForTheRunningExecutable(t *testing.T) {
	// The fake plugins are links to this executable but not registered with
	// skel: they must still be executed.
	r := newRig(t, "alpha")
	r.rt = New(Config{Path: []string{r.bin}, CacheDir: r.cache, Stderr: &r.stderr, InProcess: true})
	if _, err := r.rt.Add(bg, parseList(t, `{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"alpha"}]}`), testAttachment("c1")); err != nil {
		t.Fatal(err)
	}
	if calls := r.calls(); len(calls) != 1 || calls[0].Pid == os.Getpid() {
		t.Errorf("calls = %+v", calls)
	}
}
