package cni

import (
	"fmt"
	"net"
	"reflect"
	"strings"
	"testing"
)

func TestParseArgs(t *testing.T) {
	tests := []struct {
		in      string
		want    [][2]string
		wantErr string
	}{
		{"", nil, ""},
		{"A=1", [][2]string{{"A", "1"}}, ""},
		{"IgnoreUnknown=1;K8S_POD_NAME=web;K8S_POD_NAMESPACE=default", [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAME", "web"}, {"K8S_POD_NAMESPACE", "default"}}, ""},
		{"A=", [][2]string{{"A", ""}}, ""},
		{"=v", [][2]string{{"", "v"}}, ""},
		{"a=b=c", nil, `"a=b=c"`},
		{"novalue", nil, `"novalue"`},
		{"A=1;", nil, `""`},
		{";A=1", nil, `""`},
		{"A=1;;B=2", nil, `""`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseArgs(tt.in)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("no error, got %v", got)
				}
				if CodeOf(err) != CodeInvalidEnvironment || !strings.Contains(err.Error(), "invalid pair "+tt.wantErr) {
					t.Errorf("error %v (code %d), want code 4 naming pair %s", err, CodeOf(err), tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
			if tt.in != "" && FormatArgs(got) != tt.in {
				t.Errorf("FormatArgs gives %q", FormatArgs(got))
			}
		})
	}
}

// upperText is a TextUnmarshaler that refuses lower-case input.
type upperText string

func (u *upperText) UnmarshalText(b []byte) error {
	if strings.ToUpper(string(b)) != string(b) {
		return fmt.Errorf("%q is not upper case", b)
	}
	*u = upperText(b)
	return nil
}

type testArgs struct {
	CommonArgs
	IP        net.IP
	Name      string
	Count     int
	Small     int8
	Port      uint16
	Enabled   bool
	Mode      upperText
	Bad       []string
	unexposed string
}

type pointerArgs struct {
	*CommonArgs
	K8S_POD_NAME string
}

func TestLoadArgs(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    testArgs
		wantErr string
	}{
		{"empty", "", testArgs{}, ""},
		{"strings and numbers", "Name=web;Count=-3;Small=127;Port=8080", testArgs{Name: "web", Count: -3, Small: 127, Port: 8080}, ""},
		{"net.IP", "IP=10.1.2.3", testArgs{IP: net.ParseIP("10.1.2.3")}, ""},
		{"IPv6", "IP=2001:db8::9", testArgs{IP: net.ParseIP("2001:db8::9")}, ""},
		{"empty IP stays unset", "IP=", testArgs{}, ""},
		{"bad IP", "IP=10.1.2.300", testArgs{}, `IP="10.1.2.300"`},
		{"IP with prefix", "IP=10.1.2.3/24", testArgs{}, `IP="10.1.2.3/24"`},
		{"TextUnmarshaler", "Mode=FAST", testArgs{Mode: "FAST"}, ""},
		{"TextUnmarshaler error", "Mode=slow", testArgs{}, `"slow" is not upper case`},
		{"bool", "Enabled=True", testArgs{Enabled: true}, ""},
		{"bad bool", "Enabled=yes", testArgs{}, `Enabled="yes"`},
		{"int overflow", "Small=128", testArgs{}, `Small="128"`},
		{"negative unsigned", "Port=-1", testArgs{}, `Port="-1"`},
		{"not a number", "Count=ten", testArgs{}, `Count="ten"`},
		{"unsupported field type", "Bad=x", testArgs{}, "cannot hold"},
		{"a=b=c is invalid", "Name=a=b", testArgs{}, `invalid pair "Name=a=b"`},
		{"keys are case-sensitive", "name=web", testArgs{}, `unknown args ["name=web"]`},
		{"unknown key", "Name=web;Other=1", testArgs{}, `unknown args ["Other=1"]`},
		{"unexported field is unknown", "unexposed=x", testArgs{}, `unknown args ["unexposed=x"]`},
		{"all unknown keys listed", "X=1;Y=2", testArgs{}, `unknown args ["X=1" "Y=2"]`},
		{"IgnoreUnknown=1", "IgnoreUnknown=1;K8S_POD_NAME=web;Name=n", testArgs{CommonArgs: CommonArgs{IgnoreUnknown: true}, Name: "n"}, ""},
		{"IgnoreUnknown=true", "K8S_POD_NAME=web;IgnoreUnknown=true", testArgs{CommonArgs: CommonArgs{IgnoreUnknown: true}}, ""},
		{"IgnoreUnknown=True", "IgnoreUnknown=True;X=1", testArgs{CommonArgs: CommonArgs{IgnoreUnknown: true}}, ""},
		{"IgnoreUnknown=TRUE", "IgnoreUnknown=TRUE;X=1", testArgs{CommonArgs: CommonArgs{IgnoreUnknown: true}}, ""},
		{"IgnoreUnknown=0 still rejects", "IgnoreUnknown=0;X=1", testArgs{}, `unknown args ["X=1"]`},
		{"IgnoreUnknown=false still rejects", "IgnoreUnknown=false;X=1", testArgs{}, `unknown args ["X=1"]`},
		{"IgnoreUnknown=False alone", "IgnoreUnknown=False", testArgs{}, ""},
		{"bad IgnoreUnknown", "IgnoreUnknown=maybe;X=1", testArgs{}, `IgnoreUnknown="maybe"`},
		{"IgnoreUnknown does not hide bad values", "IgnoreUnknown=1;Count=x", testArgs{}, `Count="x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got testArgs
			err := LoadArgs(tt.in, &got)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("no error, got %+v", got)
				}
				if CodeOf(err) != CodeInvalidEnvironment || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error %q (code %d), want code 4 containing %q", err, CodeOf(err), tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestLoadArgsWithoutCommonArgs(t *testing.T) {
	// A struct without an IgnoreUnknown field still honours the key.
	var a struct{ Name string }
	if err := LoadArgs("IgnoreUnknown=1;K8S_POD_NAME=x;Name=n", &a); err != nil || a.Name != "n" {
		t.Errorf("got %+v, %v", a, err)
	}
	if err := LoadArgs("K8S_POD_NAME=x", &a); err == nil {
		t.Error("unknown key accepted without IgnoreUnknown")
	}
}

func TestLoadArgsEmbeddedPointer(t *testing.T) {
	var a pointerArgs
	if err := LoadArgs("IgnoreUnknown=1;K8S_POD_NAME=web;Other=x", &a); err != nil {
		t.Fatal(err)
	}
	if a.CommonArgs == nil || !a.IgnoreUnknown || a.K8S_POD_NAME != "web" {
		t.Errorf("got %+v", a)
	}
}

func TestLoadArgsNeedsStructPointer(t *testing.T) {
	var s string
	var nilArgs *testArgs
	for _, dst := range []any{nil, s, &s, testArgs{}, nilArgs} {
		if err := LoadArgs("A=1", dst); err == nil {
			t.Errorf("LoadArgs(%T) succeeded", dst)
		}
	}
}
