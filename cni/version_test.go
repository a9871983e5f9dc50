package cni

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseVersion(t *testing.T) {
	tests := []struct {
		in      string
		want    Version
		wantErr bool
	}{
		{"", Version{0, 1, 0}, false},
		{"1.1.0", Version{1, 1, 0}, false},
		{"0.3.1", Version{0, 3, 1}, false},
		{"1", Version{1, 0, 0}, false},
		{"1.2", Version{1, 2, 0}, false},
		{"10.20.30", Version{10, 20, 30}, false},
		{"1.0.0.0", Version{}, true},
		{"1..0", Version{}, true},
		{"1.0.", Version{}, true},
		{"v1.0.0", Version{}, true},
		{"+1.0.0", Version{}, true},
		{"-0.1.0", Version{}, true},
		{"1.0.0-rc1", Version{}, true},
		{" 1.0.0", Version{}, true},
		{"99999999999999999999.0.0", Version{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseVersion(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), tt.in) {
				t.Errorf("error %q does not name the version", err)
			}
			if got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestVersionCompare(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"0.1.0", "0.2.0", -1},
		{"0.4.0", "0.3.1", 1},
		{"1.0.0", "1.0", 0},
		{"", "0.1.0", 0},
		{"0.10.0", "0.9.0", 1},
		{"1.1.0", "1.0.9", 1},
	}
	for _, tt := range tests {
		a, _ := ParseVersion(tt.a)
		b, _ := ParseVersion(tt.b)
		if got := a.Compare(b); got != tt.want {
			t.Errorf("Compare(%s, %s) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestVerbVersionGates(t *testing.T) {
	tests := []struct {
		version                    string
		check, gcStatus, prevOnDel bool
	}{
		{"", false, false, false},
		{"0.1.0", false, false, false},
		{"0.2.0", false, false, false},
		{"0.3.1", false, false, false},
		{"0.4.0", true, false, true},
		{"1.0.0", true, false, true},
		{"1.1.0", true, true, true},
		{"1.2.0", true, true, true},
		{"garbage", false, false, false},
	}
	for _, tt := range tests {
		if SupportsCheck(tt.version) != tt.check || SupportsGCAndStatus(tt.version) != tt.gcStatus ||
			SupportsPrevResultOnDel(tt.version) != tt.prevOnDel {
			t.Errorf("%q: check %v gc/status %v prevResult-on-DEL %v", tt.version,
				SupportsCheck(tt.version), SupportsGCAndStatus(tt.version), SupportsPrevResultOnDel(tt.version))
		}
	}
	if ok, err := VersionAtLeast("x", "1.0.0"); ok || err == nil {
		t.Error("VersionAtLeast accepted an unparseable version")
	}
}

func TestReconcile(t *testing.T) {
	if err := Reconcile("0.4.0", AllVersions); err != nil {
		t.Errorf("0.4.0: %v", err)
	}
	err := Reconcile("1.0.0", []string{"0.3.1", "0.4.0"})
	if err == nil || err.Code != CodeIncompatibleVersion || err.Msg != "incompatible CNI versions" ||
		err.Details != `config is "1.0.0", plugin supports ["0.3.1" "0.4.0"]` {
		t.Errorf("got %+v", err)
	}
	// The match is exact: "1.0" is not "1.0.0".
	if Reconcile("1.0", AllVersions) == nil {
		t.Error(`"1.0" matched`)
	}
}

func TestVersionsFrom(t *testing.T) {
	if got := VersionsFrom("0.4.0"); !reflect.DeepEqual(got, []string{"0.4.0", "1.0.0", "1.1.0"}) {
		t.Errorf("VersionsFrom(0.4.0) = %v", got)
	}
	if got := VersionsFrom("0.1.0"); !reflect.DeepEqual(got, AllVersions) {
		t.Errorf("VersionsFrom(0.1.0) = %v", got)
	}
}

func TestParsePluginInfo(t *testing.T) {
	tests := []struct {
		name, in string
		want     *PluginInfo
		wantErr  string
	}{
		{"current", `{"cniVersion":"1.1.0","supportedVersions":["1.0.0","1.1.0"]}`, &PluginInfo{"1.1.0", []string{"1.0.0", "1.1.0"}}, ""},
		{"0.2.0 without list", `{"cniVersion":"0.2.0"}`, &PluginInfo{"0.2.0", []string{"0.1.0", "0.2.0"}}, ""},
		{"missing cniVersion", `{"supportedVersions":["1.0.0"]}`, nil, "missing field cniVersion"},
		{"missing list", `{"cniVersion":"1.0.0"}`, nil, "missing field supportedVersions"},
		{"not JSON", `VERSION`, nil, "decoding version info"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePluginInfo([]byte(tt.in))
			if tt.wantErr != "" {
				if CodeOf(err) != CodeDecodingFailure || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error %v, want code 6 with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, %v", got, err)
			}
		})
	}
}
