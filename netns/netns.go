// Package netns opens, enters, creates and removes Linux network namespaces.
//
// Work inside a namespace happens on a dedicated, locked OS thread (Do), so the
// calling goroutine's thread never changes namespace. Named namespaces live in
// /run/netns as bind mounts, exactly as iproute2 makes them, so `ip netns`,
// Podman and cnikit see each other's; the *In functions use another directory
// (tests never touch /run/netns).
package netns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// Dir is where named network namespaces are bind-mounted by default, as
// iproute2 does. The *In functions take another directory, which tests use.
const Dir = "/run/netns"

// ErrNotExist is returned (wrapped) when a namespace path does not exist.
var ErrNotExist = errors.New("network namespace does not exist")

// NS is an open network namespace.
type NS struct {
	file *os.File
	path string
}

// Open opens the network namespace at path (a bind mount such as
// /run/netns/NAME, or /proc/PID/ns/net) and checks with the kernel that it is
// one: a regular file, a FIFO or another kind of namespace is refused with an
// error naming the path. A path that does not exist gives ErrNotExist.
func Open(path string) (*NS, error) {
	// O_NONBLOCK: a FIFO planted at path must not block the open.
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("%w: %s", ErrNotExist, path)
		}
		return nil, fmt.Errorf("opening network namespace %q: %w", path, err)
	}
	if err := checkIsNetNS(fd); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("%q: %w", path, err)
	}
	return &NS{file: os.NewFile(uintptr(fd), path), path: path}, nil
}

func checkIsNetNS(fd int) error {
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil {
		return fmt.Errorf("statfs: %w", err)
	}
	if st.Type != unix.NSFS_MAGIC {
		return fmt.Errorf("not a network namespace (a file on a filesystem of type %#x, not nsfs)", st.Type)
	}
	// An nsfs file may be another kind of namespace; ask the kernel. Kernels
	// before 4.11 do not know the ioctl (ENOTTY) and cannot tell.
	nstype, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE)
	switch {
	case errors.Is(err, unix.ENOTTY):
	case err != nil:
		return fmt.Errorf("asking the namespace type: %w", err)
	case nstype != unix.CLONE_NEWNET:
		return fmt.Errorf("not a network namespace (namespace type %#x)", nstype)
	}
	return nil
}

// Current opens the calling thread's network namespace. Only a goroutine locked
// to its thread (inside Do, or after runtime.LockOSThread) knows which thread
// that is; elsewhere every thread is in the process's namespace anyway.
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

// Do runs fn with its OS thread inside ns and returns fn's error. fn runs on a
// fresh goroutine locked to its thread, so the caller's thread never changes
// namespace; goroutines that fn starts do not inherit ns. If the thread cannot
// be returned to its original namespace it is discarded rather than reused. A
// panic in fn is raised again in the caller.
func (ns *NS) Do(fn func() error) error {
	type outcome struct {
		err      error
		panicked bool
		panicVal any
	}
	done := make(chan outcome, 1)
	go func() {
		runtime.LockOSThread()
		var o outcome
		restored := false
		defer func() {
			if restored {
				runtime.UnlockOSThread()
			} // else the thread stays locked and exits with this goroutine
			done <- o
		}()
		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			o.err, restored = fmt.Errorf("opening current network namespace: %w", err), true
			return
		}
		defer orig.Close()
		if err := unix.Setns(ns.Fd(), unix.CLONE_NEWNET); err != nil {
			o.err, restored = fmt.Errorf("entering network namespace %q: %w", ns.path, err), true
			return
		}
		// Stays set if fn never returns (runtime.Goexit, as t.FailNow does).
		o.err = fmt.Errorf("function run in network namespace %q did not return", ns.path)
		func() {
			defer func() {
				if r := recover(); r != nil {
					o.panicked, o.panicVal = true, r
				}
			}()
			o.err = fn()
		}()
		restored = unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil
	}()
	o := <-done
	if o.panicked {
		panic(o.panicVal)
	}
	return o.err
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

// CreateAt creates a new network namespace and bind-mounts it on path, which
// must not exist yet (its directory must). The caller's namespace does not
// change.
func CreateAt(path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return fmt.Errorf("creating namespace file %q: %w", path, err)
	}
	f.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread goes back to its namespace and to the scheduler afterwards.
		// Were it left to exit instead, and were it the main thread, Go would
		// park it forever, holding the new namespace and changing what
		// /proc/self/ns/net shows.
		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("opening current network namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		mountErr := unix.Mount(src, path, "none", unix.MS_BIND, "")
		if mountErr != nil {
			mountErr = fmt.Errorf("bind-mounting %s on %q: %w", src, path, mountErr)
		}
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		} // else the thread stays locked and exits with this goroutine
		errc <- mountErr
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

// NamedPath returns the path of the named namespace name in Dir.
func NamedPath(name string) string { return filepath.Join(Dir, name) }

// prepareDir creates dir and makes it a shared mount point, as iproute2 does
// with /run/netns, so that namespaces mounted there show up in every mount
// namespace (containers that bind /run/netns see new ones appear).
func prepareDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if errors.Is(err, unix.EINVAL) {
		// Not a mount point yet: make it one.
		if err := unix.Mount(dir, dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind-mounting %s on itself: %w", dir, err)
		}
		err = unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	}
	if err != nil {
		return fmt.Errorf("making %s a shared mount: %w", dir, err)
	}
	return nil
}

// CreateNamed creates the named namespace Dir/NAME and returns its path.
func CreateNamed(name string) (string, error) { return CreateNamedIn(Dir, name) }

// CreateNamedIn creates the named namespace dir/NAME and returns its path. Like
// iproute2, it first makes dir a shared mount point (bind-mounting it on itself
// if it is not a mount point yet); that mount stays after the last namespace
// is removed, as /run/netns does.
func CreateNamedIn(dir, name string) (string, error) {
	if err := ValidateName(name); err != nil {
		return "", err
	}
	if err := prepareDir(dir); err != nil {
		return "", err
	}
	path := filepath.Join(dir, name)
	if err := CreateAt(path); err != nil {
		return "", err
	}
	return path, nil
}

// RemoveNamed removes the named namespace Dir/NAME.
func RemoveNamed(name string) error { return RemoveNamedIn(Dir, name) }

// RemoveNamedIn removes the named namespace dir/NAME; one that does not exist is
// not an error.
func RemoveNamedIn(dir, name string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	return RemoveAt(filepath.Join(dir, name))
}

// ListNamed returns the names in Dir.
func ListNamed() ([]string, error) { return ListNamedIn(Dir) }

// ListNamedIn returns the names of the files in dir, sorted; a missing dir has
// none.
func ListNamedIn(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
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
