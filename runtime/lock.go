package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Locking. Two kinds of flock(2) lock files live under <CacheDir>/locks:
//
//   - networks/<network>: taken shared by ADD, CHECK and DEL and exclusive by
//     GC, so that no ADD or DEL of the network runs while GC decides which
//     attachments are stale (spec: GC excludes ADD and DEL).
//   - containers/<containerID>: taken exclusive by ADD, CHECK and DEL (and by
//     GC for each stale attachment it deletes), so that operations on one
//     container never interleave, across all of its attachments as the spec
//     asks, while different containers never wait for each other.
//
// Locks are always taken network first, then container, so they cannot
// deadlock. flock locks belong to an open file, so they exclude goroutines of
// one process as well as other processes, and die with their holder.
//
// A container's lock file is removed after a successful DEL, while it is held,
// so lock files do not outlive their containers (one whose DEL never comes,
// against the spec, leaves an empty file behind). Network lock files stay:
// there is one per network, and removing a file that shared holders rely on
// would not be safe. Removing a lock file that
// others may be waiting on is safe because every locker, once it holds the
// lock, checks that the file it locked is still the one at the path, and
// starts over when it is not.

type fileLock struct {
	f    *os.File
	path string
}

func (r *Runtime) networkLockPath(network string) string {
	return filepath.Join(r.cacheDir, "locks", "networks", network)
}

func (r *Runtime) containerLockPath(containerID string) string {
	return filepath.Join(r.cacheDir, "locks", "containers", containerID)
}

// lockFile takes a shared or exclusive lock on the file at path, creating it
// and its directory when needed, waiting until it is free or ctx ends.
func lockFile(ctx context.Context, path string, exclusive bool) (*fileLock, error) {
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if errors.Is(err, os.ErrNotExist) {
			if err = os.MkdirAll(filepath.Dir(path), 0o700); err == nil {
				f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("opening lock file: %w", err)
		}
		if err := flock(ctx, f, how); err != nil {
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		if samePath(f, path) {
			return &fileLock{f: f, path: path}, nil
		}
		f.Close() // removed or replaced while we waited: lock the current one
	}
}

// flock locks f, or fails when ctx ends first; on failure f is closed (at once,
// or as soon as a pending lock is granted, which releases it).
func flock(ctx context.Context, f *os.File, how int) error {
	fd := int(f.Fd())
	err := unix.Flock(fd, how|unix.LOCK_NB)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EWOULDBLOCK) {
		f.Close()
		return err
	}
	granted := make(chan error, 1)
	go func() {
		var err error
		for {
			if err = unix.Flock(fd, how); !errors.Is(err, unix.EINTR) {
				break
			}
		}
		granted <- err
	}()
	select {
	case err := <-granted:
		if err != nil {
			f.Close()
		}
		return err
	case <-ctx.Done():
		go func() {
			<-granted
			f.Close()
		}()
		return context.Cause(ctx)
	}
}

// samePath reports whether the open file f is still the file at path.
func samePath(f *os.File, path string) bool {
	var open, named unix.Stat_t
	if unix.Fstat(int(f.Fd()), &open) != nil || unix.Stat(path, &named) != nil {
		return false
	}
	return open.Dev == named.Dev && open.Ino == named.Ino
}

// unlock releases the lock.
func (l *fileLock) unlock() {
	if l != nil {
		l.f.Close()
	}
}

// unlockAndRemove removes the lock file and releases the lock. Only the holder
// of an exclusive lock may call it.
func (l *fileLock) unlockAndRemove() {
	if l != nil {
		os.Remove(l.path)
		l.f.Close()
	}
}

// attachmentLock is what an operation on one attachment holds.
type attachmentLock struct {
	network, container *fileLock
}

// lockAttachment takes the network lock shared and the container lock; with
// networkHeld the caller (GC) already holds the network lock exclusively.
func (r *Runtime) lockAttachment(ctx context.Context, network, containerID string, networkHeld bool) (*attachmentLock, error) {
	l := &attachmentLock{}
	if !networkHeld {
		n, err := lockFile(ctx, r.networkLockPath(network), false)
		if err != nil {
			return nil, err
		}
		l.network = n
	}
	c, err := lockFile(ctx, r.containerLockPath(containerID), true)
	if err != nil {
		l.network.unlock()
		return nil, err
	}
	l.container = c
	return l, nil
}

// release releases both locks; removeContainer also removes the container's
// lock file (after its DEL).
func (l *attachmentLock) release(removeContainer bool) {
	if removeContainer {
		l.container.unlockAndRemove()
	} else {
		l.container.unlock()
	}
	l.network.unlock()
}
