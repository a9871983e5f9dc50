package e2e

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// The Kubernetes way for a runtime that does not speak CNI (Docker with
// --network none): a process already running in a namespace of its own is
// attached by PID, reaches the gateway, and is detached again.
func TestAttachAndDetachByPID(t *testing.T) {
	h := newHarness(t)
	h.writeConf("10-att.conflist", masqConf("attnet", "bratt", "10.96.0.0/24"))
	sleeper := h.start(exec.Command("unshare", "--net", "sleep", "120"))
	pid := strconv.Itoa(sleeper.cmd.Process.Pid)
	waitFor(t, "the process's own namespace", func() bool {
		self, err1 := h.host.Run("readlink", "/proc/self/ns/net")
		its, err2 := h.host.Run("readlink", "/proc/"+pid+"/ns/net")
		return err1 == nil && err2 == nil && self != its
	})

	r := h.cnikit("attach", "--pid", pid, "--net", "attnet")
	h.mustSucceed(r, "attach")
	id := strings.TrimSpace(r.stdout)
	out, err := h.host.Run("nsenter", "-t", pid, "-n", "sh", "-c", "ip -4 -o addr show eth0 && ping -c 1 -W 2 10.96.0.1")
	if err != nil || !strings.Contains(out, "inet 10.96.0.") {
		t.Fatalf("attached process has no working eth0: %v\n%s", err, out)
	}
	if a := h.attachments(); len(a) != 1 || a[0]["containerID"] != id {
		t.Fatalf("cache holds %v, want one attachment of %s", a, id)
	}
	if r := h.cnikit("attach", "--pid", pid, "--net", "attnet"); r.code == 0 {
		t.Fatalf("attaching the same process twice succeeded: %s", r)
	}

	h.mustSucceed(h.cnikit("detach", "--pid", pid), "detach")
	if out, err := h.host.Run("nsenter", "-t", pid, "-n", "ip", "-o", "link", "show", "eth0"); err == nil {
		t.Errorf("eth0 still in the process's namespace after detach:\n%s", out)
	}
	h.assertNothingLeft("attnet")
	if r := h.cnikit("netns", "list"); strings.TrimSpace(r.stdout) != "" {
		t.Errorf("pinned namespace left behind: %s", r.stdout)
	}
}
