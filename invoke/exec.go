package invoke

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/cnikit/cnikit/cni"
)

const (
	// MaxOutput bounds what a plugin may print on stdout; a result or an error
	// object is a few kilobytes.
	MaxOutput = 16 << 20
	// stderrTail is how much of a failed plugin's stderr an error quotes.
	stderrTail = 4096
	// killGrace bounds how long Exec waits, after killing a plugin, for the
	// processes it left behind to close their copies of its stdout and stderr.
	killGrace = 2 * time.Second
	// textBusyAttempts bounds the retries of an exec refused with ETXTBSY.
	textBusyAttempts = 8
)

// onTextBusy, when set (by tests), is called before each retry of an exec
// refused with ETXTBSY.
var onTextBusy func(attempt int)

// Exec runs the plugin binary at path with stdin and the complete environment
// env (build it with Env.Environ) and returns what it printed on stdout.
//
// A plugin that exits non-zero yields its error object as a *cni.Error (read
// from stdout, or from stderr when stdout is empty, since the spec's overview
// puts it there); without one, the error quotes the end of its stderr. The
// plugin's stderr is copied to stderr as it is written, when stderr is not nil.
//
// The plugin runs in its own process group; when ctx ends, the whole group is
// killed and the error has code 11 (try again later). An exec refused with
// "text file busy" (the binary is being replaced) is retried with a growing
// pause, until ctx ends or a few seconds have passed.
//
// Exec starts the process from the calling goroutine's OS thread, so a caller
// locked inside a network namespace runs the plugin in that namespace.
func Exec(ctx context.Context, path string, stdin []byte, env []string, stderr io.Writer) ([]byte, error) {
	pause := 20 * time.Millisecond
	for attempt := 1; ; attempt++ {
		out, err := execOnce(ctx, path, stdin, env, stderr)
		if err == nil || !errors.Is(err, syscall.ETXTBSY) || attempt >= textBusyAttempts {
			return out, err
		}
		if onTextBusy != nil {
			onTextBusy(attempt)
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(pause):
		}
		pause = min(2*pause, time.Second)
	}
}

func execOnce(ctx context.Context, path string, stdin []byte, env []string, stderr io.Writer) ([]byte, error) {
	name := filepath.Base(path)
	stdout := &cappedBuffer{limit: MaxOutput}
	tail := &tailBuffer{limit: stderrTail}
	cmd := exec.CommandContext(ctx, path)
	cmd.Env = env
	cmd.Stdin = bytes.NewReader(stdin)
	cmd.Stdout = stdout
	cmd.Stderr = &stderrForwarder{tail: tail, out: stderr}
	// A process group of its own lets a cancelled context kill the plugin and
	// whatever it started (a delegated IPAM plugin), not just the plugin.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = killGrace

	runErr := cmd.Run()
	if runErr == nil {
		return stdout.Bytes(), nil
	}
	if ctx.Err() != nil {
		return nil, cni.Errorf(cni.CodeTryAgainLater, "plugin %s did not finish in time and was killed: %v", name, context.Cause(ctx))
	}
	if cmd.ProcessState == nil {
		// It never started: ETXTBSY, EACCES, ENOEXEC, a missing interpreter.
		if errors.Is(runErr, syscall.ETXTBSY) {
			return nil, runErr
		}
		return nil, cni.Errorf(cni.CodeIOFailure, "executing plugin %s: %v", path, runErr)
	}
	if stdout.overflow {
		return nil, cni.Errorf(cni.CodeIOFailure, "plugin %s printed more than %d bytes on stdout", name, MaxOutput)
	}
	return nil, PluginError(name, stdout.Bytes(), tail.Bytes(), runErr)
}

// PluginError turns the output of a plugin that failed into an error: the
// error object it printed on stdout (or, with stdout empty, on stderr) as a
// *cni.Error, or else a code-0 error quoting its stderr, as the reference
// runtime does. cause describes how it failed ("exit status 1").
func PluginError(name string, stdout, stderr []byte, cause error) error {
	if len(bytes.TrimSpace(stdout)) > 0 {
		if e := decodeErrorObject(stdout); e != nil {
			return e
		}
		return &cni.Error{Code: cni.CodeUnknown,
			Msg: fmt.Sprintf("plugin %s failed but its error message could not be parsed: %q: %v", name, tailOf(string(stdout), stderrTail), cause)}
	}
	if e := decodeErrorObject(stderr); e != nil {
		return e
	}
	if msg := strings.TrimSpace(string(stderr)); msg != "" {
		return &cni.Error{Code: cni.CodeUnknown, Msg: fmt.Sprintf("plugin %s failed: %q: %v", name, tailOf(msg, stderrTail), cause)}
	}
	return &cni.Error{Code: cni.CodeUnknown, Msg: fmt.Sprintf("plugin %s failed with no error message: %v", name, cause)}
}

// decodeErrorObject returns data's error object, or nil when data is not one.
func decodeErrorObject(data []byte) *cni.Error {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' {
		return nil
	}
	var e cni.Error
	if err := json.Unmarshal(data, &e); err != nil || (e.Code == 0 && e.Msg == "") {
		return nil
	}
	return &e
}

func tailOf(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// cappedBuffer keeps at most limit bytes and remembers that more came; the
// plugin then gets EPIPE instead of filling the runtime's memory.
type cappedBuffer struct {
	bytes.Buffer
	limit    int
	overflow bool
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	if c.Len()+len(p) > c.limit {
		c.overflow = true
		return 0, fmt.Errorf("plugin output exceeds %d bytes", c.limit)
	}
	return c.Buffer.Write(p)
}

// tailBuffer keeps the last limit bytes written to it.
type tailBuffer struct {
	buf   []byte
	limit int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.limit; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) Bytes() []byte { return t.buf }

// stderrForwarder keeps the tail of a plugin's stderr for error messages and
// copies it on as it comes. A failing destination must not fail the plugin.
type stderrForwarder struct {
	tail *tailBuffer
	out  io.Writer
}

func (f *stderrForwarder) Write(p []byte) (int, error) {
	f.tail.Write(p)
	if f.out != nil {
		_, _ = f.out.Write(p)
	}
	return len(p), nil
}
