package bandwidth

import (
	"reflect"
	"testing"

	"github.com/cnikit/cnikit/internal/plugintest"
)

// TestReadmeKeyTable: the README's key table lists exactly the keys the
// code reads, and the capability's keys.
func TestReadmeKeyTable(t *testing.T) {
	readme := plugintest.ReadREADME(t, "README.md")
	readme.CheckKeyTables(t, plugintest.JSONKeys(reflect.TypeFor[conf]()))
	readme.CheckMentions(t, `"%s"`, plugintest.JSONKeys(reflect.TypeFor[capabilityLimits]()))
}
