package cni

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// The fuzz targets run as ordinary tests on their seed corpus (the f.Add calls
// and testdata/fuzz/<Name>/); scripts/fuzz.sh runs them as fuzzers.

// addResultSeeds adds every result source and golden conversion as a seed.
func addResultSeeds(f *testing.F) {
	for _, dir := range []string{"results", "convert"} {
		files, _ := filepath.Glob(filepath.Join("testdata", dir, "*.json"))
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data, "")
		}
	}
}

func FuzzParseResult(f *testing.F) {
	addResultSeeds(f)
	f.Add([]byte(`{"ips":[{"address":"10.0.0.2/24","interface":-1}]}`), "1.1.0")
	f.Add([]byte(`{"ip4":{"ip":"::ffff:10.0.0.2/120"}}`), "0.2.0")
	f.Add([]byte(`{"cniVersion":"0.4.0","ips":[{"version":"6","address":"::ffff:10.0.0.2/104"}],"routes":[{"dst":"::ffff:0.0.0.0/96"}]}`), "")
	f.Add([]byte(`{"cniVersion":"1.1.0","routes":[{"dst":"10.0.0.0/8","table":0,"scope":254}]}`), "")
	f.Add([]byte(`null`), "1.0.0")
	f.Add([]byte(`{}`), "9.9.9")
	f.Fuzz(func(t *testing.T, data []byte, fallback string) {
		r, err := ParseResult(data, fallback)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error %v is a %T, not a *cni.Error", err, err)
			}
			return
		}
		for _, v := range AllVersions {
			first, err := r.Marshal(v)
			if err != nil {
				continue // this version cannot express r (0.2.0 without an address)
			}
			parsed, err := ParseResult(first, "")
			if err != nil {
				t.Fatalf("%s output does not parse: %v\n%s", v, err, first)
			}
			if parsed.CNIVersion != v {
				t.Fatalf("%s output reads back as %s", v, parsed.CNIVersion)
			}
			second, err := parsed.Marshal(v)
			if err != nil {
				t.Fatalf("re-marshalling %s output: %v\n%s", v, err, first)
			}
			if !bytes.Equal(first, second) {
				t.Fatalf("%s round trip is not stable:\n%s\n%s", v, first, second)
			}
			// Parsing what was written gives the same canonical result again.
			third, err := ParseResult(second, "")
			if err != nil || !reflect.DeepEqual(parsed, third) {
				t.Fatalf("%s: parse of identical bytes differs: %v", v, err)
			}
		}
	})
}

func FuzzParseConfigList(f *testing.F) {
	f.Add([]byte(`{"cniVersion":"1.1.0","name":"n","plugins":[{"type":"bridge","ipam":{"type":"host-local"}}]}`))
	f.Add([]byte(`{"cniVersions":["1.0.0","2.0.0"],"name":"n","disableCheck":"TRUE","disableGC":false,"plugins":[{"type":"x","capabilities":{"ips":true}}]}`))
	f.Add([]byte(`{"name":"n","loadOnlyInlinedPlugins":"true"}`))
	f.Add([]byte(`{"name":"n","plugins":[]}`))
	f.Add([]byte(`{"name":5}`))
	f.Add([]byte(`{"name":"n","cniVersion":"1.0","plugins":[{"type":"a","prevResult":{"cniVersion":"1.0.0"}}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		list, err := ParseConfigList(data)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error %v is a %T, not a *cni.Error", err, err)
			}
			return
		}
		if !bytes.Equal(list.Bytes, data) {
			t.Fatal("Bytes is not the input")
		}
		if list.LoadOnlyInlinedPlugins && len(list.Plugins) == 0 {
			t.Fatal("loadOnlyInlinedPlugins accepted without plugins")
		}
		if list.CNIVersion != "" {
			if _, err := ParseVersion(list.CNIVersion); err != nil {
				t.Fatalf("selected an unparseable version %q", list.CNIVersion)
			}
		}
		for i, p := range list.Plugins {
			if p.Network.Type == "" {
				t.Fatalf("plugin %d has no type", i)
			}
			again, err := ParsePluginConfig(p.Bytes)
			if err != nil || !reflect.DeepEqual(again.Network, p.Network) {
				t.Fatalf("plugin %d bytes re-parse differently: %v", i, err)
			}
		}
	})
}

func FuzzParsePluginConfig(f *testing.F) {
	f.Add([]byte(`{"cniVersion":"1.1.0","name":"n","type":"bridge","capabilities":{"mac":true},"ipam":{"type":"static"},"dns":{"nameservers":["10.0.0.1"]}}`))
	f.Add([]byte(`{"type":"x","prevResult":{"ips":[{"address":"10.0.0.2/24"}]},"cni.dev/attachments":[{"containerID":"a","ifname":"eth0"}]}`))
	f.Add([]byte(`{"type":""}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePluginConfig(data)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error %v is a %T, not a *cni.Error", err, err)
			}
			return
		}
		if p.Network.Type == "" {
			t.Fatal("accepted without type")
		}
		_ = p.Network.GCValidAttachments()
		// prevResult decoding must not panic either, whatever it holds.
		if err := p.Network.ParsePrevResult(); err != nil && CodeOf(err) != CodeDecodingFailure {
			t.Fatalf("ParsePrevResult: code %d: %v", CodeOf(err), err)
		}
	})
}

func FuzzParseObject(f *testing.F) {
	f.Add([]byte(`{"a":1.0e2,"b":{"c":[1,2,{"d":null}]},"e":"\u00e9\ud83d\ude00","f":123456789012345678901234567890}`))
	f.Add([]byte(`{"a":1,"a":2}`))
	f.Add([]byte(`{"<&>":"x","":true}`))
	f.Add([]byte(` { } `))
	f.Add([]byte(`{"a":1,}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		o, err := ParseObject(data)
		if err != nil {
			if json.Valid(data) && strings.HasPrefix(strings.TrimLeft(string(data), " \t\r\n"), "{") {
				t.Fatalf("valid JSON object refused: %v", err)
			}
			return
		}
		if !json.Valid(data) {
			t.Fatal("invalid JSON accepted")
		}
		out := o.Bytes()
		if !json.Valid(out) {
			t.Fatalf("Bytes is not valid JSON: %s", out)
		}
		again, err := ParseObject(out)
		if err != nil {
			t.Fatalf("Bytes does not parse: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(o.Keys(), again.Keys()) {
			t.Fatalf("keys %q became %q", o.Keys(), again.Keys())
		}
		for _, k := range o.Keys() {
			v1, _ := o.Get(k)
			v2, _ := again.Get(k)
			if !bytes.Equal(v1, v2) {
				t.Fatalf("value of %q changed: %s -> %s", k, v1, v2)
			}
		}
		if !bytes.Equal(out, again.Bytes()) {
			t.Fatalf("Bytes is not stable:\n%s\n%s", out, again.Bytes())
		}
		// encoding/json reads the same values from the input and the output.
		var before, after any
		if json.Unmarshal(data, &before) == nil && json.Unmarshal(out, &after) == nil && !reflect.DeepEqual(before, after) {
			t.Fatalf("values differ:\n%s\n%s", data, out)
		}
	})
}

func FuzzParseArgs(f *testing.F) {
	f.Add("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=abc")
	f.Add("IP=10.1.2.3;Count=5;Port=80;Enabled=true;Mode=X")
	f.Add("a=b=c")
	f.Add("=;=")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		pairs, err := ParseArgs(s)
		if err == nil {
			if s != "" && FormatArgs(pairs) != s {
				t.Fatalf("FormatArgs(ParseArgs(%q)) = %q", s, FormatArgs(pairs))
			}
			for _, p := range pairs {
				if strings.ContainsAny(p[0]+p[1], "=;") {
					t.Fatalf("pair %q holds a separator", p)
				}
			}
		} else if CodeOf(err) != CodeInvalidEnvironment {
			t.Fatalf("ParseArgs: code %d", CodeOf(err))
		}
		var a testArgs
		if err := LoadArgs(s, &a); err != nil && CodeOf(err) != CodeInvalidEnvironment {
			t.Fatalf("LoadArgs: code %d: %v", CodeOf(err), err)
		}
		var p pointerArgs
		_ = LoadArgs(s, &p)
	})
}
