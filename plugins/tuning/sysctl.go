package tuning

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cnikit/cnikit/cni"
)

// ifnamePlaceholder in a sysctl key stands for CNI_IFNAME, so that a key can
// name the container's interface (and one with dots in its name) whatever it
// is called.
const ifnamePlaceholder = "IFNAME"

// perInterfaceTrees are the /proc/sys/net directories that hold one
// directory per interface (plus "all" and "default", which apply to the
// whole namespace).
var perInterfaceTrees = map[string]bool{
	"ipv4/conf": true, "ipv6/conf": true, "ipv4/neigh": true, "ipv6/neigh": true, "mpls/conf": true,
}

// sysctlSetting is one sysctl to write: the key as configured, its path
// below /proc/sys ("net/ipv4/conf/eth0/arp_notify") and the value.
type sysctlSetting struct {
	key, path, value string
}

// resolveSysctlKey turns a configured key into a path below /proc/sys and
// checks that it stays inside the container's own business:
//
//   - the dotted form ("net.ipv4.conf.IFNAME.rp_filter") has every '.' read
//     as a separator; a key holding a '/' is a path already, so that a
//     literal interface name with dots ("net/ipv4/conf/eth0.100/rp_filter")
//     can be written;
//   - the component IFNAME is replaced by ifName;
//   - the key must be below net/, with no empty, "." or ".." component;
//   - a per-interface setting (net/ipv4/conf/<if>/..., neigh, ipv6, mpls)
//     must name ifName, "all" or "default": another interface of the
//     container is not the plugin's to change.
//
// Symbolic links are checked when the key is used (sysctlTree.open).
func resolveSysctlKey(key, ifName string) (string, error) {
	if strings.ContainsRune(key, 0) {
		return "", errors.New("contains a NUL byte")
	}
	sep := "."
	if strings.Contains(key, "/") {
		sep = "/"
	}
	parts := strings.Split(key, sep)
	for i, p := range parts {
		if p == ifnamePlaceholder {
			parts[i] = ifName
			break
		}
	}
	for _, p := range parts {
		switch p {
		case "":
			return "", errors.New("has an empty component")
		case ".", "..":
			return "", fmt.Errorf("has a %q component", p)
		}
	}
	if parts[0] != "net" || len(parts) < 2 {
		return "", errors.New("is not below net.: only network settings may be changed")
	}
	if len(parts) >= 4 && perInterfaceTrees[parts[1]+"/"+parts[2]] {
		switch dev := parts[3]; dev {
		case ifName, "all", "default":
		default:
			return "", fmt.Errorf("names interface %q, not the container's %q (use IFNAME)", dev, ifName)
		}
	}
	return strings.Join(parts, "/"), nil
}

// sysctlTree is /proc/sys of the calling thread's network namespace; tests
// give it another root to plant symbolic links in.
type sysctlTree struct{ root string }

var procSys = sysctlTree{root: "/proc/sys"}

// errNoSysctl and errOutsideNet are the reasons file refuses a path.
var (
	errNoSysctl   = errors.New("does not exist in the container's network namespace")
	errOutsideNet = errors.New("resolves outside /proc/sys/net")
)

// file returns the real file behind path (below the tree's root), after
// checking that it resolves, symbolic links followed, to a file below
// <root>/net/.
func (t sysctlTree) file(path string) (string, error) {
	name := filepath.Join(t.root, path)
	real, err := filepath.EvalSymlinks(name)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("%s %w", name, errNoSysctl)
		}
		return "", err
	}
	netDir := filepath.Join(t.root, "net") + "/"
	if !strings.HasPrefix(real, netDir) {
		return "", fmt.Errorf("%s %w (to %s)", name, errOutsideNet, real)
	}
	return real, nil
}

// sysctlFile is file for a configured setting, with errors that name its key:
// code 7 when the key is at fault.
func (t sysctlTree) sysctlFile(s sysctlSetting) (string, error) {
	f, err := t.file(s.path)
	switch {
	case err == nil:
		return f, nil
	case errors.Is(err, errNoSysctl), errors.Is(err, errOutsideNet):
		return "", invalid("sysctl %q: %v", s.key, err)
	}
	return "", fmt.Errorf("tuning: sysctl %q: %w", s.key, err)
}

// read returns the current value of a resolved sysctl file, its whitespace
// as the kernel prints it.
func readSysctl(file string) (string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(data), "\n"), nil
}

// writeSysctl writes value to a resolved sysctl file, refusing a symbolic
// link put there since it was resolved.
func writeSysctl(file, value string) error {
	fd, err := unix.Open(file, unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: file, Err: err}
	}
	f := os.NewFile(uintptr(fd), file)
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// sameSysctlValue compares values the way the kernel reads them: fields
// separated by any whitespace ("32768 60999" equals "32768\t60999").
func sameSysctlValue(a, b string) bool {
	return strings.Join(strings.Fields(a), " ") == strings.Join(strings.Fields(b), " ")
}

// sysctlWriteError names the key; a value the kernel refuses is the
// configuration's fault.
func sysctlWriteError(s sysctlSetting, err error) error {
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ERANGE) {
		return cni.Errorf(cni.CodeInvalidNetworkConfig, "tuning: sysctl %q: the kernel refused value %q: %v", s.key, s.value, err)
	}
	return fmt.Errorf("tuning: writing sysctl %q = %q: %w", s.key, s.value, err)
}
