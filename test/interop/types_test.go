package interop

import "github.com/containernetworking/cni/pkg/types"

func cnitypesGC(a attachment) types.GCAttachment {
	return types.GCAttachment{ContainerID: a.containerID, IfName: a.ifName}
}
