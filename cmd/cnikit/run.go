package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/netns"
	cniruntime "github.com/cnikit/cnikit/runtime"
)

// attachOptions are the per-container options of run and attach.
type attachOptions struct {
	networks    []string
	containerID string
	ips         []string
	mac         string
	publish     []string
	capArgs     string
	verbose     bool
}

func (o *attachOptions) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringArrayVarP(&o.networks, "net", "n", []string{defaultNetworkName}, "network to attach to (repeat for several: eth0, eth1, ...)")
	f.StringVar(&o.containerID, "id", "", "container ID (default: generated)")
	f.StringArrayVar(&o.ips, "ip", nil, "request this IP address (ips capability and CNI_ARGS IP); one network only")
	f.StringVar(&o.mac, "mac", "", "request this MAC address for the interface (mac capability)")
	f.StringArrayVarP(&o.publish, "publish", "p", nil, "publish a port: [hostIP:]hostPort:containerPort[/tcp|udp|sctp] (portMappings capability)")
	f.StringVar(&o.capArgs, "cap-args", "", "extra capability arguments as a JSON object")
	f.BoolVarP(&o.verbose, "verbose", "v", false, "print each attachment's addresses on stderr")
}

// prepare checks the container ID and loads the runtime and every network,
// before anything is created.
func (o *attachOptions) prepare(g *globals) (*cniruntime.Runtime, []*cni.ConfigList, error) {
	if err := cni.ValidateContainerID(o.containerID); err != nil {
		return nil, nil, err
	}
	rt, err := g.newRuntime()
	if err != nil {
		return nil, nil, err
	}
	lists := make([]*cni.ConfigList, len(o.networks))
	for i, name := range o.networks {
		if lists[i], err = g.loadNetwork(name); err != nil {
			return nil, nil, err
		}
	}
	return rt, lists, nil
}

// attachments builds one attachment per network for the namespace at path.
func (o *attachOptions) attachments(netnsPath string) ([]*cniruntime.Attachment, error) {
	if len(o.ips) > 0 && len(o.networks) > 1 {
		return nil, fmt.Errorf("--ip applies to a single network; %d were given", len(o.networks))
	}
	caps := map[string]any{}
	if o.capArgs != "" {
		if err := json.Unmarshal([]byte(o.capArgs), &caps); err != nil {
			return nil, cni.Errorf(cni.CodeDecodingFailure, "--cap-args %q is not a JSON object: %v", o.capArgs, err)
		}
	}
	var args [][2]string
	if len(o.ips) > 0 {
		caps["ips"] = o.ips
		args = append(args, [2]string{"IgnoreUnknown", "1"}, [2]string{"IP", strings.Join(o.ips, ",")})
	}
	if o.mac != "" {
		caps["mac"] = o.mac
	}
	if len(o.publish) > 0 {
		mappings, err := parsePublish(o.publish)
		if err != nil {
			return nil, err
		}
		caps["portMappings"] = mappings
	}
	var out []*cniruntime.Attachment
	for i := range o.networks {
		out = append(out, &cniruntime.Attachment{
			ContainerID:    o.containerID,
			Netns:          netnsPath,
			IfName:         fmt.Sprintf("eth%d", i),
			Args:           args,
			CapabilityArgs: caps,
		})
	}
	return out, nil
}

// portMapping is one entry of the portMappings capability.
type portMapping struct {
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol"`
	HostIP        string `json:"hostIP,omitempty"`
}

// parsePublish reads docker-style -p values.
func parsePublish(specs []string) ([]portMapping, error) {
	var out []portMapping
	for _, spec := range specs {
		m := portMapping{Protocol: "tcp"}
		rest := spec
		if i := strings.LastIndex(rest, "/"); i >= 0 {
			m.Protocol = strings.ToLower(rest[i+1:])
			rest = rest[:i]
		}
		if m.Protocol != "tcp" && m.Protocol != "udp" && m.Protocol != "sctp" {
			return nil, fmt.Errorf("port mapping %q: unknown protocol %q", spec, m.Protocol)
		}
		i := strings.LastIndex(rest, ":")
		if i < 0 {
			return nil, fmt.Errorf("port mapping %q: want [hostIP:]hostPort:containerPort", spec)
		}
		cport, hostPart := rest[i+1:], rest[:i]
		if j := strings.LastIndex(hostPart, ":"); j >= 0 {
			m.HostIP = strings.Trim(hostPart[:j], "[]")
			hostPart = hostPart[j+1:]
		}
		var err error
		if m.HostPort, err = parsePort(hostPart); err != nil {
			return nil, fmt.Errorf("port mapping %q: host port: %v", spec, err)
		}
		if m.ContainerPort, err = parsePort(cport); err != nil {
			return nil, fmt.Errorf("port mapping %q: container port: %v", spec, err)
		}
		out = append(out, m)
	}
	return out, nil
}

func parsePort(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("%q is not a port number (1-65535)", s)
	}
	return n, nil
}

func randomID(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

func newRunCommand(g *globals) *cobra.Command {
	var o attachOptions
	cmd := &cobra.Command{
		Use:   "run [flags] -- COMMAND [ARGS...]",
		Short: "run COMMAND in a new network namespace attached to networks, then clean up",
		Long: `run creates a network namespace, attaches it to each --net network (the built-in
"` + defaultNetworkName + `" network by default), runs COMMAND inside it, and when COMMAND
exits (or cnikit gets SIGINT/SIGTERM) detaches every network and removes the
namespace. cnikit exits with COMMAND's exit status.`,
		Example: `  cnikit run -- ip addr
  cnikit run --net cnikit -p 8080:80 -- busybox httpd -f -p 80`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.containerID == "" {
				o.containerID = randomID("cnikit-run-")
			}
			return runInNetwork(cmd.Context(), g, &o, args)
		},
	}
	o.register(cmd)
	cmd.Flags().SetInterspersed(false)
	return cmd
}

func runInNetwork(ctx context.Context, g *globals, o *attachOptions, argv []string) error {
	rt, lists, err := o.prepare(g)
	if err != nil {
		return err
	}
	nsPath, err := createNamedNetns(g.netnsDir, o.containerID)
	if err != nil {
		return err
	}
	defer netns.RemoveAt(nsPath)
	if err := loopbackUp(nsPath); err != nil {
		return err
	}
	atts, err := o.attachments(nsPath)
	if err != nil {
		return err
	}
	detach := attachAll(ctx, g, rt, lists, atts, o.verbose)
	if detach == nil {
		return &exitError{code: 1}
	}
	defer detach()
	code, err := runCommandIn(nsPath, argv, g)
	if err != nil {
		return err
	}
	return exitStatus(code)
}

func exitStatus(code int) error {
	if code == 0 {
		return nil
	}
	return &exitError{code: code}
}

// attachAll adds every attachment in order. It returns the function that
// removes them (in reverse), or nil after reporting an error, having removed
// what it added, including the failed attachment (the spec wants a DEL after a
// failed ADD).
func attachAll(ctx context.Context, g *globals, rt *cniruntime.Runtime, lists []*cni.ConfigList, atts []*cniruntime.Attachment, verbose bool) func() {
	var added []int
	detach := func() {
		for i := len(added) - 1; i >= 0; i-- {
			n := added[i]
			dctx, cancel := context.WithTimeout(context.Background(), g.timeout)
			if err := rt.Del(dctx, lists[n], atts[n]); err != nil {
				g.reportError(fmt.Errorf("detaching %s from %s: %w", atts[n].IfName, lists[n].Name, err))
			}
			cancel()
		}
	}
	for i := range lists {
		actx, cancel := context.WithTimeout(ctx, g.timeout)
		res, err := rt.Add(actx, lists[i], atts[i])
		cancel()
		added = append(added, i)
		if err != nil {
			g.reportError(fmt.Errorf("attaching to network %s: %w", lists[i].Name, err))
			detach()
			return nil
		}
		if verbose {
			printAttachment(g, lists[i].Name, atts[i], res)
		}
	}
	return detach
}

func printAttachment(g *globals, network string, att *cniruntime.Attachment, res *cni.Result) {
	var addrs []string
	for _, ip := range res.IPs {
		addrs = append(addrs, ip.Address.String())
	}
	fmt.Fprintf(g.stderr, "cnikit: %s on network %s: %s\n", att.IfName, network, strings.Join(addrs, ", "))
}

// loopbackUp brings up lo in the namespace, as every runtime does.
func loopbackUp(nsPath string) error {
	return netns.DoPath(nsPath, func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.LinkSetUp(lo)
	})
}

// runCommandIn runs argv inside the namespace with this process's stdio,
// forwarding SIGINT, SIGTERM and SIGHUP, and returns its exit status.
func runCommandIn(nsPath string, argv []string, g *globals) (int, error) {
	bin, err := exec.LookPath(argv[0])
	if err != nil {
		return 0, err
	}
	cmd := exec.Command(bin, argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, g.stdout, g.stderr
	cmd.Env = append(os.Environ(), "CNIKIT_NETNS="+nsPath)
	ns, err := netns.Open(nsPath)
	if err != nil {
		return 0, err
	}
	defer ns.Close()
	// The child is forked from a thread inside the namespace and keeps it.
	startErr := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if err := unix.Setns(ns.Fd(), unix.CLONE_NEWNET); err != nil {
			startErr <- err
			return
		}
		startErr <- cmd.Start()
	}()
	if err := <-startErr; err != nil {
		return 0, fmt.Errorf("starting %s: %w", argv[0], err)
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		select {
		case s := <-sigs:
			_ = cmd.Process.Signal(s)
		case err := <-done:
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
					return 128 + int(ws.Signal()), nil
				}
				return ee.ExitCode(), nil
			}
			return 0, err
		}
	}
}
