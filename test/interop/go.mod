module github.com/cnikit/cnikit/test/interop

go 1.26.8

require (
	github.com/cnikit/cnikit v0.0.0
	github.com/vishvananda/netlink v1.3.1
)

require github.com/vishvananda/netns v0.0.5 // indirect

require (
	github.com/containernetworking/cni v1.3.0
	golang.org/x/sys v0.50.0
)

replace github.com/cnikit/cnikit => ../..
