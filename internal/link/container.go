package link

import (
	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
)

// ContainerHas returns the check CreateVeth asks for: whether the network
// namespace behind fd (the container's) has a link called name. A namespace
// it cannot look into has none.
func ContainerHas(fd int) func(name string) bool {
	return func(name string) bool {
		h, err := netlink.NewHandleAt(vnetns.NsHandle(fd))
		if err != nil {
			return false
		}
		defer h.Close()
		_, err = h.LinkByName(name)
		return err == nil
	}
}
