package portmap

import (
	"reflect"
	"testing"

	"github.com/cnikit/cnikit/internal/plugintest"
)

// TestReadmeKeyTables: the README's two key tables (the plugin's keys and a
// mapping's) list exactly the keys the code reads.
func TestReadmeKeyTables(t *testing.T) {
	plugintest.ReadREADME(t, "README.md").CheckKeyTables(t,
		plugintest.JSONKeys(reflect.TypeFor[conf]()), plugintest.JSONKeys(reflect.TypeFor[portMapping]()))
}
