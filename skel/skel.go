// Package skel is the entrypoint of a CNI plugin: it reads the CNI_* environment
// and the configuration on stdin, checks them in the order and with the error
// codes of the spec, dispatches to the plugin's verb, and prints the result or
// the error object on stdout.
//
// Plugins register themselves by name (Register); cnikit's single binary runs
// the one named by its argv[0]. The same plugins can be invoked in-process
// (Invoke), which is how a cnikit plugin delegates to a cnikit IPAM plugin
// without starting a process.
package skel

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"sort"
	"strings"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/invoke"
	"github.com/cnikit/cnikit/netns"
)

// MaxStdin is the largest configuration a plugin accepts on stdin. A GC request
// listing tens of thousands of attachments stays well below it. A larger one is
// refused with code 7 (invalid network configuration), not 5: stdin was read
// without any I/O failure, and the same configuration would fail again, which is
// what a runtime should conclude.
const MaxStdin = 8 << 20

// Args is one invocation of a plugin: its CNI_* environment and its stdin.
type Args struct {
	invoke.Env
	// NetnsOverride allows ADD, CHECK and DEL on the plugin's own namespace
	// (CNI_NETNS_OVERRIDE=1 or true), which tests that run a plugin in-process
	// need.
	NetnsOverride bool
	StdinData     []byte
	// Version is the request's cniVersion ("" means 0.1.0, already checked
	// against the plugin's supported versions).
	Version string
	// Log writes to stderr and, when the configuration names one, a log file.
	Log *slog.Logger

	pluginName string
}

// OpenNetns opens the container's namespace, CNI_NETNS, for a verb that
// works inside it; a failure gets its code from NetnsError.
func (a *Args) OpenNetns() (*netns.NS, error) {
	ns, err := netns.Open(a.Netns)
	if err != nil {
		return nil, a.NetnsError(err)
	}
	return ns, nil
}

// NetnsError gives a failure to open or enter CNI_NETNS the spec's code: 3
// (unknown container) when the namespace does not exist, 4 (invalid
// environment) otherwise, in a message naming the plugin and the path.
func (a *Args) NetnsError(err error) error {
	prefix := ""
	if a.pluginName != "" {
		prefix = a.pluginName + ": "
	}
	if errors.Is(err, netns.ErrNotExist) {
		return cni.Errorf(cni.CodeUnknownContainer, "%snetwork namespace %q does not exist", prefix, a.Netns)
	}
	return cni.Errorf(cni.CodeInvalidEnvironment, "%snetwork namespace %q: %v", prefix, a.Netns, err)
}

// Plugin is a CNI plugin: its name, and one function per verb. A nil function
// makes that verb a successful no-op; for ADD that means printing prevResult
// unchanged (or an empty result without one), as the spec asks of a plugin that
// changes nothing.
type Plugin struct {
	// Name is the plugin's type, the binary name runtimes look up.
	Name string
	// About is printed, with the supported versions, when the plugin is run
	// without CNI_COMMAND.
	About string
	// Versions the plugin accepts; nil means every version cni.AllVersions lists.
	Versions []string

	// Add returns the result in canonical form; skel prints it in the request's
	// version. A plain error becomes code 999; a *cni.Error keeps its code.
	Add    func(ctx context.Context, args *Args) (*cni.Result, error)
	Del    func(ctx context.Context, args *Args) error
	Check  func(ctx context.Context, args *Args) error
	Status func(ctx context.Context, args *Args) error
	GC     func(ctx context.Context, args *Args) error
}

func (p *Plugin) versions() []string {
	if p.Versions != nil {
		return p.Versions
	}
	return cni.AllVersions
}

var registry = map[string]*Plugin{}

// Register makes a plugin available by name to Lookup, Main and Invoke.
func Register(p *Plugin) {
	if _, dup := registry[p.Name]; dup {
		panic("skel: plugin registered twice: " + p.Name)
	}
	registry[p.Name] = p
}

// Lookup returns the registered plugin called name.
func Lookup(name string) (*Plugin, bool) {
	p, ok := registry[name]
	return p, ok
}

// Names returns the registered plugins' names, sorted.
func Names() []string {
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// required lists the variables each verb needs, as the spec's table has them
// (§2; spec-notes X4). The reference skel also wants CNI_PATH for ADD, DEL,
// CHECK and STATUS; we follow the spec, so that a plugin needing no delegate
// runs without it. The order is the order missing variables are reported in.
// An unknown verb needs only CNI_COMMAND; it is refused after the stdin checks.
var required = map[string][]string{
	"ADD":     {"CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"},
	"CHECK":   {"CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"},
	"DEL":     {"CNI_COMMAND", "CNI_CONTAINERID", "CNI_IFNAME"},
	"STATUS":  {"CNI_COMMAND"},
	"GC":      {"CNI_COMMAND", "CNI_PATH"},
	"VERSION": {"CNI_COMMAND"},
}

// Main runs p as a process: environment, stdin, stdout, stderr, exit status.
func Main(p *Plugin) {
	// A plugin process lives for milliseconds and allocates a few megabytes:
	// collecting garbage would be wasted work. The memory limit still brings
	// the collector back should a request ever need much more.
	debug.SetGCPercent(-1)
	debug.SetMemoryLimit(processMemoryLimit)
	os.Exit(Run(context.Background(), p, os.Getenv, os.Stdin, os.Stdout, os.Stderr))
}

// processMemoryLimit is the heap size at which a plugin process starts
// collecting garbage.
const processMemoryLimit = 256 << 20

// Run is Main with its inputs and outputs given, and the exit status returned.
// The checks run in the reference skel's order (spec-notes X7): environment
// (code 4), stdin (5, or 7 when larger than MaxStdin), JSON (6), network name
// (7), verb (4), cniVersion (6, then 1), then the plugin's function.
func Run(ctx context.Context, p *Plugin, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	env := invoke.Env{
		Command:     getenv("CNI_COMMAND"),
		ContainerID: getenv("CNI_CONTAINERID"),
		Netns:       getenv("CNI_NETNS"),
		IfName:      getenv("CNI_IFNAME"),
		CNIArgs:     getenv("CNI_ARGS"),
		Path:        getenv("CNI_PATH"),
	}
	if env.Command == "" {
		about := p.About
		if about == "" {
			about = "CNI " + p.Name + " plugin"
		}
		fmt.Fprintf(stderr, "%s\nCNI protocol versions supported: %s\n", about, strings.Join(p.versions(), ", "))
		return 0
	}
	override := getenv("CNI_NETNS_OVERRIDE")
	args := &Args{Env: env, NetnsOverride: override == "1" || strings.EqualFold(override, "true")}

	cerr := checkEnv(&args.Env)
	if cerr == nil && env.Command != "VERSION" {
		// VERSION needs nothing from stdin, and reading it would block a
		// caller that leaves stdin open.
		data, err := io.ReadAll(io.LimitReader(stdin, MaxStdin+1))
		if err != nil {
			cerr = cni.Errorf(cni.CodeIOFailure, "error reading from stdin: %v", err)
		}
		args.StdinData = data
	}
	var out []byte
	if cerr == nil {
		out, cerr = serve(ctx, p, args, stderr)
	}
	if cerr != nil {
		if cerr.CNIVersion == "" {
			cerr = withVersion(cerr, errorVersion(p, args))
		}
		printError(stdout, cerr)
		return 1
	}
	_, _ = stdout.Write(out)
	return 0
}

// errorVersion is the cniVersion written into an error object: the request's
// when it is known and supported, else the newest.
func errorVersion(p *Plugin, args *Args) string {
	if args.Version != "" {
		return args.Version
	}
	var req struct {
		CNIVersion string `json:"cniVersion"`
	}
	if json.Unmarshal(args.StdinData, &req) == nil && req.CNIVersion != "" && cni.Reconcile(req.CNIVersion, p.versions()) == nil {
		return req.CNIVersion
	}
	return cni.SpecVersion
}

func withVersion(e *cni.Error, version string) *cni.Error {
	c := *e
	c.CNIVersion = version
	return &c
}

// printError writes the error object as the reference does: indented by four
// spaces, on stdout.
func printError(w io.Writer, e *cni.Error) {
	data, _ := json.MarshalIndent(e, "", "    ")
	_, _ = w.Write(append(data, '\n'))
}

// Invoke runs one verb of p in-process: the same checks, codes and output as a
// plugin process, with args.StdinData as stdin. It returns what the plugin would
// print on stdout on success. Log lines go to the process's stderr.
func Invoke(ctx context.Context, p *Plugin, args *Args) ([]byte, *cni.Error) {
	if err := checkEnv(&args.Env); err != nil {
		return nil, err
	}
	return serve(ctx, p, args, os.Stderr)
}

// commonConf holds the keys skel itself reads from every configuration.
type commonConf struct {
	CNIVersion string `json:"cniVersion"`
	Name       string `json:"name"`
	// LogFile, when set, receives the plugin's log lines in addition to stderr.
	LogFile string `json:"logFile"`
	// LogLevel is a slog level name (debug, info, warn, error); info by default.
	LogLevel string `json:"logLevel"`
	// PrevResult is only used when the plugin has no ADD of its own.
	PrevResult json.RawMessage `json:"prevResult"`
}

// serve runs the checks that follow the environment's and then the verb.
func serve(ctx context.Context, p *Plugin, args *Args, stderr io.Writer) ([]byte, *cni.Error) {
	args.pluginName = p.Name
	if args.Command == "VERSION" {
		// The reference ignores stdin here and answers with the newest
		// version; runtimes accept that (spec-notes §0).
		return versionInfo(p), nil
	}
	if len(args.StdinData) > MaxStdin {
		return nil, cni.Errorf(cni.CodeInvalidNetworkConfig, "network configuration on stdin is larger than the limit of %d bytes", MaxStdin)
	}
	var conf commonConf
	if err := json.Unmarshal(args.StdinData, &conf); err != nil {
		return nil, cni.Errorf(cni.CodeDecodingFailure, "error unmarshalling network configuration: %v", err)
	}
	if err := cni.ValidateNetworkName(conf.Name); err != nil {
		return nil, err
	}
	closeLog := setupLog(args, &conf, stderr)
	defer closeLog()

	var verbFn func() ([]byte, error)
	switch args.Command {
	case "ADD":
		verbFn = func() ([]byte, error) { return add(ctx, p, args, &conf) }
	case "DEL":
		verbFn = noOutput(ctx, p.Del, args)
	case "CHECK":
		verbFn = noOutput(ctx, p.Check, args)
	case "STATUS":
		verbFn = noOutput(ctx, p.Status, args)
	case "GC":
		verbFn = noOutput(ctx, p.GC, args)
	default:
		return nil, cni.Errorf(cni.CodeInvalidEnvironment, "unknown CNI_COMMAND: %s", args.Command)
	}

	if _, err := cni.ParseVersion(conf.CNIVersion); err != nil {
		return nil, cni.Errorf(cni.CodeDecodingFailure, "invalid cniVersion %q: %v", conf.CNIVersion, err)
	}
	args.Version = conf.CNIVersion
	if args.Version == "" {
		args.Version = "0.1.0"
	}
	if err := cni.Reconcile(args.Version, p.versions()); err != nil {
		return nil, err
	}
	switch args.Command {
	case "CHECK":
		if !cni.SupportsCheck(args.Version) {
			return nil, cni.Errorf(cni.CodeIncompatibleVersion, "config version %q does not allow CHECK (0.4.0 or later needed)", args.Version)
		}
	case "GC", "STATUS":
		if !cni.SupportsGCAndStatus(args.Version) {
			return nil, cni.Errorf(cni.CodeIncompatibleVersion, "config version %q does not allow %s (1.1.0 or later needed)", args.Version, args.Command)
		}
	}
	switch args.Command {
	case "ADD", "CHECK", "DEL":
		// Checked before the verb runs, unlike the reference, which checks
		// after ADD and DEL: by then a DEL may have removed a host interface.
		if err := refuseOwnNetns(args); err != nil {
			return nil, err
		}
	}
	out, err := verbFn()
	if err != nil {
		args.Log.Debug("plugin failed", "error", err)
		return nil, cni.AsError(err)
	}
	return out, nil
}

// add runs the plugin's ADD and prints its result in the request's version.
func add(ctx context.Context, p *Plugin, args *Args, conf *commonConf) ([]byte, error) {
	var res *cni.Result
	if p.Add == nil {
		// A plugin that changes nothing passes prevResult on (spec §3, A3).
		res = &cni.Result{}
		if len(conf.PrevResult) > 0 && string(conf.PrevResult) != "null" {
			prev, err := cni.ParseResult(conf.PrevResult, args.Version)
			if err != nil {
				return nil, cni.Errorf(cni.CodeDecodingFailure, "could not parse prevResult: %v", err)
			}
			res = prev
		}
	} else {
		var err error
		if res, err = p.Add(ctx, args); err != nil {
			return nil, err
		}
		if res == nil {
			return nil, cni.Errorf(cni.CodeInternal, "plugin %s returned neither a result nor an error", p.Name)
		}
	}
	var buf bytes.Buffer
	if err := res.Print(&buf, args.Version); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func noOutput(ctx context.Context, fn func(context.Context, *Args) error, args *Args) func() ([]byte, error) {
	return func() ([]byte, error) {
		if fn == nil {
			return nil, nil
		}
		return nil, fn(ctx, args)
	}
}

// checkEnv checks the CNI_* variables the verb requires: all missing ones are
// listed in one code 4 error, then the container ID (code 3 or 4) and the
// interface name (code 4) are validated.
func checkEnv(env *invoke.Env) *cni.Error {
	values := map[string]string{
		"CNI_COMMAND": env.Command, "CNI_CONTAINERID": env.ContainerID, "CNI_NETNS": env.Netns,
		"CNI_IFNAME": env.IfName, "CNI_ARGS": env.CNIArgs, "CNI_PATH": env.Path,
	}
	need, known := required[env.Command]
	if !known {
		need = required["VERSION"]
	}
	var missing []string
	for _, name := range need {
		if values[name] == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return cni.Errorf(cni.CodeInvalidEnvironment, "required env variables [%s] missing", strings.Join(missing, ","))
	}
	for _, name := range need {
		switch name {
		case "CNI_CONTAINERID":
			if err := cni.ValidateContainerID(env.ContainerID); err != nil {
				return err
			}
		case "CNI_IFNAME":
			if err := cni.ValidateInterfaceName(env.IfName); err != nil {
				return err
			}
		}
	}
	return nil
}

// versionInfo answers VERSION.
func versionInfo(p *Plugin) []byte {
	data, _ := json.Marshal(cni.PluginInfo{CNIVersion: cni.SpecVersion, SupportedVersions: p.versions()})
	return append(data, '\n')
}

// refuseOwnNetns stops ADD, CHECK and DEL from working on the plugin's own
// namespace, which is the host's: a runtime that passes it is almost surely
// broken, and DEL there would remove a host interface. Code 8, as in the
// reference. A path that does not exist passes (the verb reports it, or for
// DEL succeeds); so does, for DEL only, a path that is not a namespace (a
// leftover file after the namespace went away).
func refuseOwnNetns(args *Args) *cni.Error {
	if args.NetnsOverride || args.Netns == "" {
		return nil
	}
	target, err := netns.Open(args.Netns)
	if err != nil {
		if errors.Is(err, netns.ErrNotExist) || args.Command == "DEL" {
			return nil
		}
		return cni.Errorf(cni.CodeInvalidEnvironment, "CNI_NETNS %q: %v", args.Netns, err)
	}
	defer target.Close()
	self, err := netns.Current()
	if err != nil {
		return nil
	}
	defer self.Close()
	if same, _ := target.SameAs(self); same {
		return cni.Errorf(cni.CodeInvalidNetNS, "CNI_NETNS %q is the plugin's own network namespace", args.Netns).
			WithDetails("set CNI_NETNS_OVERRIDE=1 to allow it")
	}
	return nil
}

// setupLog gives args a logger writing to stderr, and also to the
// configuration's logFile when it names one.
func setupLog(args *Args, conf *commonConf, stderr io.Writer) func() {
	level := slog.LevelInfo
	if conf.LogLevel != "" {
		if err := level.UnmarshalText([]byte(conf.LogLevel)); err != nil {
			fmt.Fprintf(stderr, "cnikit: ignoring logLevel %q: %v\n", conf.LogLevel, err)
		}
	}
	var w io.Writer = stderr
	closeFn := func() {}
	if conf.LogFile != "" {
		f, err := os.OpenFile(conf.LogFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			fmt.Fprintf(stderr, "cnikit: cannot open log file %q: %v\n", conf.LogFile, err)
		} else {
			w = io.MultiWriter(stderr, f)
			closeFn = func() { f.Close() }
		}
	}
	args.Log = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})).With(
		"plugin", args.pluginName, "network", conf.Name, "command", args.Command, "containerID", args.ContainerID, "ifname", args.IfName)
	return closeFn
}
