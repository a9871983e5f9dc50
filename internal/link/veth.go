package link

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ErrExists is returned (wrapped) when the container already has an interface
// with the requested name.
var ErrExists = errors.New("interface already exists")

// VethOptions describes a veth pair whose host end stays in the calling
// thread's namespace and whose container end is created in another one.
type VethOptions struct {
	// ContainerNS is an open file descriptor of the container's namespace.
	ContainerNS int
	// ContainerName is the container end's name (CNI_IFNAME).
	ContainerName string
	// ContainerMAC, when set, is the container end's address.
	ContainerMAC net.HardwareAddr
	// MTU of both ends; 0 is the kernel's default.
	MTU int
	// HostPrefix starts the random host end name; "veth" when empty, which
	// NetworkManager and systemd-networkd leave alone.
	HostPrefix string
}

// maxNameTries bounds the retries after a random host name collision.
const maxNameTries = 10

// RandomName returns prefix followed by 8 random hex digits.
func RandomName(prefix string) (string, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return prefix + hex.EncodeToString(b[:]), nil
}

// RandomMAC returns a random unicast, locally administered MAC address.
func RandomMAC() (net.HardwareAddr, error) {
	mac := make(net.HardwareAddr, 6)
	if _, err := rand.Read(mac); err != nil {
		return nil, err
	}
	mac[0] = mac[0]&^0x01 | 0x02
	return mac, nil
}

// CreateVeth creates the pair with a single RTM_NEWLINK whose peer carries
// IFLA_NET_NS_FD: the container end is born in its namespace, never moved
// (a move costs an unregister/register cycle under the RTNL lock). It returns
// the host end as the kernel reports it.
//
// containerHas, called only after EEXIST, tells whether the container already
// has an interface of the given name (then the error wraps ErrExists).
func CreateVeth(h *netlink.Handle, containerHas func(name string) bool, opts VethOptions) (*netlink.Veth, error) {
	prefix := opts.HostPrefix
	if prefix == "" {
		prefix = "veth"
	}
	for try := 0; ; try++ {
		hostName, err := RandomName(prefix)
		if err != nil {
			return nil, err
		}
		veth := &netlink.Veth{
			LinkAttrs:        netlink.LinkAttrs{Name: hostName, MTU: opts.MTU, TxQLen: -1},
			PeerName:         opts.ContainerName,
			PeerHardwareAddr: opts.ContainerMAC,
			PeerNamespace:    netlink.NsFd(opts.ContainerNS),
		}
		if opts.MTU > 0 {
			veth.PeerMTU = uint32(opts.MTU)
		}
		err = h.LinkAdd(veth)
		if err == nil {
			link, err := h.LinkByName(hostName)
			if err != nil {
				return nil, fmt.Errorf("looking up new veth %q: %w", hostName, err)
			}
			hostVeth, ok := link.(*netlink.Veth)
			if !ok {
				return nil, fmt.Errorf("new link %q is a %s, not a veth", hostName, link.Type())
			}
			return hostVeth, nil
		}
		if !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("creating veth pair %s/%s: %w", hostName, opts.ContainerName, err)
		}
		// EEXIST names no culprit: the container name is checked, the
		// random host name is redrawn.
		if containerHas(opts.ContainerName) {
			return nil, fmt.Errorf("container interface %q: %w", opts.ContainerName, ErrExists)
		}
		if try+1 >= maxNameTries {
			return nil, fmt.Errorf("creating veth pair: no free host name after %d tries: %w", maxNameTries, err)
		}
	}
}

// WaitOperUp waits until the link at index is operationally up (or unknown,
// which virtual links without carrier reporting show), for at most timeout,
// and returns the link as last seen. It listens for the kernel's link
// notifications rather than polling, so it returns as soon as the state
// changes: next to a thousand bridge ports that takes a few milliseconds,
// which a polling interval would overshoot.
func WaitOperUp(h *netlink.Handle, index int, timeout time.Duration) (netlink.Link, error) {
	deadline := time.Now().Add(timeout)
	// Subscribe first, then look: a change between the two is not missed.
	events, subErr := subscribeLinkEvents()
	if subErr == nil {
		defer unix.Close(events)
	}
	for {
		link, err := h.LinkByIndex(index)
		if err != nil {
			return nil, fmt.Errorf("looking up link %d: %w", index, err)
		}
		state := link.Attrs().OperState
		if state == netlink.OperUp || state == netlink.OperUnknown {
			return link, nil
		}
		remaining := time.Until(deadline)
		if remaining <= 0 {
			return link, fmt.Errorf("link %q is %s, not up, after %v", link.Attrs().Name, state, timeout)
		}
		if subErr != nil {
			time.Sleep(min(remaining, time.Millisecond)) // no notifications: poll
			continue
		}
		waitLinkEvent(events, index, remaining)
	}
}

// subscribeLinkEvents opens a netlink socket, in the calling thread's
// namespace, that receives link notifications (RTNLGRP_LINK).
func subscribeLinkEvents() (int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return -1, err
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: unix.RTMGRP_LINK}); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// waitLinkEvent blocks until a notification about the link at index arrives
// on fd, or for at most timeout. What the notification says is not parsed:
// the caller looks the link up again.
func waitLinkEvent(fd, index int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 16<<10)
	for {
		remaining := time.Until(deadline)
		if remaining <= 0 {
			return
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		ms := int(remaining / time.Millisecond)
		if ms == 0 {
			ms = 1
		}
		if n, err := unix.Poll(pfd, ms); err != nil && err != unix.EINTR || n == 0 {
			return
		}
		n, _, err := unix.Recvfrom(fd, buf, unix.MSG_DONTWAIT)
		if err != nil {
			if err == unix.EAGAIN || err == unix.EINTR {
				continue
			}
			return // ENOBUFS and the like: look the link up again
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return
		}
		for _, m := range msgs {
			if m.Header.Type != unix.RTM_NEWLINK || len(m.Data) < unix.SizeofIfInfomsg {
				continue
			}
			info := (*unix.IfInfomsg)(unsafe.Pointer(&m.Data[0]))
			if int(info.Index) == index {
				return
			}
		}
	}
}

// EnsureGatewayVeth returns the host interface named name (e.g. "cni0.100")
// that carries a VLAN's gateway address: a veth pair whose other end is a
// port of the bridge at master with the given port settings (typically the
// VLAN as untagged native VLAN). Both ends stay in the host; both ignore IPv6
// router advertisements, since containers can send them. It is created,
// attached and set up when missing; an existing one is only set up. A pair
// this call made but could not attach is removed again, so that a later call
// does not find a gateway interface cut off from its bridge.
func EnsureGatewayVeth(h *netlink.Handle, name string, master, mtu int, port PortOptions) (netlink.Link, error) {
	if link, err := h.LinkByName(name); err == nil {
		return link, setUpGateway(h, link)
	}
	peer, err := RandomName("veth")
	if err != nil {
		return nil, err
	}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu, TxQLen: -1}, PeerName: peer}
	if mtu > 0 {
		veth.PeerMTU = uint32(mtu)
	}
	if err := h.LinkAdd(veth); err != nil {
		// EEXIST: a concurrent ADD created it and attaches its own peer.
		if link, lerr := h.LinkByName(name); errors.Is(err, unix.EEXIST) && lerr == nil {
			return link, setUpGateway(h, link)
		}
		return nil, fmt.Errorf("creating gateway interface %q: %w", name, err)
	}
	link, err := h.LinkByName(name)
	if err == nil {
		err = attachGatewayPeer(h, peer, master, port)
	}
	if err == nil {
		err = setUpGateway(h, link)
	}
	if err != nil {
		_ = DeleteByName(h, name)
		return nil, fmt.Errorf("gateway interface %q: %w", name, err)
	}
	return link, nil
}

// attachGatewayPeer makes the gateway veth's peer a port of the bridge.
func attachGatewayPeer(h *netlink.Handle, peer string, master int, port PortOptions) error {
	peerLink, err := h.LinkByName(peer)
	if err != nil {
		return fmt.Errorf("looking up its peer %q: %w", peer, err)
	}
	_ = EnsureSysctl("net/ipv6/conf/"+peer+"/accept_ra", "0")
	if err := AttachPort(peerLink.Attrs().Index, master); err != nil {
		return err
	}
	return ConfigurePort(peerLink.Attrs().Index, port)
}

// setUpGateway sets a gateway interface up, ignoring router advertisements
// (ignored when IPv6 is disabled: there is no setting to write then).
func setUpGateway(h *netlink.Handle, link netlink.Link) error {
	_ = EnsureSysctl("net/ipv6/conf/"+link.Attrs().Name+"/accept_ra", "0")
	if link.Attrs().Flags&net.FlagUp != 0 {
		return nil
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("setting %q up: %w", link.Attrs().Name, err)
	}
	return nil
}

// DeleteByName deletes the named link; a missing link is not an error.
func DeleteByName(h *netlink.Handle, name string) error {
	link, err := h.LinkByName(name)
	if err != nil {
		var notFound netlink.LinkNotFoundError
		if errors.As(err, &notFound) {
			return nil
		}
		return fmt.Errorf("looking up %q: %w", name, err)
	}
	if err := h.LinkDel(link); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("deleting %q: %w", name, err)
	}
	return nil
}
