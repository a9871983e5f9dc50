package runtime

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cnikit/cnikit/cni"
)

// confDir writes files (relative path → content) into a fresh directory.
func confDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func pluginTypes(list *cni.ConfigList) string {
	var types []string
	for _, p := range list.Plugins {
		types = append(types, p.Network.Type)
	}
	return strings.Join(types, ",")
}

func TestConfFiles(t *testing.T) {
	dir := confDir(t, map[string]string{
		"20-b.conflist": "", "10-a.conf": "", "30-c.json": "", "99-x.txt": "", "05-z.conflist.bak": "",
		"sub.conflist/inner.conf": "", // a directory with a config extension is skipped
	})
	got, err := ConfFiles(dir, ".conf", ".conflist")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range got {
		names = append(names, filepath.Base(f))
	}
	if strings.Join(names, " ") != "10-a.conf 20-b.conflist" {
		t.Errorf("ConfFiles = %v", names)
	}
	if got, err := ConfFiles(filepath.Join(dir, "missing"), ".conf"); got != nil || err != nil {
		t.Errorf("missing dir: %v, %v", got, err)
	}
}

func TestLoadList(t *testing.T) {
	tests := []struct {
		name      string
		files     map[string]string
		network   string
		wantTypes string
		wantErr   string
		wantCode  cni.Code
	}{
		{
			name: "first matching .conflist in lexical order",
			files: map[string]string{
				"20-net.conflist": `{"cniVersion":"1.0.0","name":"net","plugins":[{"type":"second"}]}`,
				"10-net.conflist": `{"cniVersion":"1.0.0","name":"net","plugins":[{"type":"first"}]}`,
				"05-net.conf":     `{"cniVersion":"1.0.0","name":"net","type":"single"}`,
			},
			network: "net", wantTypes: "first",
		},
		{
			name: ".conf when no .conflist matches",
			files: map[string]string{
				"10-other.conflist": `{"cniVersion":"1.0.0","name":"other","plugins":[{"type":"x"}]}`,
				"20-net.json":       `{"cniVersion":"0.4.0","name":"net","type":"fromjson"}`,
				"30-net.conf":       `{"cniVersion":"0.4.0","name":"net","type":"fromconf"}`,
			},
			network: "net", wantTypes: "fromjson",
		},
		{
			name: "sibling folder plugins appended in lexical order",
			files: map[string]string{
				"10-net.conflist":   `{"cniVersion":"1.0.0","name":"net","plugins":[{"type":"inline"}]}`,
				"net/20-b.conf":     `{"type":"folder-b"}`,
				"net/10-a.conf":     `{"type":"folder-a"}`,
				"net/30-c.conflist": `{"type":"ignored"}`,
			},
			network: "net", wantTypes: "inline,folder-a,folder-b",
		},
		{
			name: "folder alone supplies the plugins",
			files: map[string]string{
				"10-net.conflist": `{"cniVersion":"1.0.0","name":"net"}`,
				"net/a.conf":      `{"type":"folder-a"}`,
			},
			network: "net", wantTypes: "folder-a",
		},
		{
			name: "loadOnlyInlinedPlugins ignores the folder",
			files: map[string]string{
				"10-net.conflist": `{"cniVersion":"1.0.0","name":"net","loadOnlyInlinedPlugins":"TRUE","plugins":[{"type":"inline"}]}`,
				"net/a.conf":      `{"type":"folder-a"}`,
			},
			network: "net", wantTypes: "inline",
		},
		{
			name: "no plugins anywhere",
			files: map[string]string{
				"10-net.conflist": `{"cniVersion":"1.0.0","name":"net"}`,
			},
			network: "net", wantErr: "no plugin configs found", wantCode: cni.CodeInvalidNetworkConfig,
		},
		{
			name: "bad folder plugin",
			files: map[string]string{
				"10-net.conflist": `{"cniVersion":"1.0.0","name":"net","plugins":[{"type":"inline"}]}`,
				"net/a.conf":      `{"notype":true}`,
			},
			network: "net", wantErr: "missing 'type'", wantCode: cni.CodeInvalidNetworkConfig,
		},
		{
			name: "a broken file before the match fails the load",
			files: map[string]string{
				"10-broken.conflist": `{"name":`,
				"20-net.conflist":    `{"cniVersion":"1.0.0","name":"net","plugins":[{"type":"x"}]}`,
			},
			network: "net", wantErr: "10-broken.conflist", wantCode: cni.CodeDecodingFailure,
		},
		{
			name: "a broken file after the match does not matter",
			files: map[string]string{
				"10-net.conflist":    `{"cniVersion":"1.0.0","name":"net","plugins":[{"type":"x"}]}`,
				"20-broken.conflist": `{"name":`,
			},
			network: "net", wantTypes: "x",
		},
		{
			name:    "empty plugins list",
			files:   map[string]string{"10-net.conflist": `{"cniVersion":"1.0.0","name":"net","plugins":[]}`},
			network: "net", wantErr: "no plugins in list", wantCode: cni.CodeInvalidNetworkConfig,
		},
		{
			name:    "not found",
			files:   map[string]string{"10-other.conflist": `{"cniVersion":"1.0.0","name":"other","plugins":[{"type":"x"}]}`},
			network: "net", wantErr: `no net configuration with name "net" in `, wantCode: cni.CodeInvalidNetworkConfig,
		},
		{
			name:    "no configurations",
			files:   map[string]string{"README": "hello"},
			network: "net", wantErr: "no net configurations found in ", wantCode: cni.CodeInvalidNetworkConfig,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := confDir(t, tt.files)
			list, err := LoadList(dir, tt.network)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || cni.CodeOf(err) != tt.wantCode {
					t.Fatalf("LoadList = %v; want code %d containing %q", err, tt.wantCode, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := pluginTypes(list); got != tt.wantTypes || list.Name != tt.network {
				t.Errorf("loaded %s with plugins %s, want %s", list.Name, got, tt.wantTypes)
			}
		})
	}
}

func TestLoadListTypedErrors(t *testing.T) {
	dir := confDir(t, map[string]string{"a.conflist": `{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"x"}]}`})
	_, err := LoadList(dir, "b")
	var nf *NotFoundError
	if !errors.As(err, &nf) || nf.Name != "b" || nf.Dir != dir {
		t.Errorf("LoadList = %#v, want *NotFoundError", err)
	}
	_, err = LoadList(t.TempDir(), "b")
	var none *NoConfigsError
	if !errors.As(err, &none) {
		t.Errorf("LoadList in an empty dir = %#v, want *NoConfigsError", err)
	}
}

func TestLoadListFileConvertsSinglePluginConf(t *testing.T) {
	conf := `{"cniVersion":"0.4.0","name":"single","type":"bridge","bridge":"cni0","unknown":{"kept":[1,2]}}`
	dir := confDir(t, map[string]string{"10-single.conf": conf, "single/extra.conf": `{"type":"never"}`})
	list, err := LoadListFile(filepath.Join(dir, "10-single.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if list.Name != "single" || list.CNIVersion != "0.4.0" || pluginTypes(list) != "bridge" || string(list.Plugins[0].Bytes) != conf {
		t.Errorf("list = %+v, plugin bytes %s", list, list.Plugins[0].Bytes)
	}
}

func TestLoadAll(t *testing.T) {
	dir := confDir(t, map[string]string{
		"30-a.conflist":   `{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"a-list"}]}`,
		"10-a.conf":       `{"cniVersion":"1.0.0","name":"a","type":"a-conf"}`, // loses to the .conflist
		"20-b.conflist":   `{"cniVersion":"1.0.0","name":"b","plugins":[{"type":"b1"}]}`,
		"25-b.conflist":   `{"cniVersion":"1.0.0","name":"b","plugins":[{"type":"b2"}]}`, // loses to 20-b
		"40-bad.conflist": `{"name":`,
		"50-c.json":       `{"cniVersion":"0.3.1","name":"c","type":"c-json"}`,
	})
	lists, err := LoadAll(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range lists {
		got = append(got, l.Name+":"+pluginTypes(l))
	}
	if strings.Join(got, " ") != "b:b1 a:a-list c:c-json" {
		t.Errorf("LoadAll = %v", got)
	}
	if lists, err := LoadAll(filepath.Join(dir, "missing")); lists != nil || err != nil {
		t.Errorf("missing dir: %v, %v", lists, err)
	}
}
