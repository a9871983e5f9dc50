package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// install lays out the binary and one link per plugin, optionally the default
// network's conflist, and the links work as plugins.
func TestInstall(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	binDir, confDir := filepath.Join(dir, "bin"), filepath.Join(dir, "net.d")
	r := h.cnikit("--json", "install", "--bin-dir", binDir, "--conf-dir", confDir)
	h.mustSucceed(r, "install")
	var out struct {
		Plugins []string `json:"plugins"`
		Conf    string   `json:"conf"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"bridge", "host-local", "loopback"} {
		target, err := os.Readlink(filepath.Join(binDir, want))
		if err != nil || target != "cnikit" {
			t.Errorf("%s: link to %q (%v), want a link to cnikit", want, target, err)
		}
	}
	// The installed loopback answers VERSION as itself.
	vr := h.pluginAt(filepath.Join(binDir, "loopback"), map[string]string{"CNI_COMMAND": "VERSION"}, nil)
	if vr.code != 0 || !strings.Contains(vr.stdout, `"supportedVersions"`) {
		t.Errorf("installed loopback VERSION: %s", vr)
	}
	conf, err := os.ReadFile(out.Conf)
	if err != nil || !strings.Contains(string(conf), `"name": "cnikit"`) {
		t.Errorf("default conflist %s: %v\n%s", out.Conf, err, conf)
	}
	// Installing again is a no-op; a foreign file of a plugin's name is refused.
	h.mustSucceed(h.cnikit("install", "--bin-dir", binDir), "second install")
	os.Remove(filepath.Join(binDir, "bridge"))
	os.WriteFile(filepath.Join(binDir, "bridge"), []byte("#!/bin/sh\n"), 0o755)
	if r := h.cnikit("install", "--bin-dir", binDir); r.code == 0 || !strings.Contains(r.stderr, "--force") {
		t.Errorf("install over a foreign bridge: %s", r)
	}
	h.mustSucceed(h.cnikit("install", "--bin-dir", binDir, "--force"), "install --force")
}

// check, status and gc through the CLI, on a real attachment.
func TestCheckStatusGC(t *testing.T) {
	h := newHarness(t)
	h.writeConf("10-gc.conflist", masqConf("gcnet", "brgc", "10.97.0.0/24"))
	keep := h.newContainerNetns("keep")
	gone := h.newContainerNetns("gone")
	h.mustSucceed(h.cnikit("add", "gcnet", keep, "--container-id", "keep"), "add keep")
	h.mustSucceed(h.cnikit("add", "gcnet", gone, "--container-id", "gone"), "add gone")
	h.mustSucceed(h.cnikit("check", "gcnet", keep, "--container-id", "keep"), "check")
	r := h.cnikit("--json", "status", "gcnet")
	h.mustSucceed(r, "status")
	if !strings.Contains(r.stdout, `"ready": true`) {
		t.Errorf("status: %s", r.stdout)
	}

	// Break the attachment: CHECK must notice.
	h.mustSucceed(h.cnikit("netns", "exec", "keep", "--", "ip", "link", "set", "eth0", "down"), "set eth0 down")
	if r := h.cnikit("check", "gcnet", keep, "--container-id", "keep"); r.code == 0 {
		t.Errorf("check passed with eth0 down")
	}
	h.mustSucceed(h.cnikit("netns", "exec", "keep", "--", "ip", "link", "set", "eth0", "up"), "set eth0 up")

	// The "gone" container's namespace disappears without a DEL: gc removes its
	// attachment and IPAM reservation, and keeps the live one.
	h.mustSucceed(h.cnikit("netns", "del", "gone"), "netns del gone")
	h.mustSucceed(h.cnikit("gc", "gcnet"), "gc")
	atts := h.attachments()
	if len(atts) != 1 || atts[0]["containerID"] != "keep" {
		t.Fatalf("after gc: %v, want only keep", atts)
	}
	if files := h.ipamFiles("gcnet"); len(files) != 1 {
		t.Errorf("IPAM files after gc: %v, want one", files)
	}
	h.mustSucceed(h.cnikit("del", "gcnet", keep, "--container-id", "keep"), "del keep")
	h.assertNothingLeft("gcnet")
}

// version --json names the spec and every plugin.
func TestVersion(t *testing.T) {
	h := newHarness(t)
	r := h.cnikit("version", "--json")
	h.mustSucceed(r, "version")
	var v struct {
		SpecVersion string   `json:"specVersion"`
		Plugins     []string `json:"plugins"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v.SpecVersion != "1.1.0" || len(v.Plugins) < 3 {
		t.Fatalf("version --json: %v %s", err, r.stdout)
	}
}
