package plugintest

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestReadREADMEKeyTables(t *testing.T) {
	cases := []struct {
		name string
		text string
		want [][]string
	}{
		{"no table", "# p\n\nprose only\n", nil},
		{"one table", "## Configuration\n\n| key | type |\n|---|---|\n| `mtu` | int |\n| `ipMasq` | bool |\n\nmore\n",
			[][]string{{"mtu", "ipMasq"}}},
		{"other tables are not key tables", "| code | when |\n|---|---|\n| `7` | bad |\n\n| key | type |\n|---|---|\n| `a` | x |\n",
			[][]string{{"a"}}},
		{"several keys in a cell, dotted keys", "| key | type |\n|---|---|\n| `subnet`, `rangeEnd` | x |\n| `args.cni.mac` | y |\n",
			[][]string{{"subnet", "rangeEnd", "args"}}},
		{"a row not starting with a key", "| key | type |\n|---|---|\n| (none) | `x` |\n| `b` | y |\n",
			[][]string{{"b"}}},
		{"two tables", "| key | a |\n|---|---|\n| `x` | 1 |\n\nKeys of a range:\n\n| key | a |\n|---|---|\n| `y` | 2 |\n",
			[][]string{{"x"}, {"y"}}},
		{"an empty table", "| key | a |\n|---|---|\n", [][]string{{}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "README.md")
			if err := os.WriteFile(path, []byte(tc.text), 0o600); err != nil {
				t.Fatal(err)
			}
			r := ReadREADME(t, path)
			if !reflect.DeepEqual(r.KeyTables, tc.want) {
				t.Errorf("key tables %q, want %q", r.KeyTables, tc.want)
			}
			if r.Text != tc.text {
				t.Errorf("text %q, want %q", r.Text, tc.text)
			}
		})
	}
}

func TestJSONKeys(t *testing.T) {
	type embedded struct {
		Common string `json:"common"`
	}
	type conf struct {
		embedded
		MTU      int    `json:"mtu,omitempty"`
		Skipped  string `json:"-"`
		Untagged bool
		Args     struct {
			Mac string `json:"mac"`
		} `json:"args"`
		private int
	}
	want := []string{"Untagged", "args", "mtu"}
	if got := JSONKeys(reflect.TypeFor[conf]()); !reflect.DeepEqual(got, want) {
		t.Errorf("JSONKeys = %q, want %q", got, want)
	}
}
