package ptp

import (
	"reflect"
	"testing"

	"github.com/cnikit/cnikit/internal/plugintest"
)

// TestReadmeKeyTable: the README's configuration table lists exactly the
// plugin's own keys plus ipam and dns.
func TestReadmeKeyTable(t *testing.T) {
	want := append(plugintest.JSONKeys(reflect.TypeFor[conf]()), "ipam", "dns")
	plugintest.ReadREADME(t, "README.md").CheckKeyTables(t, want)
}
