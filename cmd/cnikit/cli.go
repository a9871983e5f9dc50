package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/invoke"
	cniruntime "github.com/cnikit/cnikit/runtime"
)

// Version is set at build time with -ldflags "-X main.Version=...".
var Version = "dev"

// globals are the flags every command shares.
type globals struct {
	confDir   string
	cniPath   string
	cacheDir  string
	netnsDir  string
	jsonOut   bool
	timeout   time.Duration
	inProcess bool
	stdout    io.Writer
	stderr    io.Writer
}

// exitError carries an exit status out of a command without printing anything
// more (the command already reported).
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func runCLI(args []string) int {
	g := &globals{stdout: os.Stdout, stderr: os.Stderr}
	root := newRootCommand(g)
	root.SetArgs(args)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	g.reportError(err)
	return 1
}

func newRootCommand(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "cnikit",
		Short: "cnikit: a fast, complete Container Network Interface runtime and plugin set",
		Long: `cnikit runs CNI networks: it attaches network namespaces and running processes
to networks described by CNI configuration lists, using cnikit's own plugins (this
same binary) or any CNI plugin binaries.

Networks are looked up in the conf dir (--conf-dir, $NETCONFPATH, /etc/cni/net.d);
the network "` + defaultNetworkName + `" is built in and used when no file defines it.
Plugins are looked up in --cni-path ($CNI_PATH); without one, cnikit uses its own
plugins.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       Version,
	}
	root.SetOut(g.stdout)
	root.SetErr(g.stderr)
	pf := root.PersistentFlags()
	pf.StringVar(&g.confDir, "conf-dir", envOr("NETCONFPATH", "/etc/cni/net.d"), "directory of network configuration files ($NETCONFPATH)")
	pf.StringVar(&g.cniPath, "cni-path", os.Getenv("CNI_PATH"), "plugin search path, ':'-separated ($CNI_PATH; default: cnikit's own plugins, then /opt/cni/bin)")
	pf.StringVar(&g.cacheDir, "cache-dir", "/var/lib/cni", "result cache directory (shared with other CNI runtimes)")
	pf.StringVar(&g.netnsDir, "netns-dir", "/run/netns", "where named network namespaces are kept")
	pf.BoolVar(&g.jsonOut, "json", false, "print data and errors as JSON")
	pf.DurationVar(&g.timeout, "timeout", 2*time.Minute, "deadline for each network operation")
	pf.BoolVar(&g.inProcess, "in-process", true, "run cnikit's own plugins inside this process instead of executing them")

	root.AddCommand(
		newVerbCommand(g, "add"), newVerbCommand(g, "del"), newVerbCommand(g, "check"),
		newVerbCommand(g, "gc"), newVerbCommand(g, "status"),
		newNetnsCommand(g), newRunCommand(g), newAttachCommand(g), newDetachCommand(g),
		newLsCommand(g), newInstallCommand(g), newVersionCommand(g), newNetworksCommand(g),
	)
	return root
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

// pluginDirs returns the plugin search path: the user's, or cnikit's own
// plugins followed by /opt/cni/bin.
func (g *globals) pluginDirs() ([]string, error) {
	if g.cniPath != "" {
		return invoke.Dirs(g.cniPath), nil
	}
	own, err := ownPluginDir()
	if err != nil {
		return nil, err
	}
	return []string{own, "/opt/cni/bin"}, nil
}

// newRuntime returns the runtime library configured from the flags.
func (g *globals) newRuntime() (*cniruntime.Runtime, error) {
	dirs, err := g.pluginDirs()
	if err != nil {
		return nil, err
	}
	return cniruntime.New(cniruntime.Config{
		Path:      dirs,
		CacheDir:  g.cacheDir,
		Stderr:    g.stderr,
		InProcess: g.inProcess,
	}), nil
}

// loadNetwork finds the network called name in the conf dir, falling back to
// the built-in default network.
func (g *globals) loadNetwork(name string) (*cni.ConfigList, error) {
	list, err := cniruntime.LoadList(g.confDir, name)
	if err == nil {
		return list, nil
	}
	var notFound *cniruntime.NotFoundError
	var noConfigs *cniruntime.NoConfigsError
	if name == defaultNetworkName && (errors.As(err, &notFound) || errors.As(err, &noConfigs)) {
		return defaultNetwork(g.cacheDir)
	}
	return nil, err
}

func (g *globals) context(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	return context.WithTimeout(cmd.Context(), g.timeout)
}

// reportError prints err for a person (code, message, details) or, with
// --json, as the CNI error object.
func (g *globals) reportError(err error) {
	cerr := cni.AsError(err)
	if g.jsonOut {
		data, _ := json.MarshalIndent(cerr, "", "  ")
		fmt.Fprintln(g.stdout, string(data))
		return
	}
	msg := cerr.Msg
	if cerr.Code != cni.CodeInternal && cerr.Code != cni.CodeUnknown {
		msg = fmt.Sprintf("%s (CNI error code %d: %s)", msg, cerr.Code, codeName(cerr.Code))
	}
	fmt.Fprintf(g.stderr, "cnikit: %s\n", msg)
	if cerr.Details != "" {
		fmt.Fprintf(g.stderr, "  details: %s\n", cerr.Details)
	}
}

func codeName(c cni.Code) string {
	switch c {
	case cni.CodeIncompatibleVersion:
		return "incompatible CNI version"
	case cni.CodeUnsupportedField:
		return "unsupported field in network configuration"
	case cni.CodeUnknownContainer:
		return "container unknown or does not exist"
	case cni.CodeInvalidEnvironment:
		return "invalid environment variables"
	case cni.CodeIOFailure:
		return "I/O failure"
	case cni.CodeDecodingFailure:
		return "failed to decode content"
	case cni.CodeInvalidNetworkConfig:
		return "invalid network configuration"
	case cni.CodeInvalidNetNS:
		return "invalid network namespace"
	case cni.CodeTryAgainLater:
		return "try again later"
	case cni.CodePluginNotAvailable:
		return "plugin not available"
	case cni.CodeLimitedConnectivity:
		return "plugin not available, limited connectivity"
	}
	if c >= 100 {
		return "plugin-specific error"
	}
	return "unknown"
}

// printJSON writes v indented.
func (g *globals) printJSON(v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(g.stdout, string(data))
	return err
}

// resolveNetns turns a NETNS argument into a path: a path as given (made
// absolute), or a bare name of a namespace in the netns dir.
func (g *globals) resolveNetns(arg string) (string, error) {
	if arg == "" {
		return "", fmt.Errorf("empty network namespace argument")
	}
	if !strings.Contains(arg, "/") {
		named := filepath.Join(g.netnsDir, arg)
		if _, err := os.Stat(named); err == nil {
			return named, nil
		}
	}
	return filepath.Abs(arg)
}
