package plugintest

import (
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// README is a plugin's README.md as its tests read it, to check that it
// documents exactly the keys the code reads.
type README struct {
	// Text is the whole file.
	Text string
	// KeyTables holds, for each table whose header starts with "| key |", in
	// the order of the file, the keys its rows name in their first cell:
	// every `key` there (`a`, `b` names two), and of a dotted `key.sub` the
	// part before the first dot.
	KeyTables [][]string
}

var (
	// keyRow is a table row whose first cell starts with a backquote.
	keyRow = regexp.MustCompile("^\\| (`[^|]+) \\|")
	// keyName is one key in such a cell.
	keyName = regexp.MustCompile("`([A-Za-z0-9]+)[.A-Za-z0-9]*`")
)

// ReadREADME reads and parses a README, failing the test when it cannot.
func ReadREADME(t testing.TB, path string) *README {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	r := &README{Text: string(data)}
	inTable := false
	for _, line := range strings.Split(r.Text, "\n") {
		switch {
		case !strings.HasPrefix(line, "|"):
			inTable = false
		case strings.HasPrefix(line, "| key |"):
			r.KeyTables = append(r.KeyTables, []string{})
			inTable = true
		case inTable:
			if m := keyRow.FindStringSubmatch(line); m != nil {
				last := len(r.KeyTables) - 1
				for _, k := range keyName.FindAllStringSubmatch(m[1], -1) {
					r.KeyTables[last] = append(r.KeyTables[last], k[1])
				}
			}
		}
	}
	return r
}

// CheckKeyTables fails the test unless the README has one key table per
// argument and each lists exactly those keys (in any order, each once).
func (r *README) CheckKeyTables(t testing.TB, want ...[]string) {
	t.Helper()
	if len(r.KeyTables) != len(want) {
		t.Fatalf("README has %d key tables, want %d", len(r.KeyTables), len(want))
	}
	for i, keys := range want {
		got := slices.Sorted(slices.Values(r.KeyTables[i]))
		keys = slices.Sorted(slices.Values(keys))
		if !slices.Equal(got, keys) {
			t.Errorf("README key table %d lists %v, the code reads %v", i+1, got, keys)
		}
	}
}

// CheckMentions fails the test for each key the README does not mention in
// the form format (a fmt format with one %s, e.g. `"%s"`).
func (r *README) CheckMentions(t testing.TB, format string, keys []string) {
	t.Helper()
	for _, k := range keys {
		if s := fmt.Sprintf(format, k); !strings.Contains(r.Text, s) {
			t.Errorf("README does not mention %s", s)
		}
	}
}

// JSONKeys returns, sorted, the JSON keys that encoding/json decodes into
// the fields typ (a struct type) declares itself: a field's tag name, or its
// Go name without one; unexported and `json:"-"` fields are left out, and so
// are embedded structs (a plugin's cni.PluginConf: the common keys).
func JSONKeys(typ reflect.Type) []string {
	var keys []string
	for i := 0; i < typ.NumField(); i++ {
		f := typ.Field(i)
		if f.Anonymous || !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = f.Name
		}
		keys = append(keys, name)
	}
	slices.Sort(keys)
	return keys
}
