package invoke

import (
	"path/filepath"
	"strings"
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

// Lookup returns the value of one CNI_* variable of e ("CNI_NETNS", ...) and
// whether name is one of the six.
func (e Env) Lookup(name string) (string, bool) {
	switch name {
	case "CNI_COMMAND":
		return e.Command, true
	case "CNI_CONTAINERID":
		return e.ContainerID, true
	case "CNI_NETNS":
		return e.Netns, true
	case "CNI_IFNAME":
		return e.IfName, true
	case "CNI_ARGS":
		return e.CNIArgs, true
	case "CNI_PATH":
		return e.Path, true
	}
	return "", false
}

// Environ returns base with the six CNI_* variables replaced by e's, as the
// reference runtime builds a plugin's environment. Every other variable,
// CNI_NETNS_OVERRIDE included, passes through.
func (e Env) Environ(base []string) []string {
	out := make([]string, 0, len(base)+6)
	for _, kv := range base {
		name, _, _ := strings.Cut(kv, "=")
		if _, isCNI := e.Lookup(name); isCNI {
			continue
		}
		out = append(out, kv)
	}
	return append(out, e.Vars()...)
}

// Dirs splits a CNI_PATH value into its directories, dropping empty entries.
func Dirs(path string) []string {
	var dirs []string
	for _, d := range filepath.SplitList(path) {
		if d != "" {
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// JoinDirs is the inverse of Dirs: the CNI_PATH value for dirs.
func JoinDirs(dirs []string) string {
	return strings.Join(dirs, string(filepath.ListSeparator))
}
