package static

import (
	"reflect"
	"strings"
	"testing"

	"github.com/cnikit/cnikit/internal/plugintest"
)

// TestReadmeKeyTable: the README's table of the ipam section lists exactly
// the keys the code reads, and mentions every key of an address and a route,
// and the CNI_ARGS keys.
func TestReadmeKeyTable(t *testing.T) {
	readme := plugintest.ReadREADME(t, "README.md")
	readme.CheckKeyTables(t, plugintest.JSONKeys(reflect.TypeFor[wireIPAM]()))
	readme.CheckMentions(t, `"%s"`, plugintest.JSONKeys(reflect.TypeFor[wireAddress]()))
	readme.CheckMentions(t, `"%s"`, plugintest.JSONKeys(reflect.TypeFor[wireRoute]()))
	for _, k := range []string{"IP", "GATEWAY"} {
		if _, ok := reflect.TypeFor[envArgs]().FieldByName(k); !ok || !strings.Contains(readme.Text, "`"+k+"=") {
			t.Errorf("CNI_ARGS key %s: in the code %v, in the README %v", k, ok, strings.Contains(readme.Text, "`"+k+"="))
		}
	}
}
