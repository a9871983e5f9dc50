package ptp

import (
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// TestReadmeKeyTable: the README's configuration table lists exactly the
// plugin's own keys plus ipam and dns.
func TestReadmeKeyTable(t *testing.T) {
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("^\\| `([A-Za-z]+)` \\|")
	var got []string
	inTable := false
	for _, line := range strings.Split(string(data), "\n") {
		switch {
		case line == "## Configuration":
			inTable = true
		case strings.HasPrefix(line, "#"):
			inTable = false
		}
		if m := row.FindStringSubmatch(line); m != nil && inTable {
			got = append(got, m[1])
		}
	}
	want := []string{"ipam", "dns"}
	typ := reflect.TypeFor[conf]()
	for i := 0; i < typ.NumField(); i++ {
		if f := typ.Field(i); !f.Anonymous {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			want = append(want, name)
		}
	}
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("README lists %v, the code reads %v", got, want)
	}
}
