package bandwidth

import (
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// ownJSONKeys lists the JSON keys of a struct type's own fields (embedded
// structs, the common keys, left out).
func ownJSONKeys(t reflect.Type) []string {
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Anonymous {
			continue
		}
		if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); name != "" && name != "-" {
			keys = append(keys, name)
		}
	}
	sort.Strings(keys)
	return keys
}

// TestReadmeKeyTable: the README's key table lists exactly the keys the
// code reads, and the capability's keys.
func TestReadmeKeyTable(t *testing.T) {
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `([A-Za-z]+)` \\|")
	var got []string
	for _, m := range row.FindAllStringSubmatch(string(data), -1) {
		got = append(got, m[1])
	}
	sort.Strings(got)
	if want := ownJSONKeys(reflect.TypeFor[conf]()); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("README table lists %v, the code reads %v", got, want)
	}
	for _, k := range ownJSONKeys(reflect.TypeFor[capabilityLimits]()) {
		if !strings.Contains(string(data), `"`+k+`"`) {
			t.Errorf("README does not list the capability key %q", k)
		}
	}
}
