package hostlocal

import (
	"reflect"
	"testing"

	"github.com/cnikit/cnikit/internal/ipam"
	"github.com/cnikit/cnikit/internal/plugintest"
)

// TestReadmeKeyTables: the README's two key tables (the ipam section, with
// the legacy range's keys, and a range) list exactly the keys the code reads,
// and the README mentions every key of a route.
func TestReadmeKeyTables(t *testing.T) {
	rangeKeys := plugintest.JSONKeys(reflect.TypeFor[ipam.RangeSpec]())
	readme := plugintest.ReadREADME(t, "README.md")
	readme.CheckKeyTables(t, append(plugintest.JSONKeys(reflect.TypeFor[wireIPAM]()), rangeKeys...), rangeKeys)
	readme.CheckMentions(t, `"%s"`, plugintest.JSONKeys(reflect.TypeFor[wireRoute]()))
}
