package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/netns"
	cniruntime "github.com/cnikit/cnikit/runtime"
)

// The way Kubernetes networks a container: the runtime starts it with no network
// (docker run --network none), then runs the CNI plugins on its namespace.
// attach does that for a process given by PID. The process's namespace is
// pinned with a bind mount in the netns dir, named after the container ID, so
// that detach reaches the same namespace even after the process is gone (or
// its PID is reused), and plugins never act on a stranger's namespace.

func newAttachCommand(g *globals) *cobra.Command {
	var o attachOptions
	var pid int
	cmd := &cobra.Command{
		Use:   "attach --pid PID [--net NETWORK]...",
		Short: "attach a running process's network namespace to networks (docker run --network none, then this)",
		Example: `  docker run -d --network none --name web busybox httpd -f
  cnikit attach --pid "$(docker inspect -f '{{.State.Pid}}' web)"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if pid <= 0 {
				return fmt.Errorf("--pid is required")
			}
			procNetns := fmt.Sprintf("/proc/%d/ns/net", pid)
			if o.containerID == "" {
				id, err := pidContainerID(pid)
				if err != nil {
					return err
				}
				o.containerID = id
			}
			return attachNetns(cmd.Context(), g, &o, procNetns)
		},
	}
	o.register(cmd)
	cmd.Flags().IntVar(&pid, "pid", 0, "process whose network namespace to attach")
	return cmd
}

// pidContainerID names the attachment of a process's namespace after the PID and
// the namespace's inode, so that the same process always maps to the same ID.
func pidContainerID(pid int) (string, error) {
	var st unix.Stat_t
	path := fmt.Sprintf("/proc/%d/ns/net", pid)
	if err := unix.Stat(path, &st); err != nil {
		return "", cni.Errorf(cni.CodeUnknownContainer, "process %d: %v", pid, err)
	}
	return fmt.Sprintf("cnikit-pid%d-%x", pid, st.Ino), nil
}

func attachNetns(ctx context.Context, g *globals, o *attachOptions, sourceNetns string) error {
	rt, lists, err := o.prepare(g)
	if err != nil {
		return err
	}
	pinned, err := pinNetns(g.netnsDir, o.containerID, sourceNetns)
	if err != nil {
		return err
	}
	atts, err := o.attachments(pinned)
	if err != nil {
		netns.RemoveAt(pinned)
		return err
	}
	if attachAll(ctx, g, rt, lists, atts, o.verbose) == nil {
		netns.RemoveAt(pinned)
		return &exitError{code: 1}
	}
	if g.jsonOut {
		return g.printJSON(map[string]any{"containerID": o.containerID, "netns": pinned, "networks": o.networks})
	}
	fmt.Fprintf(g.stdout, "%s\n", o.containerID)
	return nil
}

// pinNetns bind-mounts the namespace at source on dir/id.
func pinNetns(dir, id, source string) (string, error) {
	ns, err := netns.Open(source)
	if err != nil {
		return "", cni.Errorf(cni.CodeUnknownContainer, "%v", err)
	}
	ns.Close()
	if dir == netns.Dir {
		// Make /run/netns shared first, as for named namespaces.
		if _, err := os.Stat(dir); err != nil {
			if _, err := netns.CreateNamed(id); err == nil {
				netns.RemoveNamed(id)
			}
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, id)
	if _, err := os.Stat(path); err == nil {
		return "", fmt.Errorf("%s already exists: container %s is attached already (cnikit detach --id %s)", path, id, id)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
	if err != nil {
		return "", err
	}
	f.Close()
	if err := unix.Mount(source, path, "none", unix.MS_BIND, ""); err != nil {
		os.Remove(path)
		return "", fmt.Errorf("pinning %s on %s: %w", source, path, err)
	}
	return path, nil
}

func newDetachCommand(g *globals) *cobra.Command {
	var pid int
	var id string
	var networks []string
	cmd := &cobra.Command{
		Use:   "detach (--pid PID | --id CONTAINER-ID) [--net NETWORK]...",
		Short: "detach a container attached with attach (or run) from its networks",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if (pid > 0) == (id != "") {
				return fmt.Errorf("give exactly one of --pid and --id")
			}
			fallbackNetns := ""
			if pid > 0 {
				var err error
				if id, err = pidContainerID(pid); err != nil {
					return fmt.Errorf("%w (when the process is gone, use --id with the ID from cnikit ls)", err)
				}
				// The ID names the namespace's inode: this path is the same namespace.
				fallbackNetns = fmt.Sprintf("/proc/%d/ns/net", pid)
			}
			return detachContainer(cmd.Context(), g, id, networks, fallbackNetns)
		},
	}
	cmd.Flags().IntVar(&pid, "pid", 0, "process given to attach --pid")
	cmd.Flags().StringVar(&id, "id", "", "container ID printed by attach or shown by ls")
	cmd.Flags().StringArrayVarP(&networks, "net", "n", nil, "detach only from these networks (default: all)")
	return cmd
}

// detachContainer deletes every cached attachment of the container (or those on
// the given networks) and unpins its namespace when nothing is left. When the
// pinned namespace is gone (someone unmounted it) but the process lives,
// fallbackNetns reaches the same namespace.
func detachContainer(ctx context.Context, g *globals, id string, networks []string, fallbackNetns string) error {
	if err := cni.ValidateContainerID(id); err != nil {
		return err
	}
	rt, err := g.newRuntime()
	if err != nil {
		return err
	}
	cached, err := rt.CachedAttachments(id)
	if err != nil {
		return err
	}
	want := map[string]bool{}
	for _, n := range networks {
		want[n] = true
	}
	var errs []error
	remaining := 0
	for i := len(cached) - 1; i >= 0; i-- {
		c := cached[i]
		if len(want) > 0 && !want[c.Network] {
			remaining++
			continue
		}
		list, err := cachedList(g, c)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		att := &cniruntime.Attachment{ContainerID: c.ContainerID, Netns: c.Netns, IfName: c.IfName,
			Args: c.Args, CapabilityArgs: c.CapabilityArgs}
		if !netnsAlive(att.Netns) {
			att.Netns = "" // gone: plugins clean up what they can without it
			if netnsAlive(fallbackNetns) {
				att.Netns = fallbackNetns
			}
		}
		dctx, cancel := context.WithTimeout(ctx, g.timeout)
		if err := rt.Del(dctx, list, att); err != nil {
			errs = append(errs, fmt.Errorf("detaching %s from %s: %w", c.IfName, c.Network, err))
			remaining++
		}
		cancel()
	}
	if len(cached) == 0 && len(want) == 0 {
		errs = append(errs, cni.Errorf(cni.CodeUnknownContainer, "container %q has no attachments", id))
	}
	if remaining == 0 {
		pinned := filepath.Join(g.netnsDir, id)
		if err := netns.RemoveAt(pinned); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// cachedList returns the network configuration an attachment was added with:
// the copy in the cache, so that detach works even after the conf file changed
// or went away; the conf dir's version otherwise.
func cachedList(g *globals, c *cniruntime.CachedAttachment) (*cni.ConfigList, error) {
	if len(c.Config) > 0 {
		if list, err := cni.ParseConfigList(c.Config); err == nil && len(list.Plugins) > 0 {
			return list, nil
		}
	}
	return g.loadNetwork(c.Network)
}
