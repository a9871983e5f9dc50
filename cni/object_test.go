package cni

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestObjectKeepsValuesByteForByte(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"exponent numbers", `{"a":1.0e2,"b":-0.000E-3}`, `{"a":1.0e2,"b":-0.000E-3}`},
		{"big integers", `{"n":123456789012345678901234567890,"m":18446744073709551617}`, `{"n":123456789012345678901234567890,"m":18446744073709551617}`},
		{"unicode escapes in values", `{"s":"caf\u00e9 \ud83d\ude00 \u003c"}`, `{"s":"caf\u00e9 \ud83d\ude00 \u003c"}`},
		{"nested objects keep inner order and spacing", `{"x":{"z": 1, "a" :[ 3,2 ,1 ]},"y":null}`, `{"x":{"z": 1, "a" :[ 3,2 ,1 ]},"y":null}`},
		{"key order kept", `{"zeta":1,"alpha":2,"mid":3}`, `{"zeta":1,"alpha":2,"mid":3}`},
		{"whitespace between members dropped", "{ \"a\" : true ,\n\t\"b\" : false }", `{"a":true,"b":false}`},
		{"empty", `{}`, `{}`},
		{"keys with characters JSON escapes", `{"a<b&c>":1,"q\"uote":2}`, `{"a<b&c>":1,"q\"uote":2}`},
		{"escaped key decoded", `{"caf\u00e9":1}`, `{"café":1}`},
		{"duplicate key: first place, last value", `{"a":1,"b":2,"a":3}`, `{"a":3,"b":2}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := ParseObject([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if got := string(o.Bytes()); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestObjectEdit(t *testing.T) {
	o, err := ParseObject([]byte(`{"type":"bridge","mtu":1.5e3,"capabilities":{"ips":true},"prevResult":{"old":1}}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Set("name", "net1"); err != nil {
		t.Fatal(err)
	}
	if err := o.Set("prevResult", map[string]int{"new": 2}); err != nil {
		t.Fatal(err)
	}
	o.Delete("capabilities")
	o.Delete("missing")
	o.SetRaw("runtimeConfig", json.RawMessage(`{"mac":"c2:11:22:33:44:55"}`))
	want := `{"type":"bridge","mtu":1.5e3,"prevResult":{"new":2},"name":"net1","runtimeConfig":{"mac":"c2:11:22:33:44:55"}}`
	if got := string(o.Bytes()); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if got := o.Keys(); !reflect.DeepEqual(got, []string{"type", "mtu", "prevResult", "name", "runtimeConfig"}) {
		t.Errorf("Keys() = %v", got)
	}
	if v, ok := o.Get("mtu"); !ok || string(v) != "1.5e3" {
		t.Errorf("Get(mtu) = %s, %v", v, ok)
	}
	if _, ok := o.Get("capabilities"); ok {
		t.Error("deleted key still there")
	}
	if err := o.Set("", 1); err == nil {
		t.Error("Set with an empty key succeeded")
	}
	if err := o.Set("ch", make(chan int)); err == nil || !strings.Contains(err.Error(), `"ch"`) {
		t.Errorf("Set of an unencodable value: %v", err)
	}
}

func TestObjectZeroValue(t *testing.T) {
	var o Object
	if got := string(o.Bytes()); got != `{}` {
		t.Errorf("zero Object encodes as %s", got)
	}
	o.SetRaw("a", json.RawMessage(`1`))
	if got := string(o.Bytes()); got != `{"a":1}` {
		t.Errorf("got %s", got)
	}
}

func TestParseObjectErrors(t *testing.T) {
	for _, in := range []string{
		``, `null`, `[]`, `"s"`, `1`, `{`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{"a":1}}`, `{"a":1} {}`,
		`{"a":1}x`, `{,"a":1}`, `{"a" 1}`, `{1:2}`, "{\"a\":\"\x01\"}",
	} {
		if o, err := ParseObject([]byte(in)); err == nil {
			t.Errorf("ParseObject(%q) = %s, want an error", in, o.Bytes())
		} else if CodeOf(err) != CodeDecodingFailure {
			t.Errorf("ParseObject(%q): code %d, want 6", in, CodeOf(err))
		}
	}
}
