package link

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// sysctlRoot is where the calling thread's namespace's settings are.
const sysctlRoot = "/proc/sys"

// sysctlPath turns "net/ipv6/conf/eth0.100/accept_ra" or the dotted form into
// a path; interface names containing dots must use the slash form.
func sysctlPath(name string) string {
	if !strings.Contains(name, "/") {
		name = strings.ReplaceAll(name, ".", "/")
	}
	return filepath.Join(sysctlRoot, name)
}

// Sysctl reads a setting of the calling thread's network namespace.
func Sysctl(name string) (string, error) {
	data, err := os.ReadFile(sysctlPath(name))
	if err != nil {
		return "", err
	}
	return string(bytes.TrimSpace(data)), nil
}

// SetSysctl writes a setting of the calling thread's network namespace.
func SetSysctl(name, value string) error {
	f, err := os.OpenFile(sysctlPath(name), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("setting %s=%s: %w", name, value, err)
	}
	return nil
}

// EnsureSysctl writes value only when the setting holds something else. For
// settings such as ip_forward a write is not free: the kernel walks every
// interface.
func EnsureSysctl(name, value string) error {
	if cur, err := Sysctl(name); err == nil && cur == value {
		return nil
	}
	return SetSysctl(name, value)
}

// EnableForwarding turns on forwarding for family 4 or 6.
func EnableForwarding(family int) error {
	if family == 4 {
		return EnsureSysctl("net/ipv4/ip_forward", "1")
	}
	return EnsureSysctl("net/ipv6/conf/all/forwarding", "1")
}

// ipv4DevconfArpNotify is IPV4_DEVCONF_ARP_NOTIFY (linux/ip.h), the attribute
// of arp_notify inside IFLA_INET_CONF.
const ipv4DevconfArpNotify = 22

// setInet4Conf sets IPv4 per-interface settings (IPV4_DEVCONF_* -> value) of
// the link at index in one netlink request: the same effect as writing
// /proc/sys/net/ipv4/conf/<dev>/..., without opening files.
func setInet4Conf(index int, values map[uint16]uint32) error {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	req.AddData(msg)
	spec := nl.NewRtAttr(unix.IFLA_AF_SPEC, nil)
	inet := spec.AddRtAttr(unix.AF_INET, nil)
	conf := inet.AddRtAttr(unix.IFLA_INET_CONF, nil)
	for key, value := range values {
		conf.AddRtAttr(int(key), nl.Uint32Attr(value))
	}
	req.AddData(spec)
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}
