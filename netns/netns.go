// Package netns opens, enters, creates and removes Linux network namespaces.
//
// Work inside a namespace happens on a dedicated, locked OS thread (Do), so the
// calling goroutine's thread never changes namespace. Named namespaces live in
// /run/netns as bind mounts, exactly as iproute2 makes them, so `ip netns`,
// Podman and cnikit see each other's.
package netns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Dir is where named network namespaces are bind-mounted.
const Dir = "/run/netns"

// ErrNotExist is returned (wrapped) when a namespace path does not exist.
var ErrNotExist = errors.New("network namespace does not exist")

// NS is an open network namespace.
type NS struct {
	file *os.File
	path string
}

// Open opens the network namespace at path (a bind mount in /run/netns, or
// /proc/PID/ns/net) and checks that it is one.
func Open(path string) (*NS, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s", ErrNotExist, path)
		}
		return nil, fmt.Errorf("opening network namespace %q: %w", path, err)
	}
	if err := checkIsNetNS(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("%q: %w", path, err)
	}
	return &NS{file: f, path: path}, nil
}

func checkIsNetNS(f *os.File) error {
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		return fmt.Errorf("statfs: %w", err)
	}
	if st.Type != unix.NSFS_MAGIC && st.Type != unix.PROC_SUPER_MAGIC {
		return fmt.Errorf("not a network namespace (filesystem type %#x)", st.Type)
	}
	// An nsfs file may be another kind of namespace; ask the kernel.
	nstype, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_NSTYPE)
	if err == nil && nstype != unix.CLONE_NEWNET {
		return fmt.Errorf("not a network namespace (type %#x)", nstype)
	}
	return nil
}

// Current opens the calling thread's network namespace.
func Current() (*NS, error) {
	return Open(fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid()))
}

// Path returns the path the namespace was opened from.
func (ns *NS) Path() string { return ns.path }

// Fd returns the namespace's file descriptor, valid until Close.
func (ns *NS) Fd() int { return int(ns.file.Fd()) }

// Close releases the namespace file.
func (ns *NS) Close() error { return ns.file.Close() }

// SameAs reports whether ns and other are the same namespace.
func (ns *NS) SameAs(other *NS) (bool, error) {
	var a, b unix.Stat_t
	if err := unix.Fstat(ns.Fd(), &a); err != nil {
		return false, err
	}
	if err := unix.Fstat(other.Fd(), &b); err != nil {
		return false, err
	}
	return a.Dev == b.Dev && a.Ino == b.Ino, nil
}

// Do runs fn with its OS thread inside ns. fn runs on a fresh goroutine locked to
// its thread; if the thread cannot be returned to its original namespace it is
// discarded rather than reused. Goroutines that fn starts do not inherit ns.
func (ns *NS) Do(fn func() error) error {
	var fnErr, nsErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		runtime.LockOSThread()
		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			nsErr = fmt.Errorf("opening current network namespace: %w", err)
			runtime.UnlockOSThread()
			return
		}
		defer orig.Close()
		if err := unix.Setns(ns.Fd(), unix.CLONE_NEWNET); err != nil {
			nsErr = fmt.Errorf("entering network namespace %q: %w", ns.path, err)
			runtime.UnlockOSThread()
			return
		}
		fnErr = fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: it exits with this goroutine.
			return
		}
		runtime.UnlockOSThread()
	}()
	wg.Wait()
	if nsErr != nil {
		return nsErr
	}
	return fnErr
}

// DoPath opens the namespace at path, runs fn inside it and closes it.
func DoPath(path string, fn func() error) error {
	ns, err := Open(path)
	if err != nil {
		return err
	}
	defer ns.Close()
	return ns.Do(fn)
}

// CreateAt creates a new network namespace and bind-mounts it on path (a file
// that is created if missing). The caller's namespace does not change.
func CreateAt(path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return fmt.Errorf("creating namespace file %q: %w", path, err)
	}
	f.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// This thread's namespace changes for good: never unlock it, so it exits
		// with the goroutine instead of being reused.
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(src, path, "none", unix.MS_BIND, ""); err != nil {
			errc <- fmt.Errorf("bind-mounting %s on %q: %w", src, path, err)
			return
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

// RemoveAt unmounts a namespace bind mount made by CreateAt and removes the file.
// A path that does not exist is not an error.
func RemoveAt(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmounting %q: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing %q: %w", path, err)
	}
	return nil
}

// ValidateName checks a named namespace's name: a single path component.
func ValidateName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("invalid network namespace name %q", name)
	}
	return nil
}

// NamedPath returns the path of the named namespace name.
func NamedPath(name string) string { return filepath.Join(Dir, name) }

// prepareDir makes /run/netns a shared mount point, as iproute2 does, so that
// namespaces mounted there show up in every mount namespace.
func prepareDir() error {
	if err := os.MkdirAll(Dir, 0o755); err != nil {
		return err
	}
	err := unix.Mount("", Dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if errors.Is(err, unix.EINVAL) {
		if err := unix.Mount(Dir, Dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind-mounting %s on itself: %w", Dir, err)
		}
		err = unix.Mount("", Dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	}
	if err != nil {
		return fmt.Errorf("making %s a shared mount: %w", Dir, err)
	}
	return nil
}

// CreateNamed creates the named namespace /run/netns/NAME and returns its path.
func CreateNamed(name string) (string, error) {
	if err := ValidateName(name); err != nil {
		return "", err
	}
	if err := prepareDir(); err != nil {
		return "", err
	}
	path := NamedPath(name)
	if err := CreateAt(path); err != nil {
		return "", err
	}
	return path, nil
}

// RemoveNamed removes the named namespace /run/netns/NAME.
func RemoveNamed(name string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	return RemoveAt(NamedPath(name))
}

// ListNamed returns the names in /run/netns.
func ListNamed() ([]string, error) {
	entries, err := os.ReadDir(Dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		if !e.IsDir() {
			names = append(names, e.Name())
		}
	}
	return names, nil
}
