package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/cnikit/cnikit/cni"
	cniruntime "github.com/cnikit/cnikit/runtime"
	"github.com/cnikit/cnikit/skel"
)

// attachmentView is one line of `cnikit ls`.
type attachmentView struct {
	Network     string   `json:"network"`
	ContainerID string   `json:"containerID"`
	IfName      string   `json:"ifname"`
	Netns       string   `json:"netns"`
	IPs         []string `json:"ips"`
	Mac         string   `json:"mac,omitempty"`
	NetnsAlive  bool     `json:"netnsAlive"`
}

func newLsCommand(g *globals) *cobra.Command {
	var containerID, network string
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list", "ps"},
		Short:   "list attachments from the result cache (shared with cnitool, Podman, containerd)",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			rt := cniruntime.New(cniruntime.Config{CacheDir: g.cacheDir})
			cached, err := rt.CachedAttachments(containerID)
			if err != nil {
				return err
			}
			views := []attachmentView{}
			for _, c := range cached {
				if network != "" && c.Network != network {
					continue
				}
				views = append(views, viewOf(c))
			}
			if g.jsonOut {
				return g.printJSON(views)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NETWORK\tCONTAINER\tIFNAME\tIPS\tNETNS")
			for _, v := range views {
				ns := v.Netns
				if !v.NetnsAlive {
					ns += " (gone)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", v.Network, v.ContainerID, v.IfName, strings.Join(v.IPs, ","), ns)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&containerID, "id", "", "only this container")
	cmd.Flags().StringVarP(&network, "net", "n", "", "only this network")
	return cmd
}

func viewOf(c *cniruntime.CachedAttachment) attachmentView {
	v := attachmentView{Network: c.Network, ContainerID: c.ContainerID, IfName: c.IfName, Netns: c.Netns,
		IPs: []string{}, NetnsAlive: netnsAlive(c.Netns)}
	if len(c.Result) == 0 {
		return v
	}
	res, err := cni.ParseResult(c.Result, "")
	if err != nil {
		return v
	}
	for _, ip := range res.IPs {
		v.IPs = append(v.IPs, ip.Address.String())
	}
	for _, i := range res.Interfaces {
		if i.Name == c.IfName && i.Sandbox != "" {
			v.Mac = i.Mac
		}
	}
	return v
}

func newNetworksCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "networks",
		Short: "list the networks of the conf dir (and the built-in default)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			type networkView struct {
				Name       string   `json:"name"`
				CNIVersion string   `json:"cniVersion"`
				Plugins    []string `json:"plugins"`
				Source     string   `json:"source"`
			}
			lists, err := cniruntime.LoadAll(g.confDir)
			if err != nil {
				return err
			}
			views := []networkView{}
			haveDefault := false
			for _, l := range lists {
				haveDefault = haveDefault || l.Name == defaultNetworkName
				views = append(views, networkView{Name: l.Name, CNIVersion: l.CNIVersion, Plugins: pluginTypes(l), Source: g.confDir})
			}
			if !haveDefault {
				l, _ := defaultNetwork(g.cacheDir)
				views = append(views, networkView{Name: l.Name, CNIVersion: l.CNIVersion, Plugins: pluginTypes(l), Source: "built-in"})
			}
			if g.jsonOut {
				return g.printJSON(views)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tVERSION\tPLUGINS\tSOURCE")
			for _, v := range views {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", v.Name, v.CNIVersion, strings.Join(v.Plugins, ","), v.Source)
			}
			return tw.Flush()
		},
	}
}

func pluginTypes(l *cni.ConfigList) []string {
	var out []string
	for _, p := range l.Plugins {
		out = append(out, p.Network.Type)
	}
	return out
}

func newInstallCommand(g *globals) *cobra.Command {
	var binDir, confDir string
	var force bool
	cmd := &cobra.Command{
		Use:   "install --bin-dir DIR [--conf-dir DIR]",
		Short: "install cnikit's plugins (links to one binary) and optionally the default network config",
		Example: `  cnikit install --bin-dir /opt/cni/bin
  cnikit install --bin-dir /opt/cni/bin --conf-dir /etc/cni/net.d`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if binDir == "" {
				return fmt.Errorf("--bin-dir is required")
			}
			installed, err := installPlugins(binDir, force)
			if err != nil {
				return err
			}
			out := map[string]any{"binDir": binDir, "plugins": installed}
			if confDir != "" {
				path, err := installDefaultConf(confDir, g.cacheDir, force)
				if err != nil {
					return err
				}
				out["conf"] = path
			}
			if g.jsonOut {
				return g.printJSON(out)
			}
			fmt.Fprintf(g.stdout, "installed %s/cnikit and %d plugin links: %s\n", binDir, len(installed), strings.Join(installed, " "))
			if p, ok := out["conf"]; ok {
				fmt.Fprintf(g.stdout, "installed network %q in %s\n", defaultNetworkName, p)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&binDir, "bin-dir", "", "plugin directory (CNI_PATH), e.g. /opt/cni/bin")
	cmd.Flags().StringVar(&confDir, "conf-dir", "", "also write the default network's .conflist here")
	cmd.Flags().BoolVar(&force, "force", false, "replace plugins of the same name that are not cnikit's")
	return cmd
}

// installPlugins copies this executable to dir/cnikit (atomically, so a running
// plugin is never overwritten in place) and links every plugin name to it.
func installPlugins(dir string, force bool) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	target := filepath.Join(dir, "cnikit")
	if err := copyFileAtomic(exe, target, 0o755); err != nil {
		return nil, err
	}
	names := skel.Names()
	for _, name := range names {
		path := filepath.Join(dir, name)
		if cur, err := os.Readlink(path); err == nil && cur == "cnikit" {
			continue
		}
		if _, err := os.Lstat(path); err == nil && !force {
			return nil, fmt.Errorf("%s exists and is not a link to cnikit; use --force to replace it", path)
		}
		if err := ensureLink(path, "cnikit"); err != nil {
			return nil, err
		}
	}
	return names, nil
}

func copyFileAtomic(src, dst string, mode os.FileMode) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if same, err := os.ReadFile(dst); err == nil && string(same) == string(data) {
		return nil
	}
	tmp := fmt.Sprintf("%s.tmp%d", dst, os.Getpid())
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	if err := os.Chmod(tmp, mode); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

func installDefaultConf(dir, cacheDir string, force bool) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "10-cnikit.conflist")
	if _, err := os.Stat(path); err == nil && !force {
		return path, nil
	}
	return path, os.WriteFile(path, []byte(defaultNetworkConfFor(cacheDir)), 0o644)
}

func newVersionCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "print cnikit's version, the CNI spec versions it speaks and its plugins",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			info := map[string]any{"version": Version, "specVersion": cni.SpecVersion,
				"supportedVersions": cni.AllVersions, "plugins": skel.Names()}
			if g.jsonOut {
				return g.printJSON(info)
			}
			fmt.Fprintf(g.stdout, "cnikit %s\nCNI spec %s (supports %s)\nplugins: %s\n", Version, cni.SpecVersion,
				strings.Join(cni.AllVersions, ", "), strings.Join(skel.Names(), " "))
			return nil
		},
	}
}
