package runtime

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/cnikit/cnikit/cni"
)

func TestVersionInfo(t *testing.T) {
	tests := []struct {
		name    string
		script  *behavior
		want    []string
		wantErr string
	}{
		{name: "current plugin", want: cni.AllVersions},
		{name: "0.2.0 answer without supportedVersions", script: &behavior{Result: json.RawMessage(`{"cniVersion":"0.2.0"}`)}, want: []string{"0.1.0", "0.2.0"}},
		{name: "plugin predating VERSION", script: &behavior{Error: json.RawMessage(`{"code":4,"msg":"unknown CNI_COMMAND: VERSION"}`)}, want: []string{"0.1.0"}},
		{name: "missing supportedVersions", script: &behavior{Result: json.RawMessage(`{"cniVersion":"1.0.0"}`)}, wantErr: "missing field supportedVersions"},
		{name: "plugin error", script: &behavior{Error: json.RawMessage(`{"code":100,"msg":"broken"}`)}, wantErr: "broken"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, "alpha")
			if tt.script != nil {
				r.script("alpha", map[string]behavior{"VERSION": *tt.script})
			}
			info, err := r.rt.VersionInfo(bg, "alpha")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("VersionInfo = %+v, %v; want error %q", info, err, tt.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(info.SupportedVersions, tt.want) {
				t.Fatalf("VersionInfo = %+v, %v; want %v", info, err, tt.want)
			}
			c := r.calls()[0]
			want := map[string]string{"CNI_COMMAND": "VERSION", "CNI_CONTAINERID": "", "CNI_NETNS": "dummy", "CNI_IFNAME": "dummy", "CNI_ARGS": "", "CNI_PATH": "dummy"}
			for k, v := range want {
				if got, ok := c.Env[k]; !ok || got != v {
					t.Errorf("VERSION env %s = %q, want %q", k, got, v)
				}
			}
			if string(c.Stdin) != `{"cniVersion":"1.1.0"}` {
				t.Errorf("VERSION stdin = %s", c.Stdin)
			}
		})
	}
}

func TestValidateList(t *testing.T) {
	r := newRig(t, "alpha", "beta")
	list := parseList(t, `{"cniVersion":"1.0.0","name":"net1","plugins":[
		{"type":"alpha","capabilities":{"portMappings":true,"mac":false}},
		{"type":"beta","capabilities":{"bandwidth":true,"portMappings":true}}]}`)
	caps, err := r.rt.ValidateList(bg, list)
	if err != nil || strings.Join(caps, ",") != "bandwidth,portMappings" {
		t.Fatalf("ValidateList = %v, %v", caps, err)
	}

	r.script("beta", map[string]behavior{"VERSION": {Result: json.RawMessage(`{"cniVersion":"0.4.0","supportedVersions":["0.3.1","0.4.0"]}`)}})
	list.Plugins = append(list.Plugins, &cni.PluginConfig{Network: cni.PluginConf{Type: "gone"}, Bytes: []byte(`{"type":"gone"}`)})
	caps, err = r.rt.ValidateList(bg, list)
	if err == nil || caps != nil {
		t.Fatalf("ValidateList = %v, %v; want an error", caps, err)
	}
	for _, want := range []string{`plugin beta does not support config version "1.0.0"`, `plugin gone: failed to find plugin "gone"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}
