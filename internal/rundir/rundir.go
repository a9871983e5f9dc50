// Package rundir locates the state cnikit's plugins keep between an ADD and
// its DEL (portmap's records, tuning's backups, the firewall's firewalld
// sources): /run/cni/<plugin>, where the reference plugins keep theirs, so
// that state a reference plugin wrote is found. It lives on tmpfs on purpose:
// after a reboot neither the state nor what it describes exists.
//
// The runtime may move it with the environment variable CNIKIT_STATE_DIR
// (never a network configuration, whose author must not choose where a root
// plugin writes); tests point it at a temporary directory.
package rundir

import (
	"os"
	"path/filepath"
)

// Env names the environment variable that replaces Default.
const Env = "CNIKIT_STATE_DIR"

// Default is the root of the plugins' state.
const Default = "/run/cni"

// Root returns $CNIKIT_STATE_DIR when it is an absolute path, else Default.
func Root() string {
	if dir := os.Getenv(Env); filepath.IsAbs(dir) {
		return filepath.Clean(dir)
	}
	return Default
}

// Plugin returns the state directory of the named plugin.
func Plugin(name string) string { return filepath.Join(Root(), name) }
