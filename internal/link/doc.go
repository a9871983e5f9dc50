// Package link creates and configures network interfaces over netlink: the
// bridge, veth pairs with their container end created directly in the
// container's namespace, bridge-port settings, addresses, routes and the
// /proc/sys settings that go with them. It is the one place where cnikit
// creates links.
//
// Functions act on the network namespace of the calling thread (or of the
// netlink handle they are given); they start no goroutine, so a plugin running
// on a thread locked into a test's "host" namespace stays there.
package link
