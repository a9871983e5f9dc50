package main

// Every plugin the binary can be. Each package registers itself with skel.
import (
	_ "github.com/cnikit/cnikit/plugins/bandwidth"
	_ "github.com/cnikit/cnikit/plugins/bridge"
	_ "github.com/cnikit/cnikit/plugins/firewall"
	_ "github.com/cnikit/cnikit/plugins/host-local"
	_ "github.com/cnikit/cnikit/plugins/loopback"
	_ "github.com/cnikit/cnikit/plugins/portmap"
	_ "github.com/cnikit/cnikit/plugins/ptp"
	_ "github.com/cnikit/cnikit/plugins/static"
	_ "github.com/cnikit/cnikit/plugins/tuning"
)
