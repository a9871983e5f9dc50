package nstest

import (
	vnetns "github.com/vishvananda/netns"

	"github.com/cnikit/cnikit/netns"
)

// nsHandle converts a namespace to the netlink library's handle type. The fd
// stays owned by ns.
func nsHandle(ns *netns.NS) vnetns.NsHandle { return vnetns.NsHandle(ns.Fd()) }
