package firewall

import (
	"reflect"
	"testing"

	"github.com/cnikit/cnikit/internal/plugintest"
)

// TestReadmeKeyTable: the README's key table lists exactly the keys the
// code reads (the common keys of the embedded cni.PluginConf aside).
func TestReadmeKeyTable(t *testing.T) {
	plugintest.ReadREADME(t, "README.md").CheckKeyTables(t, plugintest.JSONKeys(reflect.TypeFor[conf]()))
}
