package cni

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestParseConfigListKeys(t *testing.T) {
	data := `{
		"cniVersion": "0.4.0",
		"cniVersions": ["1.0.0", "0.3.1"],
		"name": "mynet",
		"disableCheck": true,
		"disableGC": "TRUE",
		"loadOnlyInlinedPlugins": "false",
		"plugins": [
			{"type": "bridge", "bridge": "cni0", "weird": 1.0e2, "ipam": {"type": "host-local", "subnet": "10.1.0.0/16"}},
			{"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}
		],
		"unknown": {"kept": "in Bytes"}
	}`
	list, err := ParseConfigList([]byte(data))
	if err != nil {
		t.Fatal(err)
	}
	if list.Name != "mynet" || list.CNIVersion != "1.0.0" || !list.DisableCheck || !list.DisableGC || list.LoadOnlyInlinedPlugins {
		t.Errorf("list = %+v", list)
	}
	if !reflect.DeepEqual(list.CNIVersions, []string{"1.0.0", "0.3.1"}) {
		t.Errorf("CNIVersions = %v", list.CNIVersions)
	}
	if string(list.Bytes) != data {
		t.Error("Bytes is not the input")
	}
	if len(list.Plugins) != 2 {
		t.Fatalf("%d plugins", len(list.Plugins))
	}
	bridge, portmap := list.Plugins[0], list.Plugins[1]
	if bridge.Network.Type != "bridge" || bridge.Network.IPAM.Type != "host-local" {
		t.Errorf("bridge = %+v", bridge.Network)
	}
	if want := `{"type": "bridge", "bridge": "cni0", "weird": 1.0e2, "ipam": {"type": "host-local", "subnet": "10.1.0.0/16"}}`; string(bridge.Bytes) != want {
		t.Errorf("bridge bytes = %s, want them as written", bridge.Bytes)
	}
	if !portmap.Network.Capabilities["portMappings"] {
		t.Errorf("portmap capabilities = %v", portmap.Network.Capabilities)
	}
}

func TestParseConfigListBooleans(t *testing.T) {
	tests := []struct {
		value   string
		want    bool
		wantErr bool
	}{
		{`true`, true, false},
		{`false`, false, false},
		{`"true"`, true, false},
		{`"TRUE"`, true, false},
		{`"True"`, true, false},
		{`"false"`, false, false},
		{`"FaLsE"`, false, false},
		{`"yes"`, false, true},
		{`"1"`, false, true},
		{`1`, false, true},
		{`null`, false, true},
		{`""`, false, true},
	}
	for _, key := range []string{"disableCheck", "disableGC", "loadOnlyInlinedPlugins"} {
		for _, tt := range tests {
			t.Run(key+"="+tt.value, func(t *testing.T) {
				data := `{"name":"n","plugins":[{"type":"x"}],"` + key + `":` + tt.value + `}`
				list, err := ParseConfigList([]byte(data))
				if tt.wantErr {
					if err == nil {
						t.Fatal("no error")
					}
					if CodeOf(err) != CodeInvalidNetworkConfig || !strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), tt.value) {
						t.Errorf("error %v (code %d) should be code 7 and name %s and %s", err, CodeOf(err), key, tt.value)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				got := map[string]bool{"disableCheck": list.DisableCheck, "disableGC": list.DisableGC,
					"loadOnlyInlinedPlugins": list.LoadOnlyInlinedPlugins}
				for k, v := range got {
					want := k == key && tt.want
					if v != want {
						t.Errorf("%s = %v, want %v", k, v, want)
					}
				}
			})
		}
	}
}

func TestParseConfigListVersionSelection(t *testing.T) {
	tests := []struct {
		name     string
		versions string // the cniVersion and cniVersions keys, JSON
		want     string
		wantErr  string
	}{
		{"cniVersion alone", `"cniVersion":"0.3.1"`, "0.3.1", ""},
		{"cniVersion alone is not clamped", `"cniVersion":"2.5.0"`, "2.5.0", ""},
		{"no version at all", ``, "", ""},
		{"empty cniVersions without cniVersion", `"cniVersions":[]`, "", ""},
		{"cniVersions highest wins", `"cniVersions":["0.4.0","1.0.0","0.3.1"]`, "1.0.0", ""},
		{"cniVersion higher than the list", `"cniVersion":"1.1.0","cniVersions":["0.4.0"]`, "1.1.0", ""},
		{"list higher than cniVersion", `"cniVersion":"0.3.1","cniVersions":["1.0.0"]`, "1.0.0", ""},
		{"entries newer than 1.1.0 dropped", `"cniVersions":["1.0.0","1.2.0","2.0.0"]`, "1.0.0", ""},
		{"newer cniVersion dropped too", `"cniVersion":"1.5.0","cniVersions":["0.4.0"]`, "0.4.0", ""},
		{"all too new keeps cniVersion", `"cniVersion":"2.0.0","cniVersions":["3.0.0"]`, "2.0.0", ""},
		{"short versions compare numerically", `"cniVersions":["0.4","1.0"]`, "1.0", ""},
		{"unparseable entry", `"cniVersions":["1.0.0","one"]`, "", `"one"`},
		{"unparseable entry even if newer", `"cniVersions":["1.0.0","9.x"]`, "", `"9.x"`},
		{"unparseable cniVersion", `"cniVersion":"v1"`, "", `"v1"`},
		{"unparseable cniVersion with list", `"cniVersion":"1.0.0.0","cniVersions":["1.0.0"]`, "", `"1.0.0.0"`},
		{"cniVersions not a list", `"cniVersions":"1.0.0"`, "", "cniVersions"},
		{"cniVersions entry not a string", `"cniVersions":[1]`, "", "cniVersions"},
		{"cniVersion not a string", `"cniVersion":1.0`, "", "cniVersion"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sep := ""
			if tt.versions != "" {
				sep = ","
			}
			data := `{"name":"n","plugins":[{"type":"x"}]` + sep + tt.versions + `}`
			list, err := ParseConfigList([]byte(data))
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("no error, version %q", list.CNIVersion)
				}
				if CodeOf(err) != CodeInvalidNetworkConfig || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error %v (code %d), want code 7 mentioning %s", err, CodeOf(err), tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if list.CNIVersion != tt.want {
				t.Errorf("version %q, want %q", list.CNIVersion, tt.want)
			}
		})
	}
}

func TestParseConfigListErrors(t *testing.T) {
	tests := []struct {
		name, data string
		code       Code
		wantMsg    string
	}{
		{"not JSON", `{"name":`, CodeDecodingFailure, "error parsing configuration list"},
		{"trailing data", `{"name":"n","plugins":[{"type":"x"}]} {}`, CodeDecodingFailure, "not a JSON object"},
		{"an array", `[{"name":"n"}]`, CodeDecodingFailure, "not a JSON object"},
		{"null", `null`, CodeDecodingFailure, "not a JSON object"},
		{"missing name", `{"plugins":[{"type":"x"}]}`, CodeInvalidNetworkConfig, "no name"},
		{"name not a string", `{"name":5,"plugins":[{"type":"x"}]}`, CodeInvalidNetworkConfig, "invalid name 5"},
		{"name null", `{"name":null,"plugins":[{"type":"x"}]}`, CodeInvalidNetworkConfig, "invalid name null"},
		{"empty plugins", `{"name":"n","plugins":[]}`, CodeInvalidNetworkConfig, "no plugins in list"},
		{"plugins not a list", `{"name":"n","plugins":{"type":"x"}}`, CodeInvalidNetworkConfig, "invalid plugins"},
		{"plugins null", `{"name":"n","plugins":null}`, CodeInvalidNetworkConfig, "invalid plugins"},
		{"plugin missing type", `{"name":"n","plugins":[{"type":"x"},{"name":"y"}]}`, CodeInvalidNetworkConfig, "plugin 1: error parsing plugin configuration: missing 'type'"},
		{"plugin empty type", `{"name":"n","plugins":[{"type":""}]}`, CodeInvalidNetworkConfig, "missing 'type'"},
		{"plugin not an object", `{"name":"n","plugins":[42]}`, CodeDecodingFailure, "plugin 0"},
		{"plugin type not a string", `{"name":"n","plugins":[{"type":7}]}`, CodeDecodingFailure, "type"},
		{"loadOnlyInlinedPlugins without plugins", `{"name":"n","loadOnlyInlinedPlugins":true}`, CodeInvalidNetworkConfig, "loadOnlyInlinedPlugins"},
		{"loadOnlyInlinedPlugins string without plugins", `{"name":"n","loadOnlyInlinedPlugins":"True"}`, CodeInvalidNetworkConfig, "no plugins key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfigList([]byte(tt.data))
			if err == nil {
				t.Fatal("no error")
			}
			if CodeOf(err) != tt.code || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q (code %d), want code %d mentioning %q", err, CodeOf(err), tt.code, tt.wantMsg)
			}
		})
	}
}

func TestParseConfigListWithoutPlugins(t *testing.T) {
	// Plugins may come from the sibling folder, which the runtime's loader reads.
	for _, data := range []string{`{"name":"n"}`, `{"name":"n","loadOnlyInlinedPlugins":false}`} {
		list, err := ParseConfigList([]byte(data))
		if err != nil {
			t.Errorf("%s: %v", data, err)
			continue
		}
		if len(list.Plugins) != 0 {
			t.Errorf("%s: %d plugins", data, len(list.Plugins))
		}
	}
}

func TestParseConfigListPluginBytesDoNotAlias(t *testing.T) {
	data := []byte(`{"name":"n","plugins":[{"type":"x"}]}`)
	list, err := ParseConfigList(data)
	if err != nil {
		t.Fatal(err)
	}
	copy(data, "XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX")
	if string(list.Plugins[0].Bytes) != `{"type":"x"}` {
		t.Errorf("plugin bytes changed with the input buffer: %s", list.Plugins[0].Bytes)
	}
}

func TestParsePluginConfig(t *testing.T) {
	data := `{"cniVersion":"1.1.0","name":"n","type":"bridge","capabilities":{"ips":true,"mac":false},
		"ipam":{"type":"static"},"dns":{"nameservers":["10.0.0.1"]},"runtimeConfig":{"ips":["10.0.0.5/24"]},
		"cni.dev/valid-attachments":[{"containerID":"c1","ifname":"eth0"}]}`
	p, err := ParsePluginConfig([]byte(data))
	if err != nil {
		t.Fatal(err)
	}
	want := PluginConf{CNIVersion: "1.1.0", Name: "n", Type: "bridge",
		Capabilities: map[string]bool{"ips": true, "mac": false}, IPAM: IPAM{Type: "static"},
		DNS:              DNS{Nameservers: []string{"10.0.0.1"}},
		ValidAttachments: []GCAttachment{{ContainerID: "c1", IfName: "eth0"}}}
	if !reflect.DeepEqual(p.Network, want) {
		t.Errorf("got  %+v\nwant %+v", p.Network, want)
	}
	if string(p.Bytes) != data {
		t.Error("Bytes is not the input")
	}
	for _, bad := range []string{`{}`, `{"type":""}`, `null`, `"bridge"`, `{"type":"x"`, `{"type":"x","ipam":"host-local"}`} {
		if _, err := ParsePluginConfig([]byte(bad)); err == nil {
			t.Errorf("ParsePluginConfig(%s) succeeded", bad)
		}
	}
}

func TestGCValidAttachments(t *testing.T) {
	tests := []struct {
		name, data string
		want       []GCAttachment
	}{
		{"current key", `{"cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}]}`, []GCAttachment{{"a", "eth0"}}},
		{"older key", `{"cni.dev/attachments":[{"containerID":"b","ifname":"eth1"}]}`, []GCAttachment{{"b", "eth1"}}},
		{"both: current wins", `{"cni.dev/attachments":[{"containerID":"b","ifname":"eth1"}],"cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}]}`, []GCAttachment{{"a", "eth0"}}},
		{"empty current list wins", `{"cni.dev/attachments":[{"containerID":"b","ifname":"eth1"}],"cni.dev/valid-attachments":[]}`, []GCAttachment{}},
		{"neither", `{}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c PluginConf
			if err := json.Unmarshal([]byte(tt.data), &c); err != nil {
				t.Fatal(err)
			}
			if got := c.GCValidAttachments(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestParsePrevResult(t *testing.T) {
	tests := []struct {
		name, conf  string
		wantIPs     int
		wantVersion string
		wantErr     bool
	}{
		{"none", `{"cniVersion":"1.0.0"}`, -1, "", false},
		{"null", `{"cniVersion":"1.0.0","prevResult":null}`, -1, "", false},
		{"with its own version", `{"cniVersion":"1.0.0","prevResult":{"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.0.0.2/24"}]}}`, 1, "0.4.0", false},
		{"without version reads the config's", `{"cniVersion":"1.1.0","prevResult":{"ips":[{"address":"10.0.0.2/24"}]}}`, 1, "1.1.0", false},
		{"legacy config version", `{"cniVersion":"0.2.0","prevResult":{"ip4":{"ip":"10.0.0.2/24"}}}`, 1, "0.2.0", false},
		{"broken", `{"cniVersion":"1.0.0","prevResult":{"ips":[{"address":"nope"}]}}`, 0, "", true},
		{"not an object", `{"cniVersion":"1.0.0","prevResult":"x"}`, 0, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c PluginConf
			if err := json.Unmarshal([]byte(tt.conf), &c); err != nil {
				t.Fatal(err)
			}
			err := c.ParsePrevResult()
			if tt.wantErr {
				if CodeOf(err) != CodeDecodingFailure || !strings.Contains(err.Error(), "prevResult") {
					t.Errorf("error %v, want code 6 about prevResult", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantIPs < 0 {
				if c.PrevResult != nil {
					t.Errorf("PrevResult = %+v, want nil", c.PrevResult)
				}
				return
			}
			if c.PrevResult == nil || len(c.PrevResult.IPs) != tt.wantIPs || c.PrevResult.CNIVersion != tt.wantVersion {
				t.Errorf("PrevResult = %+v", c.PrevResult)
			}
		})
	}
}

func TestConfigListFromPlugin(t *testing.T) {
	p, err := ParsePluginConfig([]byte(`{"cniVersion":"0.3.1","name":"legacy","type":"bridge","extra":[1, 2]}`))
	if err != nil {
		t.Fatal(err)
	}
	list, err := ConfigListFromPlugin(p)
	if err != nil {
		t.Fatal(err)
	}
	if list.Name != "legacy" || list.CNIVersion != "0.3.1" || len(list.Plugins) != 1 || list.Plugins[0] != p {
		t.Errorf("list = %+v", list)
	}
	again, err := ParseConfigList(list.Bytes)
	if err != nil {
		t.Fatalf("the list's bytes do not parse: %v\n%s", err, list.Bytes)
	}
	if again.Name != "legacy" || again.CNIVersion != "0.3.1" || string(again.Plugins[0].Bytes) != `{"cniVersion":"0.3.1","name":"legacy","type":"bridge","extra":[1,2]}` {
		t.Errorf("re-parsed list = %+v, plugin %s", again, again.Plugins[0].Bytes)
	}

	p.Network.Name = ""
	if _, err := ConfigListFromPlugin(p); CodeOf(err) != CodeInvalidNetworkConfig {
		t.Errorf("a plugin without name: %v, want code 7", err)
	}
}
