package runtime

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cnikit/cnikit/cni"
)

// lockHasWaiter reports whether someone is blocked waiting for a flock on the
// file at path, as /proc/locks shows it ("->" lines).
func lockHasWaiter(t *testing.T, path string) bool {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return false
	}
	locks, err := os.ReadFile("/proc/locks")
	if err != nil {
		t.Skipf("cannot observe lock waiters: %v", err)
	}
	ino := ":" + strconv.FormatUint(st.Ino, 10) + " "
	for _, line := range strings.Split(string(locks), "\n") {
		if strings.Contains(line, "->") && strings.Contains(line, ino) {
			return true
		}
	}
	return false
}

// started reports whether the log has a start event of verb for containerID.
func (r *rig) started(verb, containerID string) bool {
	for _, c := range r.calls() {
		if c.command() == verb && c.Env["CNI_CONTAINERID"] == containerID {
			return true
		}
	}
	return false
}

const oneAlpha = `{"cniVersion":"1.1.0","name":"%s","plugins":[{"type":"alpha"}]}`

func netList(t *testing.T, name string) *cni.ConfigList {
	return parseList(t, strings.Replace(oneAlpha, "%s", name, 1))
}

func TestOperationsOnOneContainerSerialize(t *testing.T) {
	tests := []struct {
		name     string
		second   func(r *rig) error
		waitOn   func(r *rig) string // the lock file the second operation must wait for
		secondOp string
	}{
		{
			name:     "DEL of the same attachment waits for ADD",
			second:   func(r *rig) error { return r.rt.Del(bg, netList(t, "net1"), testAttachment("c1")) },
			waitOn:   func(r *rig) string { return r.rt.containerLockPath("c1") },
			secondOp: "DEL",
		},
		{
			name: "ADD of the same container on another network waits too (spec: no parallel operations per container)",
			second: func(r *rig) error {
				att := testAttachment("c1")
				att.IfName = "eth1"
				_, err := r.rt.Add(bg, netList(t, "net2"), att)
				return err
			},
			waitOn:   func(r *rig) string { return r.rt.containerLockPath("c1") },
			secondOp: "ADD",
		},
		{
			name:     "GC of the network waits for its ADD",
			second:   func(r *rig) error { return r.rt.GC(bg, netList(t, "net1"), nil) },
			waitOn:   func(r *rig) string { return r.rt.networkLockPath("net1") },
			secondOp: "GC",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, "alpha")
			r.script("alpha", map[string]behavior{"ADD": {Hold: true}})
			first := make(chan error, 1)
			go func() {
				_, err := r.rt.Add(bg, netList(t, "net1"), testAttachment("c1"))
				first <- err
			}()
			r.waitHeld("c1")
			r.script("alpha", map[string]behavior{}) // the second operation does not hold
			second := make(chan error, 1)
			go func() { second <- tt.second(r) }()
			r.waitFor("the second operation to wait for its lock", func() bool {
				for _, c := range r.calls()[1:] {
					t.Fatalf("%s %s ran while the first ADD was still running", c.Type, c.command())
				}
				return lockHasWaiter(t, tt.waitOn(r))
			})
			r.release("c1")
			if err := <-first; err != nil {
				t.Fatal(err)
			}
			if err := <-second; err != nil {
				t.Fatal(err)
			}
			// The first ADD ended before anything of the second began.
			events := r.events()
			if len(events) < 4 || events[0].command() != "ADD" || events[1].Event != "end" || events[1].command() != "ADD" {
				t.Errorf("events out of order: %+v", events)
			}
		})
	}
}

func TestDifferentContainersRunInParallel(t *testing.T) {
	r := newRig(t, "alpha")
	r.script("alpha", map[string]behavior{"ADD": {Hold: true}})
	list := netList(t, "net1")
	done := make(chan error, 2)
	for _, cid := range []string{"c1", "c2"} {
		go func() {
			_, err := r.rt.Add(bg, list, testAttachment(cid))
			done <- err
		}()
	}
	// Both plugins hold at the same time: neither ADD waited for the other.
	r.waitHeld("c1")
	r.waitHeld("c2")
	r.release("c1")
	r.release("c2")
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

func TestLockWaitEndsWithContext(t *testing.T) {
	r := newRig(t, "alpha")
	r.script("alpha", map[string]behavior{"ADD": {Hold: true}})
	list := netList(t, "net1")
	first := make(chan error, 1)
	go func() {
		_, err := r.rt.Add(bg, list, testAttachment("c1"))
		first <- err
	}()
	r.waitHeld("c1")
	ctx, cancel := context.WithCancel(bg)
	second := make(chan error, 1)
	go func() { second <- r.rt.Del(ctx, list, testAttachment("c1")) }()
	r.waitFor("DEL to wait for the lock", func() bool { return lockHasWaiter(t, r.rt.containerLockPath("c1")) })
	cancel()
	if err := <-second; !errors.Is(err, context.Canceled) {
		t.Fatalf("Del with a cancelled context = %v", err)
	}
	r.release("c1")
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	// The abandoned wait let go of the lock: the next DEL gets it.
	if err := r.rt.Del(bg, list, testAttachment("c1")); err != nil {
		t.Fatal(err)
	}
	if r.started("DEL", "c1") != true {
		t.Error("the second DEL did not run")
	}
}

func TestLockFileReplacedWhileWaiting(t *testing.T) {
	path := t.TempDir() + "/locks/containers/c1"
	held, err := lockFile(bg, path, true)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *fileLock, 1)
	go func() {
		l, err := lockFile(bg, path, true)
		if err != nil {
			t.Error(err)
		}
		got <- l
	}()
	for !lockHasWaiter(t, path) {
		time.Sleep(time.Millisecond)
	}
	// The holder removes the file (after a DEL); the waiter must not keep a
	// lock on the removed file while a newcomer locks a new one.
	held.unlockAndRemove()
	l := <-got
	defer l.unlock()
	if !samePath(l.f, path) {
		t.Fatal("the waiter holds a lock on a file no longer at the path")
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
}
