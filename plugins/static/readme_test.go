package static

import (
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// jsonKeys lists the JSON keys of a struct type.
func jsonKeys(t reflect.Type) []string {
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); name != "" && name != "-" {
			keys = append(keys, name)
		}
	}
	sort.Strings(keys)
	return keys
}

// TestReadmeKeyTable: the README's table of the ipam section lists exactly
// the keys the code reads, and mentions every key of an address and a route.
func TestReadmeKeyTable(t *testing.T) {
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)
	var inTable bool
	var got []string
	row := regexp.MustCompile("^\\| `([A-Za-z]+)` \\|")
	for _, line := range strings.Split(readme, "\n") {
		switch {
		case strings.HasPrefix(line, "Keys of the `ipam` section"):
			inTable = true
		case strings.HasPrefix(line, "#") || strings.HasPrefix(line, "Addresses requested"):
			inTable = false
		}
		if m := row.FindStringSubmatch(line); m != nil && inTable {
			got = append(got, m[1])
		}
	}
	sort.Strings(got)
	if want := jsonKeys(reflect.TypeFor[wireIPAM]()); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("README ipam table lists %v, the code reads %v", got, want)
	}
	for _, typ := range []reflect.Type{reflect.TypeFor[wireAddress](), reflect.TypeFor[wireRoute]()} {
		for _, k := range jsonKeys(typ) {
			if !strings.Contains(readme, `"`+k+`"`) {
				t.Errorf("README does not mention %s key %q", typ.Name(), k)
			}
		}
	}
	for _, k := range []string{"IP", "GATEWAY"} {
		if _, ok := reflect.TypeFor[envArgs]().FieldByName(k); !ok || !strings.Contains(readme, "`"+k+"=") {
			t.Errorf("CNI_ARGS key %s: in the code %v, in the README %v", k, ok, strings.Contains(readme, "`"+k+"="))
		}
	}
}
