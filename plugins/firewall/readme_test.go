package firewall

import (
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// TestReadmeKeyTable: the README's key table lists exactly the keys the
// code reads (the common keys of the embedded cni.PluginConf aside).
func TestReadmeKeyTable(t *testing.T) {
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	// The table of the Configuration section (the policy table further down
	// has rows of the same shape).
	section, _, _ := strings.Cut(string(data), "\n### ")
	_, section, _ = strings.Cut(section, "## Configuration")
	var got []string
	for _, m := range regexp.MustCompile("(?m)^\\| `([A-Za-z]+)` \\|").FindAllStringSubmatch(section, -1) {
		got = append(got, m[1])
	}
	sort.Strings(got)
	var want []string
	typ := reflect.TypeFor[conf]()
	for i := 0; i < typ.NumField(); i++ {
		f := typ.Field(i)
		if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); !f.Anonymous && name != "" && name != "-" {
			want = append(want, name)
		}
	}
	sort.Strings(want)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("README table lists %v, the code reads %v", got, want)
	}
}
