// Command cnikit is the whole of cnikit in one binary: run under the name of a
// plugin (a link called bridge, host-local, ...) it is that plugin; run as
// cnikit it is the command-line runtime.
package main

import (
	"os"
	"path/filepath"

	"github.com/cnikit/cnikit/skel"
)

func main() {
	// Plugin dispatch comes first and touches nothing else: a plugin is executed
	// once per container per network, so its start-up must stay cheap.
	if p, ok := skel.Lookup(filepath.Base(os.Args[0])); ok {
		skel.Main(p)
	}
	os.Exit(runCLI(os.Args[1:]))
}
