// Package e2e tests the built cnikit binary end to end: the CLI and the plugin
// binaries on a real kernel, inside throw-away namespaces where one plays the
// host. Nothing here touches the machine's own network or CNI directories.
package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/nstest"
	"github.com/cnikit/cnikit/internal/plugintest"
)

// harness is one sandboxed "machine": a host namespace, private conf, cache and
// netns dirs, and the cnikit binary with its plugin links.
type harness struct {
	t        *testing.T
	host     *nstest.NS
	bin      string
	binDir   string
	confDir  string
	cacheDir string
	netnsDir string
	dataDir  string
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{t: t, host: nstest.New(t), binDir: plugintest.BinDir(t)}
	h.bin = filepath.Join(h.binDir, "cnikit")
	dir := t.TempDir()
	h.confDir = filepath.Join(dir, "net.d")
	h.cacheDir = filepath.Join(dir, "cache")
	h.netnsDir = filepath.Join(dir, "netns")
	h.dataDir = filepath.Join(dir, "ipam")
	for _, d := range []string{h.confDir, h.netnsDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

// writeConf puts a network configuration list in the conf dir, with every
// "%DATA%" replaced by the test's IPAM data dir.
func (h *harness) writeConf(file, content string) {
	h.t.Helper()
	content = strings.ReplaceAll(content, "%DATA%", h.dataDir)
	if err := os.WriteFile(filepath.Join(h.confDir, file), []byte(content), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

// result of one command.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return "exit " + strconv.Itoa(r.code) + "\nstdout: " + r.stdout + "\nstderr: " + r.stderr
}

// globalArgs point cnikit at the sandbox's dirs and plugins.
func (h *harness) globalArgs() []string {
	return []string{"--conf-dir", h.confDir, "--cache-dir", h.cacheDir, "--netns-dir", h.netnsDir, "--cni-path", h.binDir}
}

// cnikit runs the CLI inside the host namespace and waits for it.
func (h *harness) cnikit(args ...string) result {
	h.t.Helper()
	return h.start(h.command(nil, append(h.globalArgs(), args...)...)).wait()
}

// plugin runs a plugin binary directly (as a runtime would) in the host
// namespace with the given CNI_* environment and stdin.
func (h *harness) plugin(name string, env map[string]string, stdin []byte) result {
	h.t.Helper()
	return h.pluginAt(filepath.Join(h.binDir, name), env, stdin)
}

// pluginAt is plugin with the binary's path given.
func (h *harness) pluginAt(path string, env map[string]string, stdin []byte) result {
	h.t.Helper()
	cmd := exec.Command(path)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdin = bytes.NewReader(stdin)
	return h.start(cmd).wait()
}

func (h *harness) command(stdin []byte, args ...string) *exec.Cmd {
	cmd := exec.Command(h.bin, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	return cmd
}

// proc is a process started in the host namespace.
type proc struct {
	t              *testing.T
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
	done           chan error
}

// start starts cmd from a thread inside the host namespace, so that the process
// and everything it starts live there. It is killed if the test ends first.
func (h *harness) start(cmd *exec.Cmd) *proc {
	h.t.Helper()
	p := &proc{t: h.t, cmd: cmd, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = &p.stdout, &p.stderr
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // the thread changes namespace for good and dies with the goroutine
		if err := unix.Setns(h.host.Fd(), unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		errc <- cmd.Start()
	}()
	if err := <-errc; err != nil {
		h.t.Fatalf("starting %v: %v", cmd.Args, err)
	}
	go func() { p.done <- cmd.Wait() }()
	h.t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// wait waits (at most two minutes) for the process to exit.
func (p *proc) wait() result {
	p.t.Helper()
	var err error
	select {
	case err = <-p.done:
	case <-time.After(2 * time.Minute):
		p.cmd.Process.Kill()
		p.t.Fatalf("%v did not finish in 2 minutes", p.cmd.Args)
	}
	r := result{stdout: p.stdout.String(), stderr: p.stderr.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		p.t.Fatalf("%v: %v", p.cmd.Args, err)
	}
	return r
}

// mustSucceed fails the test unless r exited 0.
func (h *harness) mustSucceed(r result, what string) {
	h.t.Helper()
	if r.code != 0 {
		h.t.Fatalf("%s failed: %s", what, r)
	}
}

// newContainerNetns makes a throw-away namespace file for a container.
func (h *harness) newContainerNetns(name string) string {
	h.t.Helper()
	r := h.cnikit("netns", "add", name)
	h.mustSucceed(r, "netns add")
	path := strings.TrimSpace(r.stdout)
	h.t.Cleanup(func() { h.cnikit("netns", "del", name) })
	return path
}

// attachmentsInCache lists the result cache through the CLI.
func (h *harness) attachments() []map[string]any {
	h.t.Helper()
	r := h.cnikit("ls", "--json")
	h.mustSucceed(r, "ls")
	var out []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		h.t.Fatalf("ls --json: %v\n%s", err, r.stdout)
	}
	return out
}

// hostLinks lists link names in the host namespace.
func (h *harness) hostLinks() []string {
	h.t.Helper()
	links, err := h.host.Handle().LinkList()
	if err != nil {
		h.t.Fatal(err)
	}
	var names []string
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	return names
}

// vethCount counts veth links in the host namespace.
func (h *harness) vethCount() int {
	h.t.Helper()
	links, err := h.host.Handle().LinkList()
	if err != nil {
		h.t.Fatal(err)
	}
	n := 0
	for _, l := range links {
		if l.Type() == "veth" {
			n++
		}
	}
	return n
}

// ipamFiles lists allocation files (not lock or last_reserved_ip) of network,
// in the test's IPAM data dir and in the built-in network's (beside the cache).
func (h *harness) ipamFiles(network string) []string {
	var out []string
	for _, dir := range []string{h.dataDir, filepath.Join(h.cacheDir, "networks")} {
		entries, _ := os.ReadDir(filepath.Join(dir, network))
		for _, e := range entries {
			n := e.Name()
			if n == "lock" || strings.HasPrefix(n, "last_reserved_ip") || strings.HasPrefix(n, ".") {
				continue
			}
			out = append(out, n)
		}
	}
	return out
}

// cniError decodes the error object cnikit printed with --json.
func cniError(t *testing.T, r result) *cni.Error {
	t.Helper()
	var e cni.Error
	if err := json.Unmarshal([]byte(r.stdout), &e); err != nil {
		t.Fatalf("no CNI error object on stdout: %v\n%s", err, r)
	}
	return &e
}
