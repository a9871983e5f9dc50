package main

import (
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/netns"
	cniruntime "github.com/cnikit/cnikit/runtime"
)

// attachmentFlags are the per-attachment parameters of add, del and check, with
// cnitool's environment variables as defaults.
type attachmentFlags struct {
	ifName      string
	containerID string
	cniArgs     string
	capArgs     string
}

func (a *attachmentFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVarP(&a.ifName, "ifname", "i", envOr("CNI_IFNAME", "eth0"), "interface name inside the namespace ($CNI_IFNAME)")
	f.StringVar(&a.containerID, "container-id", "", `container ID (default: "cnitool-" + a hash of the netns path, as cnitool does)`)
	f.StringVar(&a.cniArgs, "args", os.Getenv("CNI_ARGS"), "CNI_ARGS to pass, K=V;K2=V2 ($CNI_ARGS)")
	f.StringVar(&a.capArgs, "cap-args", os.Getenv("CAP_ARGS"), "capability arguments as a JSON object, e.g. '{\"portMappings\":[...]}' ($CAP_ARGS)")
}

// attachment builds the runtime attachment for the namespace at netnsPath.
func (a *attachmentFlags) attachment(netnsPath string) (*cniruntime.Attachment, error) {
	att := &cniruntime.Attachment{ContainerID: a.containerID, Netns: netnsPath, IfName: a.ifName}
	if att.ContainerID == "" {
		att.ContainerID = cnitoolContainerID(netnsPath)
	}
	if a.cniArgs != "" {
		pairs, err := cni.ParseArgs(a.cniArgs)
		if err != nil {
			return nil, err
		}
		for _, p := range pairs {
			if p[0] == "" || p[1] == "" {
				return nil, cni.Errorf(cni.CodeInvalidEnvironment, "invalid CNI_ARGS pair %q", p[0]+"="+p[1])
			}
		}
		att.Args = pairs
	}
	if a.capArgs != "" {
		if err := json.Unmarshal([]byte(a.capArgs), &att.CapabilityArgs); err != nil {
			return nil, cni.Errorf(cni.CodeDecodingFailure, "capability arguments %q are not a JSON object: %v", a.capArgs, err)
		}
	}
	return att, nil
}

// cnitoolContainerID derives the container ID cnitool uses for a namespace, so
// that an attachment made by one tool can be checked and deleted by the other.
func cnitoolContainerID(netnsPath string) string {
	sum := sha512.Sum512([]byte(netnsPath))
	return "cnitool-" + hex.EncodeToString(sum[:10])
}

// newVerbCommand makes add, del, check, gc and status, which take cnitool's
// arguments: NETWORK NETNS.
func newVerbCommand(g *globals, verb string) *cobra.Command {
	var att attachmentFlags
	var gcAll bool
	short := map[string]string{
		"add":    "attach the namespace NETNS to NETWORK and print the result",
		"del":    "detach the namespace NETNS from NETWORK",
		"check":  "check that the attachment of NETNS to NETWORK is as it should be",
		"gc":     "remove resources of NETWORK's attachments that are no longer in use",
		"status": "ask NETWORK's plugins whether they are ready to serve ADD",
	}[verb]
	use := verb + " NETWORK NETNS"
	args := cobra.ExactArgs(2)
	if verb == "gc" || verb == "status" {
		// cnitool requires both; cnikit takes the namespace as optional.
		use = verb + " NETWORK [NETNS]"
		args = cobra.RangeArgs(1, 2)
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  args,
		RunE: func(cmd *cobra.Command, args []string) error {
			rt, err := g.newRuntime()
			if err != nil {
				return err
			}
			list, err := g.loadNetwork(args[0])
			if err != nil {
				return err
			}
			ctx, cancel := g.context(cmd)
			defer cancel()
			switch verb {
			case "gc":
				valid, err := liveAttachments(rt, list.Name, gcAll)
				if err != nil {
					return err
				}
				return rt.GC(ctx, list, valid)
			case "status":
				if err := rt.Status(ctx, list); err != nil {
					return err
				}
				if g.jsonOut {
					return g.printJSON(map[string]any{"network": list.Name, "ready": true})
				}
				fmt.Fprintf(g.stdout, "network %s is ready\n", list.Name)
				return nil
			}
			netnsPath, err := g.resolveNetns(args[1])
			if err != nil {
				return err
			}
			a, err := att.attachment(netnsPath)
			if err != nil {
				return err
			}
			switch verb {
			case "add":
				res, err := rt.Add(ctx, list, a)
				if err != nil {
					return err
				}
				return res.Print(g.stdout, list.CNIVersion)
			case "del":
				return rt.Del(ctx, list, a)
			default:
				return rt.Check(ctx, list, a)
			}
		},
	}
	if verb != "gc" && verb != "status" {
		att.register(cmd)
	}
	if verb == "gc" {
		cmd.Long = `gc deletes the cached attachments of NETWORK whose network namespace no longer
exists, then asks every plugin of NETWORK to release what belongs to no live
attachment (CNI GC, cniVersion 1.1.0 and later). With --all every cached
attachment of NETWORK counts as stale, as cnitool gc does.`
		cmd.Flags().BoolVar(&gcAll, "all", false, "treat every attachment of NETWORK as stale (cnitool's behaviour)")
	}
	return cmd
}

// liveAttachments lists the cached attachments of network whose namespace still
// exists: what GC must keep. With all set it returns nil, which makes every
// attachment stale.
func liveAttachments(rt *cniruntime.Runtime, network string, all bool) ([]cni.GCAttachment, error) {
	if all {
		return nil, nil
	}
	cached, err := rt.CachedAttachments("")
	if err != nil {
		return nil, err
	}
	valid := []cni.GCAttachment{}
	for _, c := range cached {
		if c.Network != network || !netnsAlive(c.Netns) {
			continue
		}
		valid = append(valid, cni.GCAttachment{ContainerID: c.ContainerID, IfName: c.IfName})
	}
	return valid, nil
}

// netnsAlive reports whether path still names a network namespace.
func netnsAlive(path string) bool {
	if path == "" {
		return false
	}
	ns, err := netns.Open(path)
	if err != nil {
		return false
	}
	ns.Close()
	return true
}
