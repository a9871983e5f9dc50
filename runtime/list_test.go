package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cnikit/cnikit/cni"
)

const chain3 = `{"cniVersion":"%s","name":"net1","plugins":[
	{"type":"alpha","capabilities":{"portMappings":true},"alphaKey":{"keep":"me"}},
	{"type":"beta","name":"b-own"},
	{"type":"gamma"}]}`

func chainList(t *testing.T, version string) *cni.ConfigList {
	return parseList(t, strings.Replace(chain3, "%s", version, 1))
}

func testAttachment(cid string) *Attachment {
	return &Attachment{
		ContainerID:    cid,
		Netns:          "/run/netns/" + cid,
		IfName:         "eth0",
		Args:           [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAME", "web"}},
		CapabilityArgs: map[string]any{"portMappings": []any{map[string]any{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}}},
	}
}

func TestAddRunsChainInOrderWithPrevResult(t *testing.T) {
	r := newRig(t, "alpha", "beta", "gamma")
	list := chainList(t, "1.0.0")
	att := testAttachment("c1")
	res, err := r.rt.Add(bg, list, att)
	if err != nil {
		t.Fatal(err)
	}
	calls := r.calls()
	if got := summary(calls); got != "alpha:ADD beta:ADD gamma:ADD" {
		t.Fatalf("calls = %s", got)
	}
	wantEnv := map[string]string{"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/run/netns/c1", "CNI_IFNAME": "eth0",
		"CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAME=web", "CNI_PATH": r.bin}
	for _, c := range calls {
		for k, v := range wantEnv {
			if c.Env[k] != v {
				t.Errorf("%s saw %s=%q, want %q", c.Type, k, c.Env[k], v)
			}
		}
	}
	first := stdinOf(t, calls[0])
	if _, ok := first["prevResult"]; ok {
		t.Error("the first plugin got a prevResult")
	}
	if string(first["runtimeConfig"]) != `{"portMappings":[{"containerPort":80,"hostPort":8080,"protocol":"tcp"}]}` {
		t.Errorf("alpha runtimeConfig = %s", first["runtimeConfig"])
	}
	if string(first["alphaKey"]) != `{"keep":"me"}` {
		t.Errorf("alpha's own key = %s", first["alphaKey"])
	}
	if _, ok := stdinOf(t, calls[1])["runtimeConfig"]; ok {
		t.Error("beta, which declares no capability, got runtimeConfig")
	}
	// Each plugin's prevResult is the previous plugin's result.
	for i, want := range []string{"alpha", "alpha beta"} {
		var prev struct{ Interfaces []struct{ Name string } }
		if err := json.Unmarshal(stdinOf(t, calls[i+1])["prevResult"], &prev); err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, iface := range prev.Interfaces {
			names = append(names, iface.Name)
		}
		if got := strings.Join(names, " "); got != want {
			t.Errorf("%s prevResult interfaces = %q, want %q", calls[i+1].Type, got, want)
		}
	}
	if len(res.Interfaces) != 3 || res.Interfaces[2].Name != "gamma" || res.CNIVersion != "1.0.0" {
		t.Errorf("result = %+v", res)
	}
	cached, err := r.rt.CachedResult(list, att)
	if err != nil || cached == nil || len(cached.Interfaces) != 3 {
		t.Fatalf("CachedResult = %+v, %v", cached, err)
	}
}

func TestAddFailureStopsChainAndCachesNothing(t *testing.T) {
	r := newRig(t, "alpha", "beta", "gamma")
	r.script("beta", map[string]behavior{"ADD": {Error: json.RawMessage(`{"cniVersion":"1.0.0","code":7,"msg":"bad subnet","details":"10.0.0.0/31 is too small"}`)}})
	list := chainList(t, "1.0.0")
	att := testAttachment("c1")
	_, err := r.rt.Add(bg, list, att)
	if err == nil {
		t.Fatal("Add succeeded")
	}
	if want := `plugin type="beta" name="b-own" failed (add): bad subnet; 10.0.0.0/31 is too small`; err.Error() != want {
		t.Errorf("error = %q\nwant %q", err, want)
	}
	var perr *PluginError
	var cerr *cni.Error
	if !errors.As(err, &perr) || perr.Type != "beta" || perr.Verb != "add" {
		t.Errorf("PluginError = %+v", perr)
	}
	if !errors.As(err, &cerr) || cerr.Code != 7 || cerr.Msg != "bad subnet" || cerr.Details != "10.0.0.0/31 is too small" {
		t.Errorf("cni.Error = %+v", cerr)
	}
	if got := summary(r.calls()); got != "alpha:ADD beta:ADD" {
		t.Errorf("calls = %s", got)
	}
	if cached, err := r.rt.CachedResult(list, att); cached != nil || err != nil {
		t.Errorf("a failed ADD left a cache entry: %+v, %v", cached, err)
	}
}

func TestAddRefusesBadAttachmentBeforeRunningAnything(t *testing.T) {
	r := newRig(t, "alpha", "beta", "gamma")
	tests := []struct {
		name     string
		list     string
		att      Attachment
		wantCode cni.Code
		wantMsg  string
	}{
		{"empty container ID", "net1", Attachment{IfName: "eth0"}, cni.CodeUnknownContainer, "missing containerID"},
		{"container ID with a slash", "net1", Attachment{ContainerID: "../../etc", IfName: "eth0"}, cni.CodeInvalidEnvironment, `"../../etc"`},
		{"bad network name", "net/1", Attachment{ContainerID: "c1", IfName: "eth0"}, cni.CodeInvalidNetworkConfig, `"net/1"`},
		{"interface name too long", "net1", Attachment{ContainerID: "c1", IfName: "abcdefghijklmnop"}, cni.CodeInvalidEnvironment, `"abcdefghijklmnop" is too long`},
		{"empty interface name", "net1", Attachment{ContainerID: "c1"}, cni.CodeInvalidEnvironment, "interface name is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			list := chainList(t, "1.0.0")
			list.Name = tt.list
			_, err := r.rt.Add(bg, list, &tt.att)
			if cni.CodeOf(err) != tt.wantCode || err == nil || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("Add = code %d %v; want code %d containing %q", cni.CodeOf(err), err, tt.wantCode, tt.wantMsg)
			}
			for _, op := range []func() error{
				func() error { return r.rt.Del(bg, list, &tt.att) },
				func() error { return r.rt.Check(bg, list, &tt.att) },
			} {
				if err := op(); cni.CodeOf(err) != tt.wantCode {
					t.Errorf("Del/Check = code %d %v; want code %d", cni.CodeOf(err), err, tt.wantCode)
				}
			}
		})
	}
	if calls := r.calls(); len(calls) != 0 {
		t.Errorf("plugins ran: %s", summary(calls))
	}
	if _, err := os.Stat(r.cache); !os.IsNotExist(err) {
		t.Errorf("the cache directory was touched: %v", err)
	}
}

func TestAddResultVersions(t *testing.T) {
	tests := []struct {
		name        string
		result      string
		wantVersion string
		wantErr     string
	}{
		{"result without cniVersion is read as the list's", `{"ips":[{"address":"10.0.0.2/24"}]}`, "1.0.0", ""},
		{"older result kept in its version", `{"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.0.0.2/24"}]}`, "0.4.0", ""},
		{"unknown result version", `{"cniVersion":"9.9.9"}`, "", `unsupported CNI result version "9.9.9"`},
		{"not JSON", `oops`, "", "decoding result"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, "alpha")
			r.script("alpha", map[string]behavior{"ADD": {Stdout: tt.result}})
			res, err := r.rt.Add(bg, parseList(t, `{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"alpha"}]}`), testAttachment("c1"))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), `plugin type="alpha" failed (add)`) {
					t.Fatalf("Add = %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || res.CNIVersion != tt.wantVersion {
				t.Fatalf("Add = %+v, %v; want version %s", res, err, tt.wantVersion)
			}
		})
	}
}

func TestDelRunsChainInReverseWithCachedResult(t *testing.T) {
	r := newRig(t, "alpha", "beta", "gamma")
	list := chainList(t, "1.0.0")
	att := testAttachment("c1")
	if _, err := r.rt.Add(bg, list, att); err != nil {
		t.Fatal(err)
	}
	cachePath := r.rt.cachePath("net1", "c1", "eth0")
	var entry cacheEntryIn
	data, _ := os.ReadFile(cachePath)
	if err := json.Unmarshal(data, &entry); err != nil {
		t.Fatal(err)
	}
	r.resetCalls()
	if err := r.rt.Del(bg, list, att); err != nil {
		t.Fatal(err)
	}
	calls := r.calls()
	if got := summary(calls); got != "gamma:DEL beta:DEL alpha:DEL" {
		t.Fatalf("calls = %s", got)
	}
	for _, c := range calls {
		if got := stdinOf(t, c)["prevResult"]; !sameJSON(got, entry.Result) {
			t.Errorf("%s DEL prevResult = %s, want the cached %s", c.Type, got, entry.Result)
		}
		if c.Env["CNI_ARGS"] != "IgnoreUnknown=1;K8S_POD_NAME=web" {
			t.Errorf("%s DEL CNI_ARGS = %q", c.Type, c.Env["CNI_ARGS"])
		}
	}
	if _, err := os.Stat(cachePath); !os.IsNotExist(err) {
		t.Errorf("cache entry still there after DEL: %v", err)
	}
	if _, err := os.Stat(r.rt.containerLockPath("c1")); !os.IsNotExist(err) {
		t.Errorf("container lock file left after DEL: %v", err)
	}
	// DEL again: succeeds, without prevResult.
	r.resetCalls()
	if err := r.rt.Del(bg, list, att); err != nil {
		t.Fatal(err)
	}
	for _, c := range r.calls() {
		if _, ok := stdinOf(t, c)["prevResult"]; ok {
			t.Errorf("second DEL gave %s a prevResult", c.Type)
		}
	}
}

func TestDelPrevResult(t *testing.T) {
	tests := []struct {
		name       string
		addVersion string
		delVersion string
		corrupt    string // replaces the cache entry after ADD
		wantPrev   string // "" for none
	}{
		{"below 0.4.0 DEL gets no prevResult", "0.3.1", "0.3.1", "", ""},
		{"converted to the list's current version", "1.0.0", "0.4.0", "",
			`{"cniVersion":"0.4.0","interfaces":[{"name":"alpha"}],"ips":[{"version":"4","interface":0,"address":"10.1.2.3/24","gateway":"10.1.2.1"}]}`},
		{"corrupt cache: no prevResult", "1.0.0", "1.0.0", `{"kind":"cniCacheV1","result":`, ""},
		{"unconvertible cache: no prevResult", "1.0.0", "1.0.0", `{"kind":"cniCacheV1","result":{"cniVersion":"7.0.0"}}`, ""},
		{"legacy bare result", "1.0.0", "1.0.0", `{"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.9.9.9/8"}]}`,
			`{"cniVersion":"1.0.0","ips":[{"address":"10.9.9.9/8"}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, "alpha")
			conf := `{"cniVersion":"%s","name":"net1","plugins":[{"type":"alpha"}]}`
			att := testAttachment("c1")
			if _, err := r.rt.Add(bg, parseList(t, strings.Replace(conf, "%s", tt.addVersion, 1)), att); err != nil {
				t.Fatal(err)
			}
			cachePath := r.rt.cachePath("net1", "c1", "eth0")
			if tt.corrupt != "" {
				if err := os.WriteFile(cachePath, []byte(tt.corrupt), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			r.resetCalls()
			if err := r.rt.Del(bg, parseList(t, strings.Replace(conf, "%s", tt.delVersion, 1)), att); err != nil {
				t.Fatal(err)
			}
			calls := r.calls()
			if len(calls) != 1 {
				t.Fatalf("calls = %s", summary(calls))
			}
			if got := string(stdinOf(t, calls[0])["prevResult"]); got != tt.wantPrev {
				t.Errorf("prevResult = %s\n        want %s", got, tt.wantPrev)
			}
			if _, err := os.Stat(cachePath); !os.IsNotExist(err) {
				t.Errorf("cache entry still there after DEL")
			}
		})
	}
}

func TestDelFailureKeepsCache(t *testing.T) {
	r := newRig(t, "alpha", "beta", "gamma")
	list := chainList(t, "1.0.0")
	att := testAttachment("c1")
	if _, err := r.rt.Add(bg, list, att); err != nil {
		t.Fatal(err)
	}
	r.script("beta", map[string]behavior{"DEL": {Error: json.RawMessage(`{"code":11,"msg":"busy"}`)}})
	r.resetCalls()
	err := r.rt.Del(bg, list, att)
	if err == nil || err.Error() != `plugin type="beta" name="b-own" failed (delete): busy` || cni.CodeOf(err) != cni.CodeTryAgainLater {
		t.Fatalf("Del = %v", err)
	}
	if got := summary(r.calls()); got != "gamma:DEL beta:DEL" {
		t.Errorf("calls = %s", got)
	}
	if cached, err := r.rt.CachedResult(list, att); cached == nil || err != nil {
		t.Errorf("the cache entry did not survive a failed DEL: %v", err)
	}
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name      string
		conf      string
		add       bool
		corrupt   bool
		script    map[string]behavior // for beta
		wantCalls string
		wantCode  cni.Code
		wantErr   string
	}{
		{name: "below 0.4.0", conf: `{"cniVersion":"0.3.1","name":"net1","plugins":[{"type":"alpha"},{"type":"beta"}]}`, add: true,
			wantCode: cni.CodeIncompatibleVersion, wantErr: `configuration version "0.3.1" does not support the CHECK command`},
		{name: "disableCheck", conf: `{"cniVersion":"1.0.0","name":"net1","disableCheck":true,"plugins":[{"type":"alpha"},{"type":"beta"}]}`, add: true},
		{name: "never added", conf: `{"cniVersion":"1.0.0","name":"net1","plugins":[{"type":"alpha"},{"type":"beta"}]}`,
			wantCode: cni.CodeUnknownContainer, wantErr: "no cached result"},
		{name: "corrupt cache", conf: `{"cniVersion":"1.0.0","name":"net1","plugins":[{"type":"alpha"},{"type":"beta"}]}`, add: true, corrupt: true,
			wantCode: cni.CodeDecodingFailure, wantErr: `failed to get network "net1" cached result`},
		{name: "all pass, forward order", conf: `{"cniVersion":"1.0.0","name":"net1","plugins":[{"type":"alpha"},{"type":"beta"},{"type":"gamma"}]}`, add: true,
			wantCalls: "alpha:CHECK beta:CHECK gamma:CHECK"},
		{name: "failure stops the chain", conf: `{"cniVersion":"1.0.0","name":"net1","plugins":[{"type":"alpha"},{"type":"beta"},{"type":"gamma"}]}`, add: true,
			script:    map[string]behavior{"CHECK": {Error: json.RawMessage(`{"code":100,"msg":"eth0 has no address"}`)}},
			wantCalls: "alpha:CHECK beta:CHECK", wantCode: 100, wantErr: `plugin type="beta" failed (check): eth0 has no address`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, "alpha", "beta", "gamma")
			list := parseList(t, tt.conf)
			att := testAttachment("c1")
			if tt.add {
				if _, err := r.rt.Add(bg, list, att); err != nil {
					t.Fatal(err)
				}
			}
			if tt.corrupt {
				os.WriteFile(r.rt.cachePath("net1", "c1", "eth0"), []byte(`{"kind":"cniCacheV1","result":{"cniVersion":"1.0.0","ips":[{"address":"bad"}]}}`), 0o600)
			}
			if tt.script != nil {
				r.script("beta", tt.script)
			}
			r.resetCalls()
			err := r.rt.Check(bg, list, att)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("Check = %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr) || cni.CodeOf(err) != tt.wantCode) {
				t.Fatalf("Check = code %d %v; want code %d containing %q", cni.CodeOf(err), err, tt.wantCode, tt.wantErr)
			}
			calls := r.calls()
			if got := summary(calls); got != tt.wantCalls {
				t.Errorf("calls = %q, want %q", got, tt.wantCalls)
			}
			if len(calls) > 0 {
				cached, _ := os.ReadFile(r.rt.cachePath("net1", "c1", "eth0"))
				var entry cacheEntryIn
				json.Unmarshal(cached, &entry)
				for _, c := range calls {
					if got := stdinOf(t, c)["prevResult"]; !sameJSON(got, entry.Result) {
						t.Errorf("%s CHECK prevResult = %s, want %s", c.Type, got, entry.Result)
					}
				}
			}
		})
	}
}

func TestStatus(t *testing.T) {
	tests := []struct {
		name      string
		version   string
		script    map[string]behavior
		wantCalls string
		wantCode  cni.Code
	}{
		{name: "below 1.1.0 is a no-op", version: "1.0.0"},
		{name: "all ready", version: "1.1.0", wantCalls: "alpha:STATUS beta:STATUS gamma:STATUS"},
		{name: "first failure returned unwrapped", version: "1.1.0",
			script:    map[string]behavior{"STATUS": {Error: json.RawMessage(`{"code":50,"msg":"no IP addresses left"}`)}},
			wantCalls: "alpha:STATUS beta:STATUS", wantCode: cni.CodePluginNotAvailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, "alpha", "beta", "gamma")
			if tt.script != nil {
				r.script("beta", tt.script)
			}
			err := r.rt.Status(bg, chainList(t, tt.version))
			if tt.wantCode == 0 && err != nil {
				t.Fatal(err)
			}
			if tt.wantCode != 0 {
				cerr, ok := err.(*cni.Error)
				if !ok || cerr.Code != tt.wantCode || cerr.Msg != "no IP addresses left" {
					t.Fatalf("Status = %#v, want the plugin's own *cni.Error", err)
				}
			}
			calls := r.calls()
			if got := summary(calls); got != tt.wantCalls {
				t.Errorf("calls = %q, want %q", got, tt.wantCalls)
			}
			for _, c := range calls {
				if c.Env["CNI_CONTAINERID"] != "" || c.Env["CNI_PATH"] != r.bin {
					t.Errorf("STATUS env = %v", c.Env)
				}
				in := stdinOf(t, c)
				if c.Type == "alpha" && string(in["capabilities"]) != `{"portMappings":true}` {
					t.Errorf("STATUS request lost capabilities: %s", c.Stdin)
				}
				if string(in["name"]) != `"net1"` || string(in["cniVersion"]) != `"1.1.0"` {
					t.Errorf("STATUS request = %s", c.Stdin)
				}
			}
		})
	}
}

func TestGC(t *testing.T) {
	setup := func(t *testing.T, version string) (*rig, *cni.ConfigList) {
		r := newRig(t, "alpha", "beta", "gamma")
		list := chainList(t, version)
		for _, cid := range []string{"c1", "c2"} {
			if _, err := r.rt.Add(bg, list, testAttachment(cid)); err != nil {
				t.Fatal(err)
			}
		}
		other := parseList(t, `{"cniVersion":"1.1.0","name":"net2","plugins":[{"type":"alpha"}]}`)
		if _, err := r.rt.Add(bg, other, testAttachment("c3")); err != nil {
			t.Fatal(err)
		}
		r.resetCalls()
		return r, list
	}
	cachedIDs := func(r *rig) string {
		atts, err := r.rt.CachedAttachments("")
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, a := range atts {
			ids = append(ids, a.Network+"/"+a.ContainerID)
		}
		return strings.Join(ids, " ")
	}

	t.Run("stale attachments deleted, then GC with both keys", func(t *testing.T) {
		r, list := setup(t, "1.1.0")
		if err := r.rt.GC(bg, list, []cni.GCAttachment{{ContainerID: "c1", IfName: "eth0"}}); err != nil {
			t.Fatal(err)
		}
		calls := r.calls()
		if got := summary(calls); got != "gamma:DEL beta:DEL alpha:DEL alpha:GC beta:GC gamma:GC" {
			t.Fatalf("calls = %s", got)
		}
		del := calls[0]
		if del.Env["CNI_CONTAINERID"] != "c2" || del.Env["CNI_NETNS"] != "/run/netns/c2" || del.Env["CNI_ARGS"] != "IgnoreUnknown=1;K8S_POD_NAME=web" {
			t.Errorf("stale DEL env = %v, want the cached attachment's", del.Env)
		}
		if rc := string(stdinOf(t, calls[2])["runtimeConfig"]); !strings.Contains(rc, "portMappings") {
			t.Errorf("stale DEL lost the cached capability arguments: %s", calls[2].Stdin)
		}
		for _, c := range calls[3:] {
			in := stdinOf(t, c)
			want := `[{"containerID":"c1","ifname":"eth0"}]`
			if string(in["cni.dev/valid-attachments"]) != want || string(in["cni.dev/attachments"]) != want {
				t.Errorf("%s GC request = %s", c.Type, c.Stdin)
			}
			if c.Env["CNI_CONTAINERID"] != "" || c.Env["CNI_PATH"] != r.bin {
				t.Errorf("GC env = %v", c.Env)
			}
		}
		if got := cachedIDs(r); got != "net1/c1 net2/c3" {
			t.Errorf("cached after GC = %q", got)
		}
	})
	t.Run("nil keeps nothing", func(t *testing.T) {
		r, list := setup(t, "1.1.0")
		if err := r.rt.GC(bg, list, nil); err != nil {
			t.Fatal(err)
		}
		calls := r.calls()
		if got := summary(calls); got != "gamma:DEL beta:DEL alpha:DEL gamma:DEL beta:DEL alpha:DEL alpha:GC beta:GC gamma:GC" {
			t.Fatalf("calls = %s", got)
		}
		if got := string(stdinOf(t, calls[6])["cni.dev/valid-attachments"]); got != "[]" {
			t.Errorf("valid-attachments = %s, want []", got)
		}
		if got := cachedIDs(r); got != "net2/c3" {
			t.Errorf("cached after GC = %q", got)
		}
	})
	t.Run("below 1.1.0 only the stale DELs", func(t *testing.T) {
		r, list := setup(t, "1.0.0")
		if err := r.rt.GC(bg, list, []cni.GCAttachment{{ContainerID: "c2", IfName: "eth0"}}); err != nil {
			t.Fatal(err)
		}
		if got := summary(r.calls()); got != "gamma:DEL beta:DEL alpha:DEL" {
			t.Errorf("calls = %s", got)
		}
	})
	t.Run("disableGC does nothing", func(t *testing.T) {
		r, list := setup(t, "1.1.0")
		list.DisableGC = true
		if err := r.rt.GC(bg, list, nil); err != nil {
			t.Fatal(err)
		}
		if calls := r.calls(); len(calls) != 0 {
			t.Errorf("calls = %s", summary(calls))
		}
		if got := cachedIDs(r); got != "net1/c1 net1/c2 net2/c3" {
			t.Errorf("cached after GC = %q", got)
		}
	})
	t.Run("errors collected, work goes on", func(t *testing.T) {
		r, list := setup(t, "1.1.0")
		r.script("beta", map[string]behavior{
			"DEL": {Error: json.RawMessage(`{"code":11,"msg":"del failed"}`)},
			"GC":  {Error: json.RawMessage(`{"code":100,"msg":"gc failed"}`)},
		})
		err := r.rt.GC(bg, list, nil)
		if err == nil {
			t.Fatal("GC succeeded")
		}
		for _, want := range []string{
			`failed to delete stale attachment c1/eth0: plugin type="beta" name="b-own" failed (delete): del failed`,
			`failed to delete stale attachment c2/eth0`,
			`plugin type="beta" name="b-own" failed (gc): gc failed`,
		} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("GC error %q lacks %q", err, want)
			}
		}
		if got := summary(r.calls()); got != "gamma:DEL beta:DEL gamma:DEL beta:DEL alpha:GC beta:GC gamma:GC" {
			t.Errorf("calls = %s", got)
		}
		if got := cachedIDs(r); got != "net1/c1 net1/c2 net2/c3" {
			t.Errorf("failed DELs must keep their cache entries; cached = %q", got)
		}
	})
}

func TestPluginNotFound(t *testing.T) {
	r := newRig(t, "alpha")
	list := parseList(t, `{"cniVersion":"1.0.0","name":"net1","plugins":[{"type":"alpha"},{"type":"missing"}]}`)
	_, err := r.rt.Add(bg, list, testAttachment("c1"))
	if err == nil || !strings.Contains(err.Error(), `plugin type="missing" failed (add): failed to find plugin "missing" in path [`+r.bin+`]`) {
		t.Fatalf("Add = %v", err)
	}
	if filepath.Base(r.bin) != "bin" {
		t.Fatal("unexpected rig layout")
	}
}

func TestAddCancelledKillsPluginAndCachesNothing(t *testing.T) {
	r := newRig(t, "alpha")
	r.script("alpha", map[string]behavior{"ADD": {Hold: true}})
	list := parseList(t, `{"cniVersion":"1.0.0","name":"net1","plugins":[{"type":"alpha"}]}`)
	ctx, cancel := context.WithCancel(bg)
	done := make(chan error, 1)
	go func() {
		_, err := r.rt.Add(ctx, list, testAttachment("c1"))
		done <- err
	}()
	r.waitHeld("c1")
	cancel()
	err := <-done
	var perr *PluginError
	if !errors.As(err, &perr) || cni.CodeOf(err) != cni.CodeTryAgainLater || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("Add after cancel = %v, want a code-11 PluginError", err)
	}
	if ends := len(r.events()) - len(r.calls()); ends != 0 {
		t.Errorf("the killed plugin finished %d times", ends)
	}
	if cached, _ := r.rt.CachedResult(list, testAttachment("c1")); cached != nil {
		t.Error("a cancelled ADD left a cache entry")
	}
}
