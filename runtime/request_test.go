package runtime

import (
	"testing"

	"github.com/cnikit/cnikit/cni"
)

func TestRequestConfig(t *testing.T) {
	list := &cni.ConfigList{Name: "net1", CNIVersion: "1.0.0"}
	// Odd spacing, number formats and key order must survive untouched.
	plugin := &cni.PluginConfig{
		Network: cni.PluginConf{Type: "alpha", Capabilities: map[string]bool{"portMappings": true, "mac": false, "ips": true}},
		Bytes: []byte(`{"type":"alpha","cniVersion":"0.3.1","weird": [1, 2.50, {"z":1,"a":2}],` +
			`"capabilities":{"portMappings":true,"mac":false,"ips":true},"prevResult":{"stale":true},"name":"own","big":12345678901234567890}`),
	}
	capArgs := map[string]any{
		"portMappings": []map[string]any{{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}},
		"mac":          "c2:11:22:33:44:55",              // declared false: withheld
		"bandwidth":    map[string]any{"ingressRate": 1}, // not declared: withheld
	}
	prev := []byte(`{"cniVersion":"1.0.0","interfaces":[{"name":"eth0"}]}`)
	tests := []struct {
		name string
		req  request
		want string
	}{
		{
			name: "first ADD: runtimeConfig filtered, stale prevResult and capabilities removed",
			req:  request{verb: "ADD", capabilityArgs: capArgs},
			want: `{"type":"alpha","cniVersion":"1.0.0","weird":[1, 2.50, {"z":1,"a":2}],"name":"net1","big":12345678901234567890,` +
				`"runtimeConfig":{"portMappings":[{"containerPort":80,"hostPort":8080,"protocol":"tcp"}]}}`,
		},
		{
			name: "chained ADD: prevResult replaced in place",
			req:  request{verb: "ADD", prevResult: prev},
			want: `{"type":"alpha","cniVersion":"1.0.0","weird":[1, 2.50, {"z":1,"a":2}],"prevResult":` + string(prev) + `,"name":"net1","big":12345678901234567890}`,
		},
		{
			name: "DEL: prevResult and runtimeConfig",
			req:  request{verb: "DEL", prevResult: prev, capabilityArgs: map[string]any{"ips": []string{"10.0.0.5/24"}}},
			want: `{"type":"alpha","cniVersion":"1.0.0","weird":[1, 2.50, {"z":1,"a":2}],"prevResult":` + string(prev) + `,"name":"net1","big":12345678901234567890,` +
				`"runtimeConfig":{"ips":["10.0.0.5/24"]}}`,
		},
		{
			name: "CHECK without capability arguments: no runtimeConfig key",
			req:  request{verb: "CHECK", prevResult: prev},
			want: `{"type":"alpha","cniVersion":"1.0.0","weird":[1, 2.50, {"z":1,"a":2}],"prevResult":` + string(prev) + `,"name":"net1","big":12345678901234567890}`,
		},
		{
			name: "STATUS: only name and cniVersion",
			req:  request{verb: "STATUS", capabilityArgs: capArgs, prevResult: prev},
			want: `{"type":"alpha","cniVersion":"1.0.0","weird":[1, 2.50, {"z":1,"a":2}],` +
				`"capabilities":{"portMappings":true,"mac":false,"ips":true},"prevResult":{"stale":true},"name":"net1","big":12345678901234567890}`,
		},
		{
			name: "GC keeping nothing: both keys, empty list not null",
			req:  request{verb: "GC"},
			want: `{"type":"alpha","cniVersion":"1.0.0","weird":[1, 2.50, {"z":1,"a":2}],` +
				`"capabilities":{"portMappings":true,"mac":false,"ips":true},"prevResult":{"stale":true},"name":"net1","big":12345678901234567890,` +
				`"cni.dev/valid-attachments":[],"cni.dev/attachments":[]}`,
		},
		{
			name: "GC keeping attachments",
			req:  request{verb: "GC", valid: []cni.GCAttachment{{ContainerID: "c1", IfName: "eth0"}}},
			want: `{"type":"alpha","cniVersion":"1.0.0","weird":[1, 2.50, {"z":1,"a":2}],` +
				`"capabilities":{"portMappings":true,"mac":false,"ips":true},"prevResult":{"stale":true},"name":"net1","big":12345678901234567890,` +
				`"cni.dev/valid-attachments":[{"containerID":"c1","ifname":"eth0"}],"cni.dev/attachments":[{"containerID":"c1","ifname":"eth0"}]}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := requestConfig(list, plugin, tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("request:\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestRequestConfigAddsMissingNameAndVersion(t *testing.T) {
	list := &cni.ConfigList{Name: "net1", CNIVersion: "1.1.0"}
	plugin := &cni.PluginConfig{Network: cni.PluginConf{Type: "alpha"}, Bytes: []byte(`{"type":"alpha"}`)}
	got, err := requestConfig(list, plugin, request{verb: "ADD"})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"type":"alpha","name":"net1","cniVersion":"1.1.0"}`; string(got) != want {
		t.Errorf("request = %s, want %s", got, want)
	}
}
