package invoke

import (
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/cnikit/cnikit/cni"
)

// Find returns the path of the first regular executable file named pluginType
// in dirs. pluginType must be a bare name (cni.ValidatePluginType): a type such
// as "../../bin/sh" never leaves the search path. Non-regular files (directories,
// devices, fifos) and files without an execute bit are skipped, as if absent.
//
// When the caller is root, a candidate that someone other than root could have
// replaced (not owned by root, or writable by group or others) is refused with
// an error rather than skipped: running it would hand root to its owner, and
// silently falling through to a later directory would hide the problem.
func Find(pluginType string, dirs []string) (string, error) {
	if err := cni.ValidatePluginType(pluginType); err != nil {
		return "", err
	}
	if len(dirs) == 0 {
		return "", cni.Errorf(cni.CodeInvalidEnvironment, "failed to find plugin %q: no plugin search path (CNI_PATH) given", pluginType)
	}
	for _, dir := range dirs {
		full := filepath.Join(dir, pluginType)
		st, err := os.Stat(full)
		if err != nil || !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
			continue
		}
		if err := checkOwnership(full, st); err != nil {
			return "", err
		}
		return full, nil
	}
	return "", cni.Errorf(cni.CodeInvalidNetworkConfig, "failed to find plugin %q in path %v", pluginType, dirs)
}

// checkOwnership refuses, for a root runtime, a plugin that someone other than
// root could have replaced: one not owned by root or writable by group or others.
func checkOwnership(path string, st os.FileInfo) error {
	if os.Geteuid() != 0 {
		return nil
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if sys.Uid != 0 || st.Mode().Perm()&0o022 != 0 {
		return cni.Errorf(cni.CodeInvalidNetworkConfig,
			"refusing to execute plugin %q: owned by uid %d with mode %v; it must be owned by root and not writable by group or others",
			path, sys.Uid, st.Mode().Perm())
	}
	return nil
}

var (
	selfOnce sync.Once
	selfInfo os.FileInfo
)

// IsRunningExecutable reports whether path (through any symlink) is the
// executable of the running process. cnikit uses it to run its own plugins
// in-process instead of starting itself again.
func IsRunningExecutable(path string) bool {
	selfOnce.Do(func() {
		selfInfo, _ = os.Stat("/proc/self/exe")
	})
	if selfInfo == nil {
		return false
	}
	st, err := os.Stat(path)
	return err == nil && os.SameFile(st, selfInfo)
}
