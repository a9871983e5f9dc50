package interop

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cnikit/cnikit/internal/nstest"
)

// A sandbox is where a real container runtime runs in these tests: a
// throw-away network namespace playing the host (nstest), plus a private
// mount namespace and a private PID namespace. The mount namespace puts
// empty or test-owned directories over every place a runtime writes
// (/run, /etc/cni/net.d, /var/lib/cni, /var/lib/docker, ...), so that the
// machine's own CNI, container and runtime state is never read or written;
// the PID namespace ties every process a runtime leaves behind (conmon,
// shims, containers) to the sandbox: when the sandbox's init dies, the
// kernel kills them all.
//
// The init is this test binary started again with sandboxInitEnv set
// (TestMain); commands enter the sandbox with nsenter.
type sandbox struct {
	t       *testing.T
	dir     string
	init    *exec.Cmd
	initPid int
	env     []string
	exited  chan struct{} // closed when the init has exited
}

// sandboxInitEnv carries the JSON sandboxSpec to the re-executed test binary
// that becomes the sandbox's init.
const sandboxInitEnv = "CNIKIT_INTEROP_SANDBOX_INIT"

// sandboxMount is one mount the sandbox's init makes over the machine's tree:
// Source bind-mounted onto Target, or an empty tmpfs when Source is "".
// A Target that does not exist is made inside a private overlay over its
// nearest existing parent, so the machine's tree gains no directory.
type sandboxMount struct {
	Target string `json:"target"`
	Source string `json:"source,omitempty"`
}

type sandboxSpec struct {
	Mounts []sandboxMount `json:"mounts"`
	// Scratch holds the upper and work dirs of the overlays.
	Scratch string `json:"scratch"`
}

// sandboxPath is the PATH of every command run in a sandbox. It leaves out
// /usr/local so that Debian's docker CLI, not another one, is found.
const sandboxPath = "/usr/sbin:/usr/bin:/sbin:/bin"

// newSandbox starts a sandbox whose network namespace is host, with mounts
// applied in order. It is torn down when the test ends, after every cleanup
// registered later (daemons, containers) has run.
func newSandbox(t *testing.T, host *nstest.NS, mounts []sandboxMount) *sandbox {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	s := &sandbox{t: t, dir: t.TempDir(), exited: make(chan struct{})}
	spec, _ := json.Marshal(sandboxSpec{Mounts: mounts, Scratch: filepath.Join(s.dir, "scratch")})
	s.env = []string{"PATH=" + sandboxPath, "HOME=/root", "LANG=C.UTF-8"}
	s.init = exec.Command(self)
	s.init.Env = append(append([]string{}, s.env...), sandboxInitEnv+"="+string(spec))
	// The init dies with the thread that started it: that thread lives until
	// the sandbox is torn down, or until the test process dies.
	s.init.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID,
		Pdeathsig:  syscall.SIGKILL,
	}
	// The init says "ready" on this pipe once its mounts are made.
	readyPipe, readyWriter, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer readyPipe.Close()
	s.init.Stdout = readyWriter
	var initLog strings.Builder
	s.init.Stderr = &initLog

	started, release := make(chan error, 1), make(chan struct{})
	go func() {
		// This thread enters the host namespace for good: it is never unlocked,
		// so it ends with the goroutine, after the sandbox is gone.
		runtime.LockOSThread()
		if err := unix.Setns(host.Fd(), unix.CLONE_NEWNET); err != nil {
			started <- err
			return
		}
		if err := s.init.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		s.init.Wait()
		close(s.exited)
		<-release
	}()
	err = <-started
	readyWriter.Close() // the init has its own copy now
	if err != nil {
		t.Fatalf("starting the sandbox init: %v", err)
	}
	s.initPid = s.init.Process.Pid
	t.Cleanup(func() {
		s.init.Process.Kill() // the kernel then kills every process of the PID namespace
		<-s.exited
		close(release)
	})
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(readyPipe).ReadString('\n')
		ready <- line
	}()
	select {
	case line := <-ready:
		if strings.TrimSpace(line) != "ready" {
			<-s.exited
			t.Fatalf("sandbox init failed: %s", initLog.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("sandbox init did not become ready in 30 s")
	}
	return s
}

// command returns cmd run inside the sandbox (its mount, PID and network
// namespaces) with the sandbox's environment plus env.
func (s *sandbox) command(ctx context.Context, env []string, name string, args ...string) *exec.Cmd {
	full := append([]string{"--target", strconv.Itoa(s.initPid), "--mount", "--net", "--pid", "--", name}, args...)
	cmd := exec.CommandContext(ctx, "nsenter", full...)
	cmd.Env = append(append([]string{}, s.env...), env...)
	cmd.Dir = "/"
	return cmd
}

// run runs a command in the sandbox, at most two minutes, and returns its
// combined output.
func (s *sandbox) run(env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := s.command(ctx, env, name, args...).CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (%s did not finish in 2 minutes)", err, name)
	}
	return string(out), err
}

// mustRun is run that fails the test when the command fails.
func (s *sandbox) mustRun(env []string, name string, args ...string) string {
	s.t.Helper()
	out, err := s.run(env, name, args...)
	if err != nil {
		s.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// daemon is a long-running process of a sandbox, logging to a file.
type daemon struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
}

// startDaemon starts a daemon in the sandbox. It is stopped (SIGTERM, then
// SIGKILL after 20 s) when the test ends, before the sandbox goes.
func (s *sandbox) startDaemon(env []string, name string, args ...string) *daemon {
	s.t.Helper()
	d := &daemon{name: name, logPath: filepath.Join(s.dir, filepath.Base(name)+".log"), done: make(chan struct{})}
	logFile, err := os.Create(d.logPath)
	if err != nil {
		s.t.Fatal(err)
	}
	d.cmd = s.command(context.Background(), env, name, args...)
	d.cmd.Stdout, d.cmd.Stderr = logFile, logFile
	if err := d.cmd.Start(); err != nil {
		logFile.Close()
		s.t.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		d.cmd.Wait()
		logFile.Close()
		close(d.done)
	}()
	s.t.Cleanup(d.stop)
	return d
}

// stop ends the daemon by its PID. The process started is nsenter, which
// waits for the daemon, its only child; the signal goes to that child.
func (d *daemon) stop() {
	select {
	case <-d.done:
		return
	default:
	}
	if pid := onlyChild(d.cmd.Process.Pid); pid > 0 {
		syscall.Kill(pid, syscall.SIGTERM)
	}
	select {
	case <-d.done:
	case <-time.After(20 * time.Second):
		if pid := onlyChild(d.cmd.Process.Pid); pid > 0 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		d.cmd.Process.Kill()
		<-d.done
	}
}

// log returns the end of the daemon's log, for failure messages.
func (d *daemon) log() string {
	b, _ := os.ReadFile(d.logPath)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// onlyChild returns the PID of pid's first child, or 0.
func onlyChild(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(b))
	if len(fields) == 0 {
		return 0
	}
	child, _ := strconv.Atoi(fields[0])
	return child
}

// waitFor retries check every 100 ms until it succeeds or timeout passes, and
// returns its last error.
func waitFor(timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// runSandboxInit is the sandbox's init: PID 1 of a fresh PID namespace, in a
// fresh mount namespace. It makes the mounts, says "ready" on stdout, then
// reaps orphans until it is killed.
func runSandboxInit(specJSON string) int {
	var spec sandboxSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		fmt.Fprintf(os.Stderr, "sandbox init: %v\n", err)
		return 1
	}
	if err := setupSandboxMounts(spec); err != nil {
		fmt.Fprintf(os.Stderr, "sandbox init: %v\n", err)
		return 1
	}
	fmt.Println("ready")
	os.Stdout.Close()
	for {
		var ws unix.WaitStatus
		if _, err := unix.Wait4(-1, &ws, 0, nil); errors.Is(err, unix.ECHILD) {
			time.Sleep(200 * time.Millisecond)
		}
	}
}

func setupSandboxMounts(spec sandboxSpec) error {
	// Nothing done here may propagate back to the machine.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making / private: %w", err)
	}
	// A /proc of the new PID namespace: PIDs that runtimes read and print
	// (docker inspect's State.Pid) are then valid in /proc here.
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mounting /proc: %w", err)
	}
	m := &mountPlanner{scratch: spec.Scratch}
	for _, mnt := range spec.Mounts {
		if err := m.ensureDir(mnt.Target); err != nil {
			return err
		}
		if mnt.Source == "" {
			if err := unix.Mount("tmpfs", mnt.Target, "tmpfs", 0, "mode=0755"); err != nil {
				return fmt.Errorf("tmpfs on %s: %w", mnt.Target, err)
			}
			m.private = append(m.private, mnt.Target)
			continue
		}
		if err := unix.Mount(mnt.Source, mnt.Target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("binding %s on %s: %w", mnt.Source, mnt.Target, err)
		}
		m.private = append(m.private, mnt.Target) // a test's own directory
	}
	return nil
}

// mountPlanner makes mount points without writing to the machine's tree.
type mountPlanner struct {
	scratch  string
	private  []string // mounts of this sandbox's own (tmpfs, overlays): writable freely
	overlays int
}

func (m *mountPlanner) ensureDir(target string) error {
	if st, err := os.Stat(target); err == nil {
		if !st.IsDir() {
			return fmt.Errorf("%s is not a directory", target)
		}
		return nil
	}
	parent := filepath.Dir(target)
	for {
		if _, err := os.Stat(parent); err == nil {
			break
		}
		parent = filepath.Dir(parent)
	}
	if !m.isPrivate(parent) {
		if parent == "/" {
			return fmt.Errorf("%s: refusing to overlay /", target)
		}
		m.overlays++
		base := filepath.Join(m.scratch, strconv.Itoa(m.overlays))
		upper, work := filepath.Join(base, "upper"), filepath.Join(base, "work")
		if err := os.MkdirAll(upper, 0o755); err != nil {
			return err
		}
		if err := os.MkdirAll(work, 0o755); err != nil {
			return err
		}
		opts := "lowerdir=" + parent + ",upperdir=" + upper + ",workdir=" + work
		if err := unix.Mount("overlay", parent, "overlay", 0, opts); err != nil {
			return fmt.Errorf("private overlay on %s (to make %s): %w", parent, target, err)
		}
		m.private = append(m.private, parent)
	}
	return os.MkdirAll(target, 0o755)
}

func (m *mountPlanner) isPrivate(dir string) bool {
	for _, p := range m.private {
		if dir == p || strings.HasPrefix(dir, p+"/") {
			return true
		}
	}
	return false
}

// cgroupRoot is where the machine's cgroup hierarchies are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// cgroupDirs lists the directories of cgroup path (and below it) in every
// hierarchy.
func cgroupDirs(path string) []string {
	var dirs []string
	hierarchies, _ := os.ReadDir(cgroupRoot)
	for _, h := range hierarchies {
		top := filepath.Join(cgroupRoot, h.Name(), path)
		filepath.WalkDir(top, func(p string, e os.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
	}
	return dirs
}

// removeCgroup removes a test's cgroup path from every hierarchy, deepest
// first. Processes killed with their sandbox leave their cgroups a moment
// later (EBUSY until then), so it retries for a while; a cgroup that still
// holds a process after that stays and is reported.
func removeCgroup(t *testing.T, path string) {
	err := waitFor(10*time.Second, func() error {
		dirs := cgroupDirs(path)
		var busy error
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := os.Remove(dirs[i]); err != nil && !os.IsNotExist(err) {
				busy = fmt.Errorf("removing cgroup %s: %w", dirs[i], err)
			}
		}
		return busy
	})
	if err != nil {
		t.Error(err)
	}
}
