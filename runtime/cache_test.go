package runtime

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cnikit/cnikit/cni"
)

// TestCacheGolden pins the cache entry to the reference library's encoding:
// its field order, base64 config, sorted result and capability keys, and the
// file and directory modes (spec-notes §3.4).
func TestCacheGolden(t *testing.T) {
	r := newRig(t, "alpha")
	r.script("alpha", map[string]behavior{"ADD": {Result: json.RawMessage(`{
		"cniVersion": "1.0.0",
		"interfaces": [{"name": "eth0", "mac": "0a:58:0a:01:02:03", "sandbox": "/run/netns/c1"}],
		"ips": [{"address": "10.1.2.3/24", "gateway": "10.1.2.1", "interface": 0}],
		"routes": [{"dst": "0.0.0.0/0"}],
		"dns": {"nameservers": ["10.1.2.1"]}}`)}})
	conf := `{"cniVersion":"1.0.0","name":"net1","plugins":[{"type":"alpha","capabilities":{"portMappings":true}}]}`
	list := parseList(t, conf)
	att := &Attachment{ContainerID: "c1", Netns: "/run/netns/c1", IfName: "eth0",
		Args:           [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAME", "web"}},
		CapabilityArgs: map[string]any{"portMappings": []any{map[string]any{"protocol": "tcp", "hostPort": 8080, "containerPort": 80}}, "mac": "c2:11:22:33:44:55"},
	}
	if _, err := r.rt.Add(bg, list, att); err != nil {
		t.Fatal(err)
	}
	want := `{"kind":"cniCacheV1","containerId":"c1","config":"` + base64.StdEncoding.EncodeToString([]byte(conf)) + `",` +
		`"ifName":"eth0","networkName":"net1","netns":"/run/netns/c1",` +
		`"cniArgs":[["IgnoreUnknown","1"],["K8S_POD_NAME","web"]],` +
		`"capabilityArgs":{"mac":"c2:11:22:33:44:55","portMappings":[{"containerPort":80,"hostPort":8080,"protocol":"tcp"}]},` +
		`"result":{"cniVersion":"1.0.0","dns":{"nameservers":["10.1.2.1"]},` +
		`"interfaces":[{"mac":"0a:58:0a:01:02:03","name":"eth0","sandbox":"/run/netns/c1"}],` +
		`"ips":[{"address":"10.1.2.3/24","gateway":"10.1.2.1","interface":0}],"routes":[{"dst":"0.0.0.0/0"}]}}`
	path := filepath.Join(r.cache, "results", "net1-c1-eth0")
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("cache entry:\n got %s\nwant %s", got, want)
	}
	for p, mode := range map[string]os.FileMode{path: 0o600, filepath.Dir(path): 0o700 | os.ModeDir} {
		if st, err := os.Stat(p); err != nil || st.Mode() != mode {
			t.Errorf("%s: mode %v, want %v (%v)", p, st.Mode(), mode, err)
		}
	}
	// Field by field, as spec-notes §3.4 lists them.
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(got, &fields); err != nil {
		t.Fatal(err)
	}
	for key, value := range map[string]string{"kind": `"cniCacheV1"`, "containerId": `"c1"`, "ifName": `"eth0"`, "networkName": `"net1"`, "netns": `"/run/netns/c1"`} {
		if string(fields[key]) != value {
			t.Errorf("%s = %s, want %s", key, fields[key], value)
		}
	}
	// No stray temporary files are left beside the entry.
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("results dir holds %d files, want 1", len(entries))
	}
}

func TestCacheOmitsEmptyOptionalFields(t *testing.T) {
	r := newRig(t, "alpha")
	list := parseList(t, `{"cniVersion":"1.0.0","name":"net1","plugins":[{"type":"alpha"}]}`)
	if _, err := r.rt.Add(bg, list, &Attachment{ContainerID: "c1", IfName: "eth0"}); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(r.cache, "results", "net1-c1-eth0"))
	for _, key := range []string{`"netns"`, `"cniArgs"`, `"capabilityArgs"`} {
		if strings.Contains(string(got), key) {
			t.Errorf("entry has empty %s: %s", key, got)
		}
	}
}

// writeEntry puts a raw cache file in place, as another runtime would.
func writeEntry(t *testing.T, r *rig, name, content string) {
	t.Helper()
	dir := filepath.Join(r.cache, "results")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func entryJSON(cid, network, ifname string) string {
	return `{"kind":"cniCacheV1","containerId":"` + cid + `","config":"e30=","ifName":"` + ifname + `","networkName":"` + network +
		`","netns":"/run/netns/` + cid + `","cniArgs":[["K","V"]],"capabilityArgs":{"mac":"c2:11:22:33:44:55"},"result":{"cniVersion":"1.0.0"}}`
}

func TestCachedAttachments(t *testing.T) {
	r := newRig(t)
	if got, err := r.rt.CachedAttachments(""); got != nil || err != nil {
		t.Fatalf("without a cache: %v, %v", got, err)
	}
	writeEntry(t, r, "net2-abc-eth0", entryJSON("abc", "net2", "eth0"))
	writeEntry(t, r, "net1-abc-eth1", entryJSON("abc", "net1", "eth1"))
	writeEntry(t, r, "net1-abcd-eth0", entryJSON("abcd", "net1", "eth0"))
	writeEntry(t, r, "net1-x-abc-eth0", entryJSON("x-abc", "net1", "eth0")) // infix matches "abc" but the ID does not
	writeEntry(t, r, "net1-old-eth0", `{"cniVersion":"0.4.0","ips":[]}`)    // legacy bare result: no attachment data
	writeEntry(t, r, "net1-noif-", `{"kind":"cniCacheV1","containerId":"noif","networkName":"net1"}`)
	writeEntry(t, r, ".net1-tmp-eth0.tmp-123", entryJSON("tmp", "net1", "eth0"))

	tests := []struct {
		containerID string
		want        string
	}{
		{"", "net1/abc/eth1 net1/abcd/eth0 net1/x-abc/eth0 net2/abc/eth0"},
		{"abc", "net1/abc/eth1 net2/abc/eth0"},
		{"nosuch", ""},
	}
	for _, tt := range tests {
		t.Run("containerID="+tt.containerID, func(t *testing.T) {
			atts, err := r.rt.CachedAttachments(tt.containerID)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, a := range atts {
				got = append(got, a.Network+"/"+a.ContainerID+"/"+a.IfName)
			}
			if strings.Join(got, " ") != tt.want {
				t.Errorf("got %q, want %q", strings.Join(got, " "), tt.want)
			}
		})
	}
	atts, _ := r.rt.CachedAttachments("abcd")
	a := atts[0]
	if a.Netns != "/run/netns/abcd" || len(a.Args) != 1 || a.Args[0] != [2]string{"K", "V"} ||
		a.CapabilityArgs["mac"] != "c2:11:22:33:44:55" || string(a.Config) != "{}" || string(a.Result) != `{"cniVersion":"1.0.0"}` {
		t.Errorf("attachment = %+v", a)
	}
}

func TestCachedResult(t *testing.T) {
	r := newRig(t)
	list := parseList(t, `{"cniVersion":"0.4.0","name":"net1","plugins":[{"type":"alpha"}]}`)
	att := &Attachment{ContainerID: "c1", IfName: "eth0"}
	if res, err := r.rt.CachedResult(list, att); res != nil || err != nil {
		t.Fatalf("nothing cached: %v, %v", res, err)
	}
	tests := []struct {
		name    string
		entry   string
		want    string // the result marshalled as 0.4.0
		wantErr string
	}{
		{"current format, converted", `{"kind":"cniCacheV1","containerId":"c1","ifName":"eth0","networkName":"net1",` +
			`"result":{"cniVersion":"1.1.0","interfaces":[{"name":"eth0","mtu":1400}],"ips":[{"address":"10.0.0.2/24","interface":0}]}}`,
			`{"cniVersion":"0.4.0","interfaces":[{"name":"eth0"}],"ips":[{"version":"4","interface":0,"address":"10.0.0.2/24"}]}`, ""},
		{"legacy bare result", `{"cniVersion":"0.3.1","ips":[{"version":"4","address":"10.0.0.3/24"}]}`,
			`{"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.0.0.3/24"}]}`, ""},
		{"entry without result", `{"kind":"cniCacheV1","containerId":"c1"}`, "", "has no result"},
		{"garbage", `not json`, "", "decoding cached result"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			writeEntry(t, r, "net1-c1-eth0", tt.entry)
			res, err := r.rt.CachedResult(list, att)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("CachedResult = %v, %v; want error %q", res, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, _ := res.Marshal("0.4.0")
			if string(got) != tt.want || res.CNIVersion != "0.4.0" {
				t.Errorf("result = %s (%s)\nwant %s", got, res.CNIVersion, tt.want)
			}
		})
	}
	if _, err := r.rt.CachedResult(list, &Attachment{ContainerID: "../x", IfName: "eth0"}); cni.CodeOf(err) != cni.CodeInvalidEnvironment {
		t.Errorf("a container ID that escapes the cache dir = %v, want code 4", err)
	}
}
