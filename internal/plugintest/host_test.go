package plugintest

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/nstest"
	"github.com/cnikit/cnikit/invoke"
	"github.com/cnikit/cnikit/netns"
	"github.com/cnikit/cnikit/skel"
)

// seen records what the recording plugin was called with.
var seen struct {
	env    invoke.Env
	inHost bool
	host   *Host
}

func init() {
	skel.Register(&skel.Plugin{Name: "plugintest-recorder", Add: func(ctx context.Context, args *skel.Args) (*cni.Result, error) {
		seen.env = args.Env
		self, err := netns.Current()
		if err != nil {
			return nil, err
		}
		defer self.Close()
		seen.inHost, _ = self.SameAs(seen.host.NS.NS)
		return &cni.Result{Interfaces: []*cni.Interface{{Name: args.IfName}}}, nil
	}})
}

// TestHostInvoke: a call runs inside the host namespace, with the Defaults
// filling in what it leaves empty and nothing else.
func TestHostInvoke(t *testing.T) {
	cont := nstest.New(t)
	cases := []struct {
		name string
		call Call
		want invoke.Env
	}{
		{"defaults", Call{Netns: cont.Path()},
			invoke.Env{Command: "ADD", ContainerID: "ctr1", Netns: cont.Path(), IfName: "eth0", Path: "/defaults"}},
		{"the call's own values", Call{ContainerID: "c9", Netns: cont.Path(), IfName: "net1", CNIArgs: "IgnoreUnknown=1", Path: "/mine"},
			invoke.Env{Command: "ADD", ContainerID: "c9", Netns: cont.Path(), IfName: "net1", CNIArgs: "IgnoreUnknown=1", Path: "/mine"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := NewHost(t, "plugintest-recorder")
			h.Defaults.Path = "/defaults"
			seen.host = h
			tc.call.Conf = Conf(t, "plugintest-recorder", "net", nil)
			res, raw := h.MustAdd(tc.call)
			if seen.env != tc.want {
				t.Errorf("plugin saw %+v, want %+v", seen.env, tc.want)
			}
			if !seen.inHost {
				t.Error("the plugin did not run in the host namespace")
			}
			if len(res.Interfaces) != 1 || res.Interfaces[0].Name != tc.want.IfName {
				t.Errorf("result %s", raw)
			}
		})
	}
}

func TestConf(t *testing.T) {
	cases := []struct {
		name string
		keys map[string]any
		want map[string]any
	}{
		{"common keys", nil, map[string]any{"cniVersion": "1.1.0", "name": "n", "type": "p"}},
		{"extra and replaced keys", map[string]any{"mtu": 1400, "cniVersion": "1.0.0"},
			map[string]any{"cniVersion": "1.0.0", "name": "n", "type": "p", "mtu": 1400.0}},
		{"nil removes", map[string]any{"cniVersion": nil, "ipam": map[string]any(nil), "x": []string(nil)},
			map[string]any{"name": "n", "type": "p"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got map[string]any
			if err := json.Unmarshal(Conf(t, "p", "n", tc.keys), &got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Conf = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestWithPrevResult(t *testing.T) {
	got := WithPrevResult(t, []byte(`{"name":"n","prevResult":{"old":1}}`), []byte(`{"cniVersion":"1.1.0"}`))
	if want := `{"name":"n","prevResult":{"cniVersion":"1.1.0"}}`; string(got) != want {
		t.Errorf("WithPrevResult = %s, want %s", got, want)
	}
}
