package tuning

import (
	"reflect"
	"testing"

	"github.com/cnikit/cnikit/internal/plugintest"
)

// TestReadmeKeyTable: the README's key table lists exactly the keys the
// code reads, and names every args.cni override.
func TestReadmeKeyTable(t *testing.T) {
	readme := plugintest.ReadREADME(t, "README.md")
	readme.CheckKeyTables(t, plugintest.JSONKeys(reflect.TypeFor[conf]()))
	readme.CheckMentions(t, "`args.cni.%s`", plugintest.JSONKeys(reflect.TypeFor[overrides]()))
}
