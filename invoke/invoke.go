// Package invoke finds and executes CNI plugin binaries: the one place where
// cnikit's runtime library and its delegating plugins start another plugin.
//
// Lookup cannot be tricked into running a file outside the search path: the
// plugin type must be a bare name, and only a regular executable file counts.
// Execution carries a context deadline, retries a binary that is being replaced
// ("text file busy"), and turns a failed plugin's stdout into its *cni.Error.
package invoke

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/cnikit/cnikit/cni"
)

// Env is the set of CNI_* variables of one plugin invocation.
type Env struct {
	Command     string // CNI_COMMAND
	ContainerID string // CNI_CONTAINERID
	Netns       string // CNI_NETNS
	IfName      string // CNI_IFNAME
	CNIArgs     string // CNI_ARGS
	Path        string // CNI_PATH
}

// Vars returns the CNI_* variables as "K=V" strings, all six always present as
// the reference runtime sets them.
func (e Env) Vars() []string {
	return []string{
		"CNI_COMMAND=" + e.Command,
		"CNI_CONTAINERID=" + e.ContainerID,
		"CNI_NETNS=" + e.Netns,
		"CNI_IFNAME=" + e.IfName,
		"CNI_ARGS=" + e.CNIArgs,
		"CNI_PATH=" + e.Path,
	}
}

// Environ returns base with every CNI_* variable replaced by e's.
func (e Env) Environ(base []string) []string {
	out := make([]string, 0, len(base)+6)
	for _, kv := range base {
		if strings.HasPrefix(kv, "CNI_") && !strings.HasPrefix(kv, "CNI_NETNS_OVERRIDE=") {
			continue
		}
		out = append(out, kv)
	}
	return append(out, e.Vars()...)
}

// Dirs splits a CNI_PATH value into its directories.
func Dirs(path string) []string {
	var dirs []string
	for _, d := range filepath.SplitList(path) {
		if d != "" {
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// Find returns the path of the first regular executable file named pluginType in
// dirs. pluginType must be a bare name (cni.ValidatePluginType).
func Find(pluginType string, dirs []string) (string, error) {
	if err := cni.ValidatePluginType(pluginType); err != nil {
		return "", err
	}
	if len(dirs) == 0 {
		return "", cni.Errorf(cni.CodeInvalidEnvironment, "failed to find plugin %q: no plugin search path (CNI_PATH) given", pluginType)
	}
	for _, dir := range dirs {
		full := filepath.Join(dir, pluginType)
		st, err := os.Stat(full)
		if err != nil || !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
			continue
		}
		if err := checkOwnership(full, st); err != nil {
			return "", err
		}
		return full, nil
	}
	return "", cni.Errorf(cni.CodeInvalidNetworkConfig, "failed to find plugin %q in path %v", pluginType, dirs)
}

// checkOwnership refuses, for a root runtime, a plugin that someone other than
// root could have replaced: one not owned by root or writable by group or others.
func checkOwnership(path string, st os.FileInfo) error {
	if os.Geteuid() != 0 {
		return nil
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if sys.Uid != 0 || st.Mode().Perm()&0o022 != 0 {
		return cni.Errorf(cni.CodeInvalidNetworkConfig,
			"refusing to execute plugin %q: owned by uid %d with mode %v; it must be owned by root and not writable by group or others",
			path, sys.Uid, st.Mode().Perm())
	}
	return nil
}

// maxStdout bounds what a plugin may print; a result is a few kilobytes.
const maxStdout = 16 << 20

// Exec runs the plugin binary at path with stdin and environment env and returns
// its stdout. A plugin that fails returns its error object as a *cni.Error. Its
// stderr is copied to stderr (when not nil) and quoted in errors when stdout is
// empty. An exec refused with "text file busy" (the binary is being replaced) is
// retried with a short backoff until ctx ends.
func Exec(ctx context.Context, path string, stdin []byte, env []string, stderr io.Writer) ([]byte, error) {
	backoff := 20 * time.Millisecond
	for attempt := 0; ; attempt++ {
		out, err := execOnce(ctx, path, stdin, env, stderr)
		if err == nil || !errors.Is(err, syscall.ETXTBSY) || attempt >= 8 {
			return out, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(backoff):
		}
		backoff *= 2
	}
}

func execOnce(ctx context.Context, path string, stdin []byte, env []string, stderr io.Writer) ([]byte, error) {
	var stdout, errBuf bytes.Buffer
	cmd := exec.CommandContext(ctx, path)
	cmd.Env = env
	cmd.Stdin = bytes.NewReader(stdin)
	cmd.Stdout = &limitedWriter{w: &stdout, n: maxStdout}
	cmd.Stderr = &errBuf
	runErr := cmd.Run()
	if stderr != nil && errBuf.Len() > 0 {
		_, _ = stderr.Write(errBuf.Bytes())
	}
	if runErr == nil {
		return stdout.Bytes(), nil
	}
	var pathErr *os.PathError
	if errors.As(runErr, &pathErr) {
		return nil, runErr // exec itself failed (ETXTBSY, ENOENT, EACCES)
	}
	if ctx.Err() != nil {
		return nil, cni.Errorf(cni.CodeTryAgainLater, "plugin %s did not finish in time: %v", filepath.Base(path), ctx.Err())
	}
	return nil, pluginError(path, stdout.Bytes(), errBuf.Bytes(), runErr)
}

// pluginError turns a failed plugin's output into an error: its error object when
// stdout holds one, otherwise a message quoting stderr.
func pluginError(path string, stdout, stderr []byte, runErr error) error {
	name := filepath.Base(path)
	if len(bytes.TrimSpace(stdout)) == 0 {
		if msg := strings.TrimSpace(string(stderr)); msg != "" {
			return &cni.Error{Code: cni.CodeUnknown, Msg: fmt.Sprintf("plugin %s failed: %q: %v", name, tail(msg, 4096), runErr)}
		}
		return &cni.Error{Code: cni.CodeUnknown, Msg: fmt.Sprintf("plugin %s failed with no error message: %v", name, runErr)}
	}
	var e cni.Error
	if err := json.Unmarshal(stdout, &e); err != nil || (e.Code == 0 && e.Msg == "") {
		return &cni.Error{Code: cni.CodeUnknown,
			Msg: fmt.Sprintf("plugin %s failed but its error message could not be parsed: %q: %v", name, tail(string(stdout), 4096), runErr)}
	}
	return &e
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if len(p) > l.n {
		return 0, fmt.Errorf("plugin output exceeds %d bytes", maxStdout)
	}
	l.n -= len(p)
	return l.w.Write(p)
}
