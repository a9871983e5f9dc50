// Package plugintest builds the cnikit binary once per test process and lays out
// a plugin directory of links to it, so that tests can execute real plugin
// binaries (and plugins can delegate to a real IPAM binary) through CNI_PATH.
package plugintest

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"

	"github.com/cnikit/cnikit/internal/rundir"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// ReferenceDir is where Debian's containernetworking-plugins installs the
// reference plugins.
const ReferenceDir = "/usr/lib/cni"

// PrebuiltEnv names the environment variable that points at a directory
// holding a cnikit binary built beforehand (e.g. by scripts/guest-test.sh for
// a QEMU guest, where the go tool is unavailable). When it is set, BinDir
// links that binary instead of building one.
const PrebuiltEnv = "CNIKIT_BIN_DIR"

// BinDir returns a directory holding the cnikit binary and one link per plugin
// name (bridge, host-local, ...), built on first use (or linked to the binary
// in $CNIKIT_BIN_DIR). A test process cannot remove it at exit, so each one
// builds into <temp>/cnikit-plugintest/<pid> and removes the directories of
// processes that are gone. It also sets CNIKIT_STATE_DIR, when unset, to a
// directory in there, so that neither the plugins it runs nor the ones a test
// calls in-process write to the machine's /run/cni.
func BinDir(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		root := filepath.Join(os.TempDir(), "cnikit-plugintest")
		if buildErr = os.MkdirAll(root, 0o755); buildErr != nil {
			return
		}
		removeStale(root)
		buildDir = filepath.Join(root, strconv.Itoa(os.Getpid()))
		os.RemoveAll(buildDir)
		if buildErr = os.Mkdir(buildDir, 0o755); buildErr != nil {
			return
		}
		if buildErr = isolateState(buildDir); buildErr != nil {
			return
		}
		bin := filepath.Join(buildDir, "cnikit")
		if dir := os.Getenv(PrebuiltEnv); dir != "" {
			buildErr = linkPrebuilt(dir, bin)
		} else {
			buildErr = build(bin)
		}
		if buildErr != nil {
			return
		}
		names, err := pluginNames(bin)
		if err != nil {
			buildErr = err
			return
		}
		for _, name := range names {
			if err := os.Symlink("cnikit", filepath.Join(buildDir, name)); err != nil {
				buildErr = err
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatalf("building cnikit: %v", buildErr)
	}
	return buildDir
}

// isolateState points the plugins' state (rundir: portmap records, tuning
// backups, firewall records) into the build directory for this process and
// every plugin it starts, unless the caller chose a directory already: a test
// must not write to the machine's /run/cni.
func isolateState(dir string) error {
	if os.Getenv(rundir.Env) != "" {
		return nil
	}
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		return err
	}
	return os.Setenv(rundir.Env, state)
}

// removeStale removes the build directories of test processes that exited.
func removeStale(root string) {
	entries, _ := os.ReadDir(root)
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(filepath.Join(root, e.Name()))
		}
	}
}

// Binary returns the path of the built cnikit binary.
func Binary(t testing.TB) string { return filepath.Join(BinDir(t), "cnikit") }

// RequireReference skips the test when the reference plugins are not installed.
func RequireReference(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(ReferenceDir, "bridge")); err != nil {
		t.Skipf("reference plugins not installed in %s (apt-get install containernetworking-plugins)", ReferenceDir)
	}
}

// build compiles cmd/cnikit into bin.
func build(bin string) error {
	cmd := exec.Command("go", "build", "-o", bin, "github.com/cnikit/cnikit/cmd/cnikit")
	cmd.Dir = moduleRoot()
	// Static, as scripts/build.sh builds it: no dynamic loader at exec.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return &buildError{err: err, out: string(out)}
	}
	return nil
}

// linkPrebuilt makes bin a link to the cnikit binary in dir.
func linkPrebuilt(dir, bin string) error {
	prebuilt, err := filepath.Abs(filepath.Join(dir, "cnikit"))
	if err != nil {
		return err
	}
	st, err := os.Stat(prebuilt)
	if err != nil {
		return fmt.Errorf("%s=%s: %w", PrebuiltEnv, dir, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s=%s: %s is not a regular file", PrebuiltEnv, dir, prebuilt)
	}
	return os.Symlink(prebuilt, bin)
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + e.out }

func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// pluginNames asks the built binary which plugins it provides.
func pluginNames(bin string) ([]string, error) {
	out, err := exec.Command(bin, "version", "--json").Output()
	if err != nil {
		return nil, fmt.Errorf("%s version --json: %w", bin, err)
	}
	var info struct {
		Plugins []string `json:"plugins"`
	}
	if err := json.Unmarshal(out, &info); err != nil || len(info.Plugins) == 0 {
		return nil, fmt.Errorf("%s version --json: no plugin list in %q", bin, out)
	}
	return info.Plugins, nil
}
