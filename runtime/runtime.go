package runtime

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/invoke"
	"github.com/cnikit/cnikit/skel"
)

// DefaultCacheDir is the result-cache root the reference runtime uses; sharing
// it lets cnitool, Podman and cnikit read each other's cached results.
const DefaultCacheDir = "/var/lib/cni"

// Config configures a Runtime.
type Config struct {
	// Path is the plugin search path (the CNI_PATH directories), in order.
	Path []string
	// CacheDir is the root of the result cache and the lock files; results are
	// kept in <CacheDir>/results. "" means DefaultCacheDir.
	CacheDir string
	// Stderr receives the plugins' stderr; nil means os.Stderr. Operations
	// running concurrently write to it concurrently.
	Stderr io.Writer
	// Exec carries out plugin invocations; nil executes binaries with
	// invoke.Exec (BinaryExecutor).
	Exec Executor
	// InProcess runs cnikit's own plugins inside the calling process when the
	// binary resolved in Path is the running executable and the plugin is
	// registered with skel: the same request, checks and output, without
	// starting a process. Off by default.
	InProcess bool
}

// Executor carries out one plugin invocation: it runs the plugin at pluginPath
// with stdin and the CNI_* variables of env, and returns its stdout. A plugin
// that fails yields an error, its *cni.Error when it printed one. Tests
// substitute it; the default is BinaryExecutor.
type Executor interface {
	Exec(ctx context.Context, pluginPath string, stdin []byte, env invoke.Env) ([]byte, error)
}

// BinaryExecutor executes plugin binaries with invoke.Exec, in an environment
// made of the process's own with the CNI_* variables replaced.
type BinaryExecutor struct {
	// Stderr receives the plugins' stderr; nil discards it.
	Stderr io.Writer
}

// Exec implements Executor.
func (e BinaryExecutor) Exec(ctx context.Context, pluginPath string, stdin []byte, env invoke.Env) ([]byte, error) {
	return invoke.Exec(ctx, pluginPath, stdin, env.Environ(os.Environ()), e.Stderr)
}

// Runtime runs network configuration lists for attachments: the equivalent of
// the reference library's CNIConfig. It is safe for concurrent use, and
// several processes may share one cache directory.
type Runtime struct {
	path      []string
	cacheDir  string
	stderr    io.Writer
	exec      Executor
	inProcess bool
}

// New returns a Runtime for cfg.
func New(cfg Config) *Runtime {
	r := &Runtime{
		path:      append([]string(nil), cfg.Path...),
		cacheDir:  cfg.CacheDir,
		stderr:    cfg.Stderr,
		exec:      cfg.Exec,
		inProcess: cfg.InProcess,
	}
	if r.cacheDir == "" {
		r.cacheDir = DefaultCacheDir
	}
	if r.stderr == nil {
		r.stderr = os.Stderr
	}
	if r.exec == nil {
		r.exec = BinaryExecutor{Stderr: r.stderr}
	}
	return r
}

// CacheDir returns the root of the result cache.
func (r *Runtime) CacheDir() string { return r.cacheDir }

// Attachment is the per-attachment input of ADD, CHECK and DEL (the reference
// library's RuntimeConf).
type Attachment struct {
	ContainerID string
	Netns       string
	IfName      string
	// Args are sent to every plugin as CNI_ARGS "K1=V1;K2=V2".
	Args [][2]string
	// CapabilityArgs are offered to the plugins: each plugin receives, in
	// runtimeConfig, those whose key it declares in its capabilities.
	CapabilityArgs map[string]any
}

// env returns the CNI_* variables of verb for att.
func (r *Runtime) env(verb string, att *Attachment) invoke.Env {
	e := invoke.Env{Command: verb, Path: invoke.JoinDirs(r.path)}
	if att != nil {
		e.ContainerID = att.ContainerID
		e.Netns = att.Netns
		e.IfName = att.IfName
		e.CNIArgs = cni.FormatArgs(att.Args)
	}
	return e
}

// PluginError is the failure of one plugin of a list: which plugin, in which
// operation, and the error it returned. The plugin's *cni.Error, with its code
// and details, stays reachable with errors.As.
type PluginError struct {
	Type string // the plugin's type
	Name string // the plugin object's own name, when it has one
	Verb string // "add", "check", "delete" or "gc", as the reference library names them
	Err  error
}

// Error reads `plugin type="bridge" failed (add): <error>`, as the reference
// library words it.
func (e *PluginError) Error() string {
	desc := fmt.Sprintf("type=%q", e.Type)
	if e.Name != "" {
		desc += fmt.Sprintf(" name=%q", e.Name)
	}
	return fmt.Sprintf("plugin %s failed (%s): %v", desc, e.Verb, e.Err)
}

// Unwrap returns the plugin's error.
func (e *PluginError) Unwrap() error { return e.Err }

func pluginFailure(p *cni.PluginConfig, verb string, err error) error {
	return &PluginError{Type: p.Network.Type, Name: p.Network.Name, Verb: verb, Err: err}
}

// run finds pluginType in the search path and invokes it: in-process when
// enabled and possible, otherwise through the Executor. It runs on the calling
// goroutine, so a caller locked in a network namespace runs the plugin there.
func (r *Runtime) run(ctx context.Context, pluginType string, stdin []byte, env invoke.Env) ([]byte, error) {
	path, err := invoke.Find(pluginType, r.path)
	if err != nil {
		return nil, err
	}
	if r.inProcess && invoke.IsRunningExecutable(path) {
		if p, ok := skel.Lookup(pluginType); ok {
			return r.invokeInProcess(ctx, p, stdin, env)
		}
	}
	return r.exec.Exec(ctx, path, stdin, env)
}

// invokeInProcess runs a registered plugin as its binary would run: skel gets
// the same environment and stdin, and its stdout and exit status are read the
// way an executed plugin's are.
func (r *Runtime) invokeInProcess(ctx context.Context, p *skel.Plugin, stdin []byte, env invoke.Env) (out []byte, err error) {
	defer func() {
		if v := recover(); v != nil {
			out, err = nil, cni.Errorf(cni.CodeInternal, "plugin %s panicked: %v", p.Name, v)
		}
	}()
	getenv := func(name string) string {
		if v, ok := env.Lookup(name); ok {
			return v
		}
		return os.Getenv(name) // CNI_NETNS_OVERRIDE and the like, as a child would inherit them
	}
	var stdout bytes.Buffer
	if status := skel.Run(ctx, p, getenv, bytes.NewReader(stdin), &stdout, r.stderr); status != 0 {
		return nil, invoke.PluginError(p.Name, stdout.Bytes(), nil, fmt.Errorf("exit status %d", status))
	}
	return stdout.Bytes(), nil
}
