package skel

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/nstest"
	"github.com/cnikit/cnikit/invoke"
)

// plainFile returns the path of an empty file: not a namespace.
func plainFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "plain-file")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestOwnNetnsRefused runs the plugin inside a throw-away "host" namespace and
// hands it that same namespace, another one, a missing path and a file that is
// not a namespace.
func TestOwnNetnsRefused(t *testing.T) {
	host := nstest.New(t)
	container := nstest.New(t)
	notNetns := plainFile(t)

	tests := []struct {
		name     string
		verb     string
		netns    string
		override string
		code     cni.Code // 0: the plugin runs
	}{
		{"ADD in own netns", "ADD", host.Path(), "", cni.CodeInvalidNetNS},
		{"CHECK in own netns", "CHECK", host.Path(), "", cni.CodeInvalidNetNS},
		{"DEL in own netns", "DEL", host.Path(), "", cni.CodeInvalidNetNS},
		{"ADD in own netns with override 1", "ADD", host.Path(), "1", 0},
		{"DEL in own netns with override true", "DEL", host.Path(), "true", 0},
		{"CHECK in own netns with override TRUE", "CHECK", host.Path(), "TRUE", 0},
		{"ADD in own netns with override 0", "ADD", host.Path(), "0", cni.CodeInvalidNetNS},
		{"ADD in another netns", "ADD", container.Path(), "", 0},
		{"DEL in another netns", "DEL", container.Path(), "", 0},
		{"ADD with a missing netns", "ADD", "/nonexistent/netns", "", 0},
		{"DEL with a missing netns", "DEL", "/nonexistent/netns", "", 0},
		{"DEL without netns", "DEL", "", "", 0},
		{"ADD with a file that is not a netns", "ADD", notNetns, "", cni.CodeInvalidEnvironment},
		{"DEL with a file that is not a netns", "DEL", notNetns, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := fullEnv(tt.verb)
			env["CNI_NETNS"] = tt.netns
			env["CNI_NETNS_OVERRIDE"] = tt.override
			rec := &recorder{result: &cni.Result{}}
			var out outcome
			host.Do(func() error {
				out = runString(rec.plugin(), env, conf("1.0.0"))
				return nil
			})
			if tt.code == 0 {
				if out.status != 0 || len(rec.calls) != 1 {
					t.Errorf("status %d, calls %v: %s", out.status, rec.calls, out.stdout)
				}
				return
			}
			e := out.errObj(t)
			if e.Code != tt.code {
				t.Errorf("code %d, want %d: %+v", e.Code, tt.code, e)
			}
			if len(rec.calls) != 0 {
				t.Errorf("plugin called before the refusal: %v", rec.calls)
			}
		})
	}
}

// TestOpenNetns: a namespace that does not exist is code 3, a path that is no
// namespace code 4, both naming the plugin and the path; a namespace opens.
func TestOpenNetns(t *testing.T) {
	container := nstest.New(t)
	notNetns := plainFile(t)
	tests := []struct {
		name  string
		netns string
		code  cni.Code // 0: it opens
		msg   string
	}{
		{"a namespace", container.Path(), 0, ""},
		{"missing", "/nonexistent/netns", cni.CodeUnknownContainer, `demo: network namespace "/nonexistent/netns" does not exist`},
		{"not a namespace", notNetns, cni.CodeInvalidEnvironment, `demo: network namespace "` + notNetns + `": `},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := &Args{Env: invoke.Env{Netns: tc.netns}, pluginName: "demo"}
			ns, err := args.OpenNetns()
			if tc.code == 0 {
				if err != nil {
					t.Fatalf("OpenNetns: %v", err)
				}
				ns.Close()
				return
			}
			if cerr := cni.AsError(err); cerr == nil || cerr.Code != tc.code || !strings.HasPrefix(cerr.Msg, tc.msg) {
				t.Errorf("OpenNetns: %v, want code %d and a message starting %q", err, tc.code, tc.msg)
			}
		})
	}
}
