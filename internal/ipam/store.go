package ipam

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cnikit/cnikit/cni"
)

// DefaultDataDir is where the reference plugin keeps its stores.
const DefaultDataDir = "/var/lib/cni/networks"

// The reference plugin's file names inside a network's directory, and our prefix
// for files being written (never a valid IP address, so the reference skips them).
const (
	lockFileName       = "lock"
	lastReservedPrefix = "last_reserved_ip."
	tempPrefix         = ".cnikit-tmp."
	lineBreak          = "\r\n"
)

// Attachment identifies a container's interface on a network. As the owner of a
// reservation, an empty IfName means the file was written by an old reference
// version that recorded the container ID only.
type Attachment struct {
	ContainerID string
	IfName      string
}

// owns reports whether a reservation whose file names o was written for att.
func (o Attachment) owns(att Attachment) bool { return o.IfName != "" && o == att }

// ownsLegacy reports whether o is an old-format owner naming att's container.
func (o Attachment) ownsLegacy(att Attachment) bool {
	return o.IfName == "" && o.ContainerID != "" && o.ContainerID == att.ContainerID
}

// String formats the attachment for messages.
func (o Attachment) String() string {
	switch {
	case o.ContainerID == "":
		return "no container (empty reservation file)"
	case o.IfName == "":
		return fmt.Sprintf("container %s", o.ContainerID)
	}
	return fmt.Sprintf("container %s interface %s", o.ContainerID, o.IfName)
}

// Allocation is one reservation file of a store.
type Allocation struct {
	Addr  netip.Addr
	Owner Attachment // zero unless it was read
	name  string
}

// Store is the on-disk state of one network, <dataDir>/<network>/, in the
// reference host-local format: one file per reserved address named after it
// and holding "<containerID>\r\n<ifname>", last_reserved_ip.<set> files for
// round-robin, and a lock file taken with flock(LOCK_EX). All methods except
// Lock, Unlock, Close and Dir expect the lock to be held, List excepted when
// owners are not read.
type Store struct {
	dir    string
	dirFD  int
	lockFD int
	locked bool
	buf    []byte
	// listings counts directory reads, so tests can tell the O(1) paths work.
	listings int
}

// Open opens the store of network under dataDir (DefaultDataDir when empty),
// creating its directory (mode 0755) and lock file (0600) when missing.
func Open(dataDir, network string) (*Store, error) {
	dir := storeDir(dataDir, network)
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, ioError("creating data directory", err)
	}
	if err := os.Mkdir(dir, 0o755); err == nil {
		// Independent of the umask, so that reference tools see the usual mode.
		if err := os.Chmod(dir, 0o755); err != nil {
			return nil, ioError("creating data directory", err)
		}
	} else if !errors.Is(err, fs.ErrExist) {
		return nil, ioError("creating data directory", err)
	}
	return openDir(dir)
}

// OpenExisting opens the store of network like Open, but creates nothing: when
// the directory does not exist, the error satisfies errors.Is(err,
// fs.ErrNotExist).
func OpenExisting(dataDir, network string) (*Store, error) {
	return openDir(storeDir(dataDir, network))
}

func storeDir(dataDir, network string) string {
	if dataDir == "" {
		dataDir = DefaultDataDir
	}
	return filepath.Join(dataDir, network)
}

func openDir(dir string) (*Store, error) {
	dirFD, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, &fs.PathError{Op: "open", Path: dir, Err: fs.ErrNotExist}
		}
		return nil, ioError("opening data directory", &fs.PathError{Op: "open", Path: dir, Err: err})
	}
	lockFD, err := unix.Openat(dirFD, lockFileName, unix.O_RDONLY|unix.O_CREAT|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		unix.Close(dirFD)
		return nil, ioError("opening lock file", &fs.PathError{Op: "open", Path: filepath.Join(dir, lockFileName), Err: err})
	}
	return &Store{dir: dir, dirFD: dirFD, lockFD: lockFD, buf: make([]byte, 512)}, nil
}

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir }

// Close releases the lock, if held, and closes the store.
func (s *Store) Close() error {
	err := unix.Close(s.lockFD) // closing the last descriptor drops the flock
	unix.Close(s.dirFD)
	s.locked = false
	return err
}

// Lock takes the network's lock, waiting for other holders (cnikit or
// reference plugins) to finish.
func (s *Store) Lock() error {
	for {
		err := unix.Flock(s.lockFD, unix.LOCK_EX)
		if err == nil {
			s.locked = true
			return nil
		}
		if !errors.Is(err, unix.EINTR) {
			return ioError("locking "+filepath.Join(s.dir, lockFileName), err)
		}
	}
}

// Unlock releases the network's lock.
func (s *Store) Unlock() error {
	s.locked = false
	if err := unix.Flock(s.lockFD, unix.LOCK_UN); err != nil {
		return ioError("unlocking "+filepath.Join(s.dir, lockFileName), err)
	}
	return nil
}

// Reserve creates a's reservation for att. It reports false when a is already
// reserved. The file appears atomically with its full content: it is written
// and synced under a temporary name, then renamed into place without
// replacing (link(2) where renameat2 is unsupported).
func (s *Store) Reserve(a netip.Addr, att Attachment) (bool, error) {
	name := a.String()
	tmp := tempPrefix + name
	content := strings.TrimSpace(att.ContainerID) + lineBreak + att.IfName
	if err := s.writeTemp(tmp, content, true); err != nil {
		return false, err
	}
	err := unix.Renameat2(s.dirFD, tmp, s.dirFD, name, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		err = unix.Linkat(s.dirFD, tmp, s.dirFD, name, 0)
		unix.Unlinkat(s.dirFD, tmp, 0)
	}
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, unix.EEXIST):
		unix.Unlinkat(s.dirFD, tmp, 0)
		return false, nil
	default:
		unix.Unlinkat(s.dirFD, tmp, 0)
		return false, ioError("reserving "+filepath.Join(s.dir, name), err)
	}
}

// writeTemp writes a file that only this lock holder uses. A file already under
// that name is the leftover of a writer that crashed, and is replaced.
func (s *Store) writeTemp(name, content string, sync bool) error {
	path := filepath.Join(s.dir, name)
	flags := unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_CLOEXEC | unix.O_NOFOLLOW
	fd, err := unix.Openat(s.dirFD, name, flags, 0o600)
	if errors.Is(err, unix.EEXIST) {
		unix.Unlinkat(s.dirFD, name, 0)
		fd, err = unix.Openat(s.dirFD, name, flags, 0o600)
	}
	if err != nil {
		return ioError("creating "+path, err)
	}
	data := []byte(content)
	for len(data) > 0 && err == nil {
		var n int
		n, err = unix.Write(fd, data)
		data = data[n:]
	}
	if err == nil && sync {
		// Without it a power loss can leave the renamed file empty (the
		// reference's empty reservation files, plugins#498).
		err = unix.Fdatasync(fd)
	}
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	if err != nil {
		unix.Unlinkat(s.dirFD, name, 0)
		return ioError("writing "+path, err)
	}
	return nil
}

// Owner reads who holds a's reservation. When a is free, the error satisfies
// errors.Is(err, fs.ErrNotExist).
func (s *Store) Owner(a netip.Addr) (Attachment, error) {
	return s.readOwner(a.String())
}

func (s *Store) readOwner(name string) (Attachment, error) {
	fd, err := unix.Openat(s.dirFD, name, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return Attachment{}, &fs.PathError{Op: "open", Path: filepath.Join(s.dir, name), Err: fs.ErrNotExist}
		}
		return Attachment{}, ioError("reading "+filepath.Join(s.dir, name), err)
	}
	defer unix.Close(fd)
	n := 0
	for {
		if n == len(s.buf) {
			s.buf = append(s.buf, make([]byte, len(s.buf))...)
		}
		m, err := unix.Read(fd, s.buf[n:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return Attachment{}, ioError("reading "+filepath.Join(s.dir, name), err)
		}
		if m == 0 {
			break
		}
		n += m
	}
	return parseOwner(s.buf[:n]), nil
}

// parseOwner decodes a reservation file: "<containerID>\r\n<ifname>", or the
// container ID alone as old reference versions wrote it.
func parseOwner(data []byte) Attachment {
	text := strings.TrimSpace(string(data))
	if id, ifname, ok := strings.Cut(text, lineBreak); ok {
		return Attachment{ContainerID: id, IfName: ifname}
	}
	return Attachment{ContainerID: text}
}

// Release deletes a's reservation; a free address is not an error.
func (s *Store) Release(a netip.Addr) error { return s.remove(a.String()) }

func (s *Store) remove(name string) error {
	err := unix.Unlinkat(s.dirFD, name, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	return ioError("releasing "+filepath.Join(s.dir, name), err)
}

// List returns every reservation. The owner of each reservation for which
// readOwner returns true is read too (nil reads none). With the lock held,
// temporary files left by crashed writers are removed on the way.
func (s *Store) List(readOwner func(netip.Addr) bool) ([]Allocation, error) {
	s.listings++
	fd, err := unix.Openat(s.dirFD, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, ioError("reading "+s.dir, err)
	}
	dir := os.NewFile(uintptr(fd), s.dir)
	names, err := dir.Readdirnames(-1)
	dir.Close()
	if err != nil {
		return nil, ioError("reading "+s.dir, err)
	}
	out := make([]Allocation, 0, len(names))
	for _, name := range names {
		if strings.HasPrefix(name, tempPrefix) {
			if s.locked {
				unix.Unlinkat(s.dirFD, name, 0)
			}
			continue
		}
		a, err := netip.ParseAddr(name)
		if err != nil || a.Zone() != "" {
			continue // lock, last_reserved_ip.N, anything else
		}
		alloc := Allocation{Addr: a.Unmap(), name: name}
		if readOwner != nil && readOwner(alloc.Addr) {
			alloc.Owner, err = s.readOwner(name)
			if errors.Is(err, fs.ErrNotExist) {
				continue // released while listing; only possible without the lock
			}
			if err != nil {
				return nil, err
			}
		}
		out = append(out, alloc)
	}
	return out, nil
}

// LastReserved returns the address last reserved from range set set, or the
// zero Addr when there is none or it cannot be read (round-robin then simply
// starts over, as in the reference).
func (s *Store) LastReserved(set int) netip.Addr {
	name := lastReservedPrefix + strconv.Itoa(set)
	fd, err := unix.Openat(s.dirFD, name, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return netip.Addr{}
	}
	defer unix.Close(fd)
	n, err := unix.Read(fd, s.buf)
	if err != nil {
		return netip.Addr{}
	}
	a, err := parseAddr(strings.TrimSpace(string(s.buf[:n])))
	if err != nil {
		return netip.Addr{}
	}
	return a
}

// SetLastReserved records a as the address last reserved from range set set,
// atomically (written under a temporary name, then renamed over the old file).
func (s *Store) SetLastReserved(set int, a netip.Addr) error {
	name := lastReservedPrefix + strconv.Itoa(set)
	tmp := tempPrefix + name
	if err := s.writeTemp(tmp, a.String(), false); err != nil {
		return err
	}
	if err := unix.Renameat(s.dirFD, tmp, s.dirFD, name); err != nil {
		unix.Unlinkat(s.dirFD, tmp, 0)
		return ioError("writing "+filepath.Join(s.dir, name), err)
	}
	return nil
}

// GC releases every reservation whose owner is not among keep. An old-format
// reservation (container ID only) is kept when keep names its container; an
// empty or unreadable one names nobody and is released. It goes on after an
// error and returns the released addresses and every error.
func (s *Store) GC(keep []Attachment) ([]netip.Addr, error) {
	exact := make(map[Attachment]bool, len(keep))
	containers := make(map[string]bool, len(keep))
	for _, att := range keep {
		exact[att] = true
		containers[att.ContainerID] = true
	}
	allocs, err := s.List(func(netip.Addr) bool { return true })
	if err != nil {
		return nil, err
	}
	var released []netip.Addr
	var errs []error
	for _, alloc := range allocs {
		o := alloc.Owner
		if o.IfName != "" && exact[o] || o.IfName == "" && o.ContainerID != "" && containers[o.ContainerID] {
			continue
		}
		if err := s.remove(alloc.name); err != nil {
			errs = append(errs, err)
			continue
		}
		released = append(released, alloc.Addr)
	}
	return released, errors.Join(errs...)
}

// CheckWritable reports, as an error, why the store of network could not be
// created or written: the directory, or its nearest existing ancestor, must be
// a writable directory.
func CheckWritable(dataDir, network string) error {
	path := storeDir(dataDir, network)
	for {
		st, err := os.Stat(path)
		if err == nil {
			if !st.IsDir() {
				return fmt.Errorf("%s is not a directory", path)
			}
			if err := unix.Access(path, unix.W_OK|unix.X_OK); err != nil {
				return fmt.Errorf("%s is not writable: %w", path, err)
			}
			return nil
		}
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, unix.ENOTDIR) {
			return err
		}
		parent := filepath.Dir(path)
		if parent == path {
			return err
		}
		path = parent
	}
}

func ioError(what string, err error) error {
	return cni.Errorf(cni.CodeIOFailure, "%s: %v", what, err)
}
