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
	"sort"
	"strings"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/invoke"
	"github.com/cnikit/cnikit/netns"
)

// MaxStdin is the largest configuration a plugin accepts on stdin. A GC request
// listing tens of thousands of attachments stays well below it.
const MaxStdin = 8 << 20

// Args is one invocation of a plugin: its CNI_* environment and its stdin.
type Args struct {
	invoke.Env
	// NetnsOverride allows ADD and CHECK on the plugin's own namespace
	// (CNI_NETNS_OVERRIDE=1), which tests that run a plugin in-process need.
	NetnsOverride bool
	StdinData     []byte
	// Version is the request's cniVersion ("" means 0.1.0, already checked
	// against the plugin's supported versions).
	Version string
	// Log writes to stderr and, when the configuration names one, a log file.
	Log *slog.Logger

	pluginName string
}

// Plugin is a CNI plugin: its name, and one function per verb. A nil function
// makes that verb a successful no-op, as the spec allows for GC and STATUS.
type Plugin struct {
	Name  string
	About string
	// Versions the plugin accepts; nil means every version cni.AllVersions lists.
	Versions []string

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

// required lists the variables each verb needs (spec §2); the order is the
// order missing variables are reported in.
var required = map[string][]string{
	"ADD":     {"CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"},
	"CHECK":   {"CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"},
	"DEL":     {"CNI_COMMAND", "CNI_CONTAINERID", "CNI_IFNAME"},
	"STATUS":  {"CNI_COMMAND"},
	"GC":      {"CNI_COMMAND"},
	"VERSION": {"CNI_COMMAND"},
}

// Main runs p as a process: environment, stdin, stdout, stderr, exit status.
func Main(p *Plugin) {
	os.Exit(Run(context.Background(), p, os.Getenv, os.Stdin, os.Stdout, os.Stderr))
}

// Run is Main with its inputs and outputs given, and the exit status returned.
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

	var cerr *cni.Error
	if env.Command != "VERSION" {
		data, err := io.ReadAll(io.LimitReader(stdin, MaxStdin+1))
		switch {
		case err != nil:
			cerr = cni.Errorf(cni.CodeIOFailure, "error reading from stdin: %v", err)
		case len(data) > MaxStdin:
			cerr = cni.Errorf(cni.CodeIOFailure, "configuration on stdin is larger than %d bytes", MaxStdin)
		}
		args.StdinData = data
	}
	var out []byte
	if cerr == nil {
		out, cerr = invokeWithLog(ctx, p, args, stderr)
	}
	if cerr != nil {
		if cerr.CNIVersion == "" {
			cerr = withVersion(cerr, args.Version)
		}
		printError(stdout, cerr)
		return 1
	}
	_, _ = stdout.Write(out)
	return 0
}

func withVersion(e *cni.Error, version string) *cni.Error {
	c := *e
	c.CNIVersion = version
	if c.CNIVersion == "" {
		c.CNIVersion = cni.SpecVersion
	}
	return &c
}

func printError(w io.Writer, e *cni.Error) {
	data, _ := json.MarshalIndent(e, "", "    ")
	_, _ = w.Write(append(data, '\n'))
}

// Invoke runs one verb of p in-process: the same checks, codes and output as a
// plugin process, with args.StdinData as stdin. It returns what the plugin would
// print on stdout on success.
func Invoke(ctx context.Context, p *Plugin, args *Args) ([]byte, *cni.Error) {
	return invokeWithLog(ctx, p, args, os.Stderr)
}

// commonConf holds the keys skel itself reads from every configuration.
type commonConf struct {
	CNIVersion string `json:"cniVersion"`
	Name       string `json:"name"`
	// LogFile, when set, receives the plugin's log lines in addition to stderr.
	LogFile  string `json:"logFile"`
	LogLevel string `json:"logLevel"`
}

func invokeWithLog(ctx context.Context, p *Plugin, args *Args, stderr io.Writer) ([]byte, *cni.Error) {
	args.pluginName = p.Name
	if err := checkEnv(&args.Env); err != nil {
		return nil, err
	}
	if args.Command == "VERSION" {
		return versionInfo(p, args.StdinData), nil
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
		verbFn = func() ([]byte, error) {
			if p.Add == nil {
				return nil, cni.Errorf(cni.CodeInvalidEnvironment, "plugin %s does not implement ADD", p.Name)
			}
			res, err := p.Add(ctx, args)
			if err != nil {
				return nil, err
			}
			var buf bytes.Buffer
			if err := res.Print(&buf, args.Version); err != nil {
				return nil, err
			}
			return buf.Bytes(), nil
		}
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
			return nil, cni.Errorf(cni.CodeIncompatibleVersion, "config version %q does not allow CHECK", args.Version)
		}
	case "GC", "STATUS":
		if !cni.SupportsGCAndStatus(args.Version) {
			return nil, cni.Errorf(cni.CodeIncompatibleVersion, "config version %q does not allow %s", args.Version, args.Command)
		}
	case "ADD":
		if err := refuseOwnNetns(args); err != nil {
			return nil, err
		}
	}
	if args.Command == "CHECK" {
		if err := refuseOwnNetns(args); err != nil {
			return nil, err
		}
	}
	out, err := verbFn()
	if err != nil {
		args.Log.Debug("plugin failed", "command", args.Command, "error", err)
		return nil, cni.AsError(err)
	}
	return out, nil
}

func noOutput(ctx context.Context, fn func(context.Context, *Args) error, args *Args) func() ([]byte, error) {
	return func() ([]byte, error) {
		if fn == nil {
			return nil, nil
		}
		return nil, fn(ctx, args)
	}
}

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

// versionInfo answers VERSION. The spec asks for the request's cniVersion to be
// echoed; without a usable one, the newest version is given.
func versionInfo(p *Plugin, stdin []byte) []byte {
	var req struct {
		CNIVersion string `json:"cniVersion"`
	}
	_ = json.Unmarshal(stdin, &req)
	version := cni.SpecVersion
	if req.CNIVersion != "" && cni.Reconcile(req.CNIVersion, p.versions()) == nil {
		version = req.CNIVersion
	}
	data, _ := json.Marshal(cni.PluginInfo{CNIVersion: version, SupportedVersions: p.versions()})
	return append(data, '\n')
}

// refuseOwnNetns stops ADD and CHECK from configuring the plugin's own
// namespace, which is the host's: a runtime that passes it is almost surely
// broken. A namespace path that does not exist passes; the verb reports it.
func refuseOwnNetns(args *Args) *cni.Error {
	if args.NetnsOverride {
		return nil
	}
	target, err := netns.Open(args.Netns)
	if err != nil {
		if errors.Is(err, netns.ErrNotExist) {
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
		return cni.Errorf(cni.CodeInvalidNetNS, "CNI_NETNS %q is the plugin's own network namespace", args.Netns)
	}
	return nil
}

// setupLog gives args a logger writing to stderr, and also to the
// configuration's logFile when it names one.
func setupLog(args *Args, conf *commonConf, stderr io.Writer) func() {
	level := slog.LevelInfo
	if conf.LogLevel != "" {
		_ = level.UnmarshalText([]byte(conf.LogLevel))
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
