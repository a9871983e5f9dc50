package portmap

import (
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// ownJSONKeys lists the JSON keys a struct type declares itself (embedded
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

// TestReadmeKeyTables: the README's two key tables (the plugin's keys and a
// mapping's) list exactly the keys the code reads.
func TestReadmeKeyTables(t *testing.T) {
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	var tables [][]string
	inTable := false
	row := regexp.MustCompile("^\\| (`[^|]+) \\|")
	key := regexp.MustCompile("`([A-Za-z0-9]+)[.A-Za-z0-9]*`")
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(line, "|") {
			inTable = false
			continue
		}
		if strings.HasPrefix(line, "| key |") {
			tables = append(tables, nil)
			inTable = true
			continue
		}
		if m := row.FindStringSubmatch(line); m != nil && inTable {
			for _, k := range key.FindAllStringSubmatch(m[1], -1) {
				tables[len(tables)-1] = append(tables[len(tables)-1], k[1])
			}
		}
	}
	if len(tables) != 2 {
		t.Fatalf("README has %d key tables, want 2", len(tables))
	}
	for i, typ := range []reflect.Type{reflect.TypeFor[conf](), reflect.TypeFor[portMapping]()} {
		got := tables[i]
		sort.Strings(got)
		if want := ownJSONKeys(typ); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("README table %d lists %v, the code reads %v", i+1, got, want)
		}
	}
}
