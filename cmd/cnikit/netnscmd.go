package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/cnikit/cnikit/netns"
)

func newNetnsCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "netns",
		Short: "manage named network namespaces (like ip netns, without ip)",
	}
	cmd.AddCommand(
		&cobra.Command{
			Use:   "add NAME",
			Short: "create the named network namespace NAME",
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				path, err := createNamedNetns(g.netnsDir, args[0])
				if err != nil {
					return err
				}
				if g.jsonOut {
					return g.printJSON(map[string]string{"name": args[0], "path": path})
				}
				fmt.Fprintln(g.stdout, path)
				return nil
			},
		},
		&cobra.Command{
			Use:     "del NAME...",
			Aliases: []string{"delete", "rm"},
			Short:   "remove named network namespaces",
			Args:    cobra.MinimumNArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				for _, name := range args {
					if err := netns.ValidateName(name); err != nil {
						return err
					}
					if err := netns.RemoveAt(filepath.Join(g.netnsDir, name)); err != nil {
						return err
					}
				}
				return nil
			},
		},
		&cobra.Command{
			Use:     "list",
			Aliases: []string{"ls"},
			Short:   "list named network namespaces",
			Args:    cobra.NoArgs,
			RunE: func(cmd *cobra.Command, args []string) error {
				names, err := listNamedNetns(g.netnsDir)
				if err != nil {
					return err
				}
				if g.jsonOut {
					return g.printJSON(names)
				}
				for _, n := range names {
					fmt.Fprintln(g.stdout, n)
				}
				return nil
			},
		},
		&cobra.Command{
			Use:   "exec NAME -- COMMAND [ARGS...]",
			Short: "run COMMAND inside the named network namespace NAME",
			Args:  cobra.MinimumNArgs(2),
			RunE: func(cmd *cobra.Command, args []string) error {
				path, err := g.resolveNetns(args[0])
				if err != nil {
					return err
				}
				return execInNetns(path, args[1:])
			},
		},
	)
	return cmd
}

// createNamedNetns creates dir/name; in the default dir it also makes the
// directory a shared mount, as iproute2 does.
func createNamedNetns(dir, name string) (string, error) {
	if dir == netns.Dir {
		return netns.CreateNamed(name)
	}
	if err := netns.ValidateName(name); err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, name)
	return path, netns.CreateAt(path)
}

func listNamedNetns(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return []string{}, nil
		}
		return nil, err
	}
	names := []string{}
	for _, e := range entries {
		if !e.IsDir() {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// execInNetns replaces this process by argv running inside the namespace at
// path: the calling thread enters the namespace and execve keeps it.
func execInNetns(path string, argv []string) error {
	bin, err := exec.LookPath(argv[0])
	if err != nil {
		return err
	}
	ns, err := netns.Open(path)
	if err != nil {
		return err
	}
	runtime.LockOSThread()
	if err := unix.Setns(ns.Fd(), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("entering %s: %w", path, err)
	}
	return unix.Exec(bin, argv, os.Environ())
}
