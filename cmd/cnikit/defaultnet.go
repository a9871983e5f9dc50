package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/skel"
)

// defaultNetworkName is the built-in network, used when no conf file defines a
// network of that name.
const defaultNetworkName = "cnikit"

// defaultNetworkConf is the built-in network: a bridge cnikit0 that is the
// gateway of a private subnet, with masquerade for traffic leaving it,
// host-local IPAM, published ports (portmap) and the firewall plugin (which
// opens the host's FORWARD path where iptables owns it, e.g. beside Docker).
// The subnet is one that Docker, Podman and Kubernetes defaults do not use.
// It takes --ip (ips), --mac (mac) and -p (portMappings).
const defaultNetworkConf = `{
  "cniVersion": "1.1.0",
  "name": "cnikit",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cnikit0",
      "isGateway": true,
      "isDefaultGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "capabilities": {"ips": true, "mac": true},
      "ipam": {
        "type": "host-local",
        "dataDir": "%DATA_DIR%",
        "ranges": [[{"subnet": "10.77.0.0/16", "gateway": "10.77.0.1"}]]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "firewall"}
  ]
}
`

// defaultNetwork returns the built-in network. Its IPAM state lives beside the
// result cache: /var/lib/cni/networks by default, as for any host-local
// network, and inside a private cache dir when one is given.
func defaultNetwork(cacheDir string) (*cni.ConfigList, error) {
	return cni.ParseConfigList([]byte(defaultNetworkConfFor(cacheDir)))
}

func defaultNetworkConfFor(cacheDir string) string {
	return strings.ReplaceAll(defaultNetworkConf, "%DATA_DIR%", filepath.Join(cacheDir, "networks"))
}

// ownPluginDirRoot holds links named after every cnikit plugin that point to
// this executable, so that cnikit's own plugins are found by type, and plugins
// delegating to IPAM find it too, without anything installed.
var ownPluginDirRoot = "/run/cnikit/bin"

// ownPluginDir makes sure the links exist and point to the running executable.
func ownPluginDir() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("finding cnikit's own executable: %w", err)
	}
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		return "", fmt.Errorf("finding cnikit's own executable: %w", err)
	}
	if err := os.MkdirAll(ownPluginDirRoot, 0o755); err != nil {
		return "", fmt.Errorf("creating %s: %w", ownPluginDirRoot, err)
	}
	for _, name := range skel.Names() {
		if err := ensureLink(filepath.Join(ownPluginDirRoot, name), exe); err != nil {
			return "", err
		}
	}
	return ownPluginDirRoot, nil
}

// ensureLink makes path a symlink to target, replacing it atomically if it
// points elsewhere (another cnikit process may be doing the same).
func ensureLink(path, target string) error {
	if cur, err := os.Readlink(path); err == nil && cur == target {
		return nil
	}
	tmp := fmt.Sprintf("%s.tmp%d", path, os.Getpid())
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("linking %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("linking %s: %w", path, err)
	}
	return nil
}
