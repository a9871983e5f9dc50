package hostlocal

import (
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/cnikit/cnikit/internal/ipam"
)

// jsonKeys lists the JSON keys of a struct type, embedded structs included.
func jsonKeys(t reflect.Type) []string {
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Anonymous {
			keys = append(keys, jsonKeys(f.Type)...)
			continue
		}
		if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); name != "" && name != "-" {
			keys = append(keys, name)
		}
	}
	sort.Strings(keys)
	return keys
}

// TestReadmeKeyTables: the README's two key tables (the ipam section and a
// range) list exactly the keys the code reads.
func TestReadmeKeyTables(t *testing.T) {
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	tables := map[string][]string{}
	var current string
	row := regexp.MustCompile("^\\| ((?:`[A-Za-z]+`(?:, )?)+) \\|")
	key := regexp.MustCompile("`([A-Za-z]+)`")
	for _, line := range strings.Split(string(data), "\n") {
		switch {
		case strings.HasPrefix(line, "Keys of the `ipam` section"):
			current = "ipam"
		case strings.HasPrefix(line, "Keys of a range"):
			current = "range"
		case strings.HasPrefix(line, "#"):
			current = ""
		}
		if m := row.FindStringSubmatch(line); m != nil && current != "" {
			for _, k := range key.FindAllStringSubmatch(m[1], -1) {
				tables[current] = append(tables[current], k[1])
			}
		}
	}
	for name, typ := range map[string]reflect.Type{"ipam": reflect.TypeFor[wireIPAM](), "range": reflect.TypeFor[ipam.RangeSpec]()} {
		got := tables[name]
		sort.Strings(got)
		if want := jsonKeys(typ); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("README %s table lists %v, the code reads %v", name, got, want)
		}
	}
	routeKeys := strings.Join(jsonKeys(reflect.TypeFor[wireRoute]()), " ")
	for _, k := range strings.Fields(routeKeys) {
		if !strings.Contains(string(data), `"`+k+`"`) {
			t.Errorf("README does not mention route key %q", k)
		}
	}
}
