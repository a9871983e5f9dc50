package link

import (
	"fmt"

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

// VerifyContainerVeth checks the container's interface name, as CHECK does:
// it exists, is a veth, and has mac when mac is not empty. It returns the
// link, whose ParentIndex is the host end's index. h may be a zero Handle,
// which works in the calling thread's namespace.
func VerifyContainerVeth(h *netlink.Handle, name, mac string) (netlink.Link, error) {
	l, err := h.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("container interface %q: %w", name, err)
	}
	if _, ok := l.(*netlink.Veth); !ok {
		return nil, fmt.Errorf("container interface %q is a %s, not a veth", name, l.Type())
	}
	if mac != "" && l.Attrs().HardwareAddr.String() != mac {
		return nil, fmt.Errorf("container interface %q has MAC %s, prevResult says %s", name, l.Attrs().HardwareAddr, mac)
	}
	return l, nil
}
