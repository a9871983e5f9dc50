package skel

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/invoke"
)

func envOf(m map[string]string) invoke.Env {
	return invoke.Env{Command: m["CNI_COMMAND"], ContainerID: m["CNI_CONTAINERID"], Netns: m["CNI_NETNS"],
		IfName: m["CNI_IFNAME"], CNIArgs: m["CNI_ARGS"], Path: m["CNI_PATH"]}
}

// inProcessIPAM records the delegated calls it serves in this process.
var inProcessIPAM = struct {
	calls []*Args
}{}

func init() {
	Register(&Plugin{
		Name: "skeltest-ipam",
		Add: func(ctx context.Context, args *Args) (*cni.Result, error) {
			inProcessIPAM.calls = append(inProcessIPAM.calls, args)
			return &cni.Result{IPs: []*cni.IPConfig{{Address: mustCIDR("10.7.0.2/24"), Gateway: mustCIDR("10.7.0.1/32").IP}}}, nil
		},
		Del: func(ctx context.Context, args *Args) error {
			inProcessIPAM.calls = append(inProcessIPAM.calls, args)
			return cni.Errorf(cni.CodeTryAgainLater, "in-process DEL refused")
		},
	})
}

// pluginDir lays out a CNI_PATH directory with links to the test binary.
func pluginDir(t *testing.T, names ...string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	for _, n := range names {
		if err := os.Symlink(self, filepath.Join(dir, n)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func delegatingArgs(dir string) *Args {
	env := fullEnv("ADD")
	env["CNI_PATH"] = "/nonexistent:" + dir
	return &Args{Env: envOf(env), Version: "1.0.0", StdinData: []byte(conf("1.0.0"))}
}

func TestDelegateInProcess(t *testing.T) {
	dir := pluginDir(t, "skeltest-ipam")
	inProcessIPAM.calls = nil
	args := delegatingArgs(dir)
	stdin := []byte(`{"cniVersion":"1.0.0","name":"testnet","type":"bridge","ipam":{"type":"skeltest-ipam"}}`)

	res, err := Delegate(context.Background(), args, "ADD", "skeltest-ipam", stdin)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.IPs) != 1 || res.IPs[0].Address.String() != "10.7.0.2/24" || res.CNIVersion != "1.0.0" {
		t.Errorf("result %+v", res)
	}
	if len(inProcessIPAM.calls) != 1 {
		t.Fatalf("%d in-process calls, want 1", len(inProcessIPAM.calls))
	}
	got := inProcessIPAM.calls[0]
	want := args.Env
	want.Command = "ADD"
	if got.Env != want || string(got.StdinData) != string(stdin) || got.Version != "1.0.0" {
		t.Errorf("delegate saw %+v, want env %+v and the whole configuration", got, want)
	}

	_, err = Delegate(context.Background(), args, "DEL", "skeltest-ipam", stdin)
	if cni.CodeOf(err) != cni.CodeTryAgainLater || !strings.Contains(err.Error(), "in-process DEL refused") {
		t.Errorf("DEL: %v, want the delegate's code 11", err)
	}
	if len(inProcessIPAM.calls) != 2 || inProcessIPAM.calls[1].Command != "DEL" {
		t.Errorf("DEL not delegated in-process: %d calls", len(inProcessIPAM.calls))
	}
}

func TestDelegateExec(t *testing.T) {
	dir := pluginDir(t, execPluginName)
	args := delegatingArgs(dir)
	stdin := []byte(`{"cniVersion":"1.0.0","name":"testnet","type":"bridge","ipam":{"type":"` + execPluginName + `"}}`)

	res, err := Delegate(context.Background(), args, "ADD", execPluginName, stdin)
	if err != nil {
		t.Fatal(err)
	}
	// The exec plugin names its pid, verb and ifname in the DNS domain.
	if res.DNS.Domain == "" || strings.HasPrefix(res.DNS.Domain, "pid"+strconv.Itoa(os.Getpid())+".") ||
		!strings.HasSuffix(res.DNS.Domain, ".ADD.eth0") {
		t.Errorf("domain %q: not answered by another process with the delegated environment", res.DNS.Domain)
	}
	if len(res.IPs) != 1 || res.IPs[0].Address.String() != "10.9.0.2/24" {
		t.Errorf("result %+v", res)
	}

	_, err = Delegate(context.Background(), args, "DEL", execPluginName, stdin)
	if cni.CodeOf(err) != cni.CodeTryAgainLater || !strings.Contains(err.Error(), "exec plugin DEL for ctr1") {
		t.Errorf("DEL: %v, want the delegate's code 11 error", err)
	}
}

func TestDelegateNotFound(t *testing.T) {
	args := delegatingArgs(t.TempDir())
	for _, typ := range []string{"skeltest-missing", "../skeltest-ipam"} {
		if _, err := Delegate(context.Background(), args, "ADD", typ, []byte(conf("1.0.0"))); err == nil ||
			!strings.Contains(err.Error(), typ) {
			t.Errorf("Delegate(%q) = %v, want an error naming it", typ, err)
		}
	}
}
