package ipam

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"iter"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cnikit/cnikit/cni"
)

// DefaultDataDir is where the reference plugin keeps its stores.
const DefaultDataDir = "/var/lib/cni/networks"

// The reference plugin's file names inside a network's directory, and ours
// (never a valid IP address, so the reference's lookups skip them).
const (
	lockFileName       = "lock"
	lastReservedPrefix = "last_reserved_ip."
	tempPrefix         = ".cnikit-tmp."
	reservationTemp    = tempPrefix + "reservation"
	ownerPrefix        = ".cnikit-owner:"
	indexPrefix        = ".cnikit-attachment:"
	hashedIndexPrefix  = ".cnikit-attachment-sha256:"
	indexSeparator     = ","
	lineBreak          = "\r\n"
	maxNameLen         = 255 // NAME_MAX
)

// Attachment identifies a container's interface on a network. As the owner of a
// reservation, an empty IfName means the file was written by an old reference
// version that recorded the container ID only.
type Attachment struct {
	ContainerID string
	IfName      string
}

// owns reports whether a reservation whose file names o was written for att
// (whose container ID was trimmed on the way, as the reference does).
func (o Attachment) owns(att Attachment) bool {
	return o.IfName != "" && o.IfName == att.IfName && o.ContainerID == strings.TrimSpace(att.ContainerID)
}

// ownsLegacy reports whether o is an old-format owner naming att's container.
func (o Attachment) ownsLegacy(att Attachment) bool {
	return o.IfName == "" && o.ContainerID != "" && o.ContainerID == strings.TrimSpace(att.ContainerID)
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
	Owner Attachment // zero unless it was known or read
	name  string
	link  string // the owner link, when there is one
	ino   uint64
}

// ownerLink names the hard link with which earlier cnikit versions recorded a
// reservation's owner in the directory listing itself:
// ".cnikit-owner:<containerID>:<ifname>:<ip>", the same inode as the address
// file. They are no longer written (the attachment index replaced them), but
// the links of reservations made before are still read by listings and
// removed with their address files. An owner whose ID or interface holds ':',
// or whose name would be too long, never had one.
func ownerLink(a netip.Addr, att Attachment) (string, bool) {
	id := strings.TrimSpace(att.ContainerID)
	name := ownerPrefix + id + ":" + att.IfName + ":" + a.String()
	if id == "" || att.IfName == "" || strings.ContainsAny(id+att.IfName, ":/\x00") || len(name) > maxNameLen {
		return "", false
	}
	return name, true
}

// indexName names att's index entry, derived from the attachment alone so that
// it is found without listing the directory:
// ".cnikit-attachment:<containerID>:<ifname>". Container IDs and interface
// names cannot hold ':' or '/' once validated; an attachment whose would, or
// whose name would exceed NAME_MAX (container IDs have no length limit), is
// named by the SHA-256 of its reservation content instead:
// ".cnikit-attachment-sha256:<hex>". Either way readers verify what the entry
// says against the address files, so a name shared by two attachments could
// cost speed, never correctness. An attachment without container ID or
// interface name (the old reservation format) has no index.
func indexName(att Attachment) (string, bool) {
	id := strings.TrimSpace(att.ContainerID)
	if id == "" || att.IfName == "" {
		return "", false
	}
	name := indexPrefix + id + ":" + att.IfName
	if len(name) <= maxNameLen && !strings.ContainsAny(id+att.IfName, ":/\x00") {
		return name, true
	}
	sum := sha256.Sum256([]byte(id + lineBreak + att.IfName))
	return hashedIndexPrefix + hex.EncodeToString(sum[:]), true
}

// isIndexName reports whether a directory entry is an index entry.
func isIndexName(name string) bool {
	return strings.HasPrefix(name, indexPrefix) || strings.HasPrefix(name, hashedIndexPrefix)
}

// parseOwnerLink decodes an owner link's name.
func parseOwnerLink(name string) (netip.Addr, Attachment, bool) {
	parts := strings.SplitN(strings.TrimPrefix(name, ownerPrefix), ":", 3)
	if len(parts) != 3 {
		return netip.Addr{}, Attachment{}, false
	}
	a, err := netip.ParseAddr(parts[2])
	if err != nil {
		return netip.Addr{}, Attachment{}, false
	}
	return a, Attachment{ContainerID: parts[0], IfName: parts[1]}, true
}

// Store is the on-disk state of one network, <dataDir>/<network>/, in the
// reference host-local format: one file per reserved address named after it
// and holding "<containerID>\r\n<ifname>", last_reserved_ip.<set> files for
// round-robin, and a lock file taken with flock(LOCK_EX). cnikit adds one
// index entry per attachment (see writeIndex), so that ADD, CHECK and DEL find
// an attachment's addresses without listing the directory. All methods except
// Lock, Unlock, Close and Dir expect the lock to be held, List excepted when
// owners are not read.
type Store struct {
	dir    string
	dirFD  int
	lockFD int
	locked bool
	buf    []byte
	dirBuf []byte
	// listings and ownerReads count directory listings and reservation files
	// read, so tests can tell that the cheap paths stay cheap.
	listings, ownerReads int
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
// reserved (by anyone, or by anything: a directory of that name counts too).
// See ReserveFirst for how the file is written.
func (s *Store) Reserve(a netip.Addr, att Attachment) (bool, error) {
	got, _, err := s.ReserveFirst(func(yield func(netip.Addr, *Range) bool) { yield(a, nil) }, att)
	return got.IsValid(), err
}

// ReserveFirst reserves, for att, the first address of candidates that is
// free, and returns it with its range; the zero Addr when every candidate is
// taken. The reservation file appears atomically with its full content: it is
// written once under a temporary name, then renamed onto each candidate in
// turn without replacing (link(2) where renameat2 is unsupported) until one
// rename succeeds, so a taken candidate costs one failed rename and the
// directory is never read. A crashed process leaves no empty or partial
// reservation. The data is not fsynced: that would cost milliseconds per ADD,
// and after a power loss, the only case it covers, every container is gone
// anyway and GC releases whatever the file system kept, empty files included.
func (s *Store) ReserveFirst(candidates iter.Seq2[netip.Addr, *Range], att Attachment) (netip.Addr, *Range, error) {
	content := strings.TrimSpace(att.ContainerID) + lineBreak + att.IfName
	if err := s.writeTemp(reservationTemp, content); err != nil {
		return netip.Addr{}, nil, err
	}
	defer unix.Unlinkat(s.dirFD, reservationTemp, 0) // gone already after a rename
	for a, r := range candidates {
		name := a.String()
		err := s.place(reservationTemp, name)
		switch {
		case err == nil:
			return a, r, nil
		case errors.Is(err, unix.EEXIST):
			continue
		default:
			return netip.Addr{}, nil, ioError("reserving "+filepath.Join(s.dir, name), err)
		}
	}
	return netip.Addr{}, nil, nil
}

// place gives the complete file tmp the name name, failing with EEXIST when
// that name exists; tmp stays in place when it fails.
func (s *Store) place(tmp, name string) error {
	err := unix.Renameat2(s.dirFD, tmp, s.dirFD, name, unix.RENAME_NOREPLACE)
	if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOSYS) {
		return err
	}
	if err := unix.Linkat(s.dirFD, tmp, s.dirFD, name, 0); err != nil {
		return err
	}
	unix.Unlinkat(s.dirFD, tmp, 0)
	return nil
}

// writeTemp writes a file that only this lock holder uses. A file already under
// that name is the leftover of a writer that crashed, and is replaced.
func (s *Store) writeTemp(name, content string) error {
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
	s.ownerReads++
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

// Release deletes a's reservation, held by owner; a free address is not an
// error.
func (s *Store) Release(a netip.Addr, owner Attachment) error {
	link, _ := ownerLink(a, owner)
	return s.remove(Allocation{Addr: a, name: a.String(), link: link})
}

// remove deletes a reservation: the address file first, so that a crash in
// between leaves an orphan link (cleaned by List), never an unlinked holder.
func (s *Store) remove(alloc Allocation) error {
	err := unix.Unlinkat(s.dirFD, alloc.name, 0)
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return ioError("releasing "+filepath.Join(s.dir, alloc.name), err)
	}
	if alloc.link != "" {
		unix.Unlinkat(s.dirFD, alloc.link, 0)
	}
	return nil
}

// The attachment index. Each attachment cnikit allocated for has one entry,
// named after the attachment (indexName), that lists the addresses it holds:
// a symbolic link whose target is "<ip>[,<ip>...]", in range set order. A
// symbolic link is created complete by one symlinkat(2) and read by one
// readlinkat(2), so the entry is written atomically without a temporary file
// and costs no data block for the usual one or two addresses. It is a cache,
// never the authority: the address files are, so every reader believes an
// entry only for the addresses whose files hold its attachment's content, and
// an entry that vouches for none is stale and removed. Reference plugins read
// files through symbolic links: an entry with one address resolves to that
// address file, so their DEL of the attachment removes the entry with the
// file (and their lookups skip it, its name being no address); an entry with
// several resolves to nothing, and they skip it.

// readIndex returns the addresses att's index entry lists. found reports
// whether there is an entry; one that is not a symbolic link or does not
// parse lists nothing (and is stale).
func (s *Store) readIndex(att Attachment) (addrs []netip.Addr, found bool, err error) {
	name, ok := indexName(att)
	if !ok {
		return nil, false, nil
	}
	return s.readIndexEntry(name)
}

func (s *Store) readIndexEntry(name string) ([]netip.Addr, bool, error) {
	for {
		n, err := unix.Readlinkat(s.dirFD, name, s.buf)
		switch {
		case errors.Is(err, unix.ENOENT):
			return nil, false, nil
		case errors.Is(err, unix.EINVAL):
			return nil, true, nil // not a symbolic link
		case err != nil:
			return nil, false, ioError("reading "+filepath.Join(s.dir, name), err)
		case n == len(s.buf):
			s.buf = make([]byte, 2*len(s.buf)) // possibly truncated
			continue
		}
		return parseIndex(string(s.buf[:n])), true, nil
	}
}

// parseIndex decodes an index entry's target; anything malformed lists nothing.
func parseIndex(target string) []netip.Addr {
	var addrs []netip.Addr
	for field := range strings.SplitSeq(target, indexSeparator) {
		a, err := netip.ParseAddr(field)
		if err != nil || a.Zone() != "" {
			return nil
		}
		addrs = append(addrs, a.Unmap())
	}
	return addrs
}

// writeIndex records addrs as att's index entry, replacing any entry it has.
// The old entry is removed first and the new one created without replacing
// (a crash in between leaves no entry, which readers handle: they fall back to
// reading the directory).
func (s *Store) writeIndex(att Attachment, addrs []netip.Addr) error {
	name, ok := indexName(att)
	if !ok || len(addrs) == 0 {
		return nil
	}
	return s.writeIndexEntry(name, addrs)
}

func (s *Store) writeIndexEntry(name string, addrs []netip.Addr) error {
	parts := make([]string, len(addrs))
	for i, a := range addrs {
		parts[i] = a.String()
	}
	target := strings.Join(parts, indexSeparator)
	unix.Unlinkat(s.dirFD, name, 0)
	if err := unix.Symlinkat(target, s.dirFD, name); err != nil {
		return ioError("writing "+filepath.Join(s.dir, name), err)
	}
	return nil
}

// removeIndex removes att's index entry; a missing one is not an error.
func (s *Store) removeIndex(att Attachment) error {
	name, ok := indexName(att)
	if !ok {
		return nil
	}
	if err := unix.Unlinkat(s.dirFD, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return ioError("removing "+filepath.Join(s.dir, name), err)
	}
	return nil
}

// heldByIndex returns the addresses att's index entry lists and the address
// files confirm (they hold att's content), and whether att has an entry at
// all. An entry that vouches for no address is stale (the addresses were
// released by a reference DEL, or by hand) and is removed.
func (s *Store) heldByIndex(att Attachment) ([]netip.Addr, bool, error) {
	listed, found, err := s.readIndex(att)
	if err != nil || !found {
		return nil, false, err
	}
	held := listed[:0]
	for _, a := range listed {
		owner, err := s.Owner(a)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, true, err
		}
		if owner.owns(att) {
			held = append(held, a)
		}
	}
	if len(held) == 0 {
		return nil, true, s.removeIndex(att)
	}
	return held, true, nil
}

// List returns every reservation. The owner of a reservation is known from its
// owner link when it has one; otherwise it is read from the file when
// readOwner returns true for the address (nil reads none). With the lock held,
// temporary files and orphan owner links left by crashed writers (or by
// reservations removed by hand) are removed on the way.
func (s *Store) List(readOwner func(netip.Addr) bool) ([]Allocation, error) {
	allocs, _, err := s.scan(readOwner)
	return allocs, err
}

// scan is List that also returns the names of the index entries.
func (s *Store) scan(readOwner func(netip.Addr) bool) ([]Allocation, []string, error) {
	s.listings++
	entries, err := s.readDir()
	if err != nil {
		return nil, nil, ioError("reading "+s.dir, err)
	}
	type linkInfo struct {
		name  string
		owner Attachment
	}
	links := make(map[linkKey]linkInfo)
	var indexes []string
	out := make([]Allocation, 0, len(entries)/2+1)
	for _, e := range entries {
		switch {
		case strings.HasPrefix(e.name, tempPrefix):
			if s.locked {
				unix.Unlinkat(s.dirFD, e.name, 0)
			}
		case isIndexName(e.name):
			indexes = append(indexes, e.name)
		case strings.HasPrefix(e.name, ownerPrefix):
			a, owner, ok := parseOwnerLink(e.name)
			if ok {
				links[linkKey{a, e.ino}] = linkInfo{e.name, owner}
			} else if s.locked {
				unix.Unlinkat(s.dirFD, e.name, 0)
			}
		case e.typ != unix.DT_REG && e.typ != unix.DT_UNKNOWN:
			// A directory or device named like an address is no reservation
			// (the reference skips directories too).
		default:
			a, err := netip.ParseAddr(e.name)
			if err != nil || a.Zone() != "" {
				continue // lock, last_reserved_ip.N, anything else
			}
			out = append(out, Allocation{Addr: a.Unmap(), name: e.name, ino: e.ino})
		}
	}
	kept := out[:0]
	for _, alloc := range out {
		key := linkKey{alloc.Addr, alloc.ino}
		if l, ok := links[key]; ok {
			alloc.Owner, alloc.link = l.owner, l.name
			delete(links, key)
		} else if readOwner != nil && readOwner(alloc.Addr) {
			alloc.Owner, err = s.readOwner(alloc.name)
			if errors.Is(err, fs.ErrNotExist) {
				continue // released while listing; only possible without the lock
			}
			// An unreadable reservation (a symlink, say) names nobody; one bad
			// entry must not stop DEL or GC from cleaning up the rest.
		}
		kept = append(kept, alloc)
	}
	if s.locked {
		for _, l := range links {
			unix.Unlinkat(s.dirFD, l.name, 0) // its address file is gone or replaced
		}
	}
	return kept, indexes, nil
}

// linkKey pairs an owner link with its address file: same address, same inode.
type linkKey struct {
	addr netip.Addr
	ino  uint64
}

type dirEntry struct {
	name string
	ino  uint64
	typ  uint8 // DT_* from getdents; DT_UNKNOWN where the file system does not say
}

// readDir lists the store's directory with inode numbers, straight from
// getdents64: no stat, no sorting.
func (s *Store) readDir() ([]dirEntry, error) {
	fd, err := unix.Openat(s.dirFD, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	if s.dirBuf == nil {
		s.dirBuf = make([]byte, 64<<10)
	}
	var out []dirEntry
	for {
		n, err := unix.Getdents(fd, s.dirBuf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return out, nil
		}
		// struct linux_dirent64: ino u64, off s64, reclen u16, type u8, name.
		for off := 0; off+19 < n; {
			rec := s.dirBuf[off:n]
			reclen := int(binary.NativeEndian.Uint16(rec[16:18]))
			if reclen < 19 || reclen > len(rec) {
				return nil, fmt.Errorf("malformed directory entry")
			}
			name := rec[19:reclen]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			if s := string(name); s != "." && s != ".." {
				out = append(out, dirEntry{name: s, ino: binary.NativeEndian.Uint64(rec[0:8]), typ: rec[18]})
			}
			off += reclen
		}
	}
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

// SetLastReserved records a as the address last reserved from range set set.
// The file is overwritten in place (write, then truncate to the new length)
// rather than replaced by a rename: replacing a file by rename makes ext4 flush
// the new data to disk at once, a cost paid on every ADD for what is only a
// hint. A torn value after a crash reads as no hint, and round-robin starts
// over, exactly as for a missing file.
func (s *Store) SetLastReserved(set int, a netip.Addr) error {
	name := lastReservedPrefix + strconv.Itoa(set)
	path := filepath.Join(s.dir, name)
	fd, err := unix.Openat(s.dirFD, name, unix.O_WRONLY|unix.O_CREAT|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return ioError("opening "+path, err)
	}
	data := []byte(a.String())
	n, err := unix.Pwrite(fd, data, 0)
	if err == nil && n != len(data) {
		err = unix.EIO
	}
	if err == nil {
		err = unix.Ftruncate(fd, int64(len(data)))
	}
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	if err != nil {
		return ioError("writing "+path, err)
	}
	return nil
}

// GC releases every reservation whose owner is not among keep. An old-format
// reservation (container ID only) is kept when keep names its container; an
// empty or unreadable one names nobody and is released. It also brings the
// attachment index up to date, since it reads everything anyway: entries of
// attachments that hold nothing go, and every attachment that keeps
// reservations gets an entry listing exactly them. That indexes reservations
// made by reference plugins and by earlier cnikit versions too, so that ADD's
// duplicate check covers them from then on. It goes on after an error and
// returns the released addresses and every error.
func (s *Store) GC(keep []Attachment) ([]netip.Addr, error) {
	exact := make(map[Attachment]bool, len(keep))
	containers := make(map[string]bool, len(keep))
	for _, att := range keep {
		exact[att] = true
		containers[att.ContainerID] = true
	}
	allocs, indexes, err := s.scan(func(netip.Addr) bool { return true })
	if err != nil {
		return nil, err
	}
	var released []netip.Addr
	var errs []error
	held := make(map[string][]netip.Addr) // index entry name → addresses
	for _, alloc := range allocs {
		o := alloc.Owner
		if o.IfName != "" && exact[o] || o.IfName == "" && o.ContainerID != "" && containers[o.ContainerID] {
			if name, ok := indexName(o); ok {
				held[name] = append(held[name], alloc.Addr)
			}
			continue
		}
		if err := s.remove(alloc); err != nil {
			errs = append(errs, err)
			continue
		}
		released = append(released, alloc.Addr)
	}
	for _, name := range indexes {
		want, live := held[name]
		if live {
			listed, _, err := s.readIndexEntry(name)
			if err == nil && sameAddrs(listed, want) {
				delete(held, name) // up to date
			}
			continue // rewritten below
		}
		if err := unix.Unlinkat(s.dirFD, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, ioError("removing "+filepath.Join(s.dir, name), err))
		}
	}
	for name, addrs := range held {
		slices.SortFunc(addrs, netip.Addr.Compare) // IPv4 first, as range sets usually are
		if err := s.writeIndexEntry(name, addrs); err != nil {
			errs = append(errs, err)
		}
	}
	return released, errors.Join(errs...)
}

// sameAddrs reports whether a and b hold the same addresses, in any order.
func sameAddrs(a, b []netip.Addr) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
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
