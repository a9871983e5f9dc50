// Package nstest gives privileged tests throw-away network namespaces, so that no
// test ever touches the machine's own namespace: one namespace plays the "host"
// (bridges, nftables rules, IPAM callers), others play containers.
package nstest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/cnikit/cnikit/netns"
)

// RequireRoot skips the test unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("test needs root (network namespaces)")
	}
}

// NS is a throw-away network namespace bound to a file in the test's temp dir.
type NS struct {
	*netns.NS
	t testing.TB
}

// New creates a namespace with its loopback up; it is removed when the test ends,
// whether it passed or not.
func New(t testing.TB) *NS {
	t.Helper()
	RequireRoot(t)
	dir, err := os.MkdirTemp("", "cnikit-ns-")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "net")
	if err := netns.CreateAt(path); err != nil {
		os.RemoveAll(dir)
		t.Fatalf("creating namespace: %v", err)
	}
	ns, err := netns.Open(path)
	if err != nil {
		netns.RemoveAt(path)
		os.RemoveAll(dir)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ns.Close()
		if err := netns.RemoveAt(path); err != nil {
			t.Errorf("removing namespace: %v", err)
		}
		os.RemoveAll(dir)
	})
	n := &NS{NS: ns, t: t}
	n.Do(func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.LinkSetUp(lo)
	})
	return n
}

// Do runs fn inside the namespace and fails the test on error.
func (n *NS) Do(fn func() error) {
	n.t.Helper()
	if err := n.NS.Do(fn); err != nil {
		n.t.Fatalf("in namespace %s: %v", n.Path(), err)
	}
}

// Run runs a command inside the namespace and returns its combined output and
// error; the command is killed after 30 s.
func (n *NS) Run(name string, args ...string) (string, error) {
	var out []byte
	var runErr error
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := n.NS.Do(func() error {
		// A child forked from this locked thread inherits its namespace.
		out, runErr = exec.CommandContext(ctx, name, args...).CombinedOutput()
		return nil
	})
	if err != nil {
		return "", err
	}
	return string(out), runErr
}

// MustRun is Run that fails the test when the command fails.
func (n *NS) MustRun(name string, args ...string) string {
	n.t.Helper()
	out, err := n.Run(name, args...)
	if err != nil {
		n.t.Fatalf("%s %s in %s: %v\n%s", name, strings.Join(args, " "), n.Path(), err, out)
	}
	return out
}

// Ping sends count pings to addr from inside the namespace, one second apart at
// most, and reports whether at least one was answered.
func (n *NS) Ping(addr string) error {
	out, err := n.Run("ping", "-c", "1", "-W", "2", addr)
	if err != nil {
		return fmt.Errorf("ping %s from %s: %v\n%s", addr, n.Path(), err, out)
	}
	return nil
}

// Handle returns a netlink handle operating inside the namespace; it is closed
// when the test ends.
func (n *NS) Handle() *netlink.Handle {
	n.t.Helper()
	h, err := netlink.NewHandleAt(nsHandle(n.NS))
	if err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(h.Close)
	return h
}
