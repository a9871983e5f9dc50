package interop

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// A loggedPluginDir is a plugin directory for a real runtime that records
// what the runtime sends: each logged plugin is a small shell script that
// saves its CNI_* environment and stdin, then execs the same plugin of
// cnikit's plugin dir with that stdin; every other plugin is a link to
// cnikit's. A plugin cnikit delegates to (host-local) is found through the
// runtime's CNI_PATH, so it too is logged when it is in the logged list.
type loggedPluginDir struct {
	dir    string
	logDir string
}

// newLoggedPluginDir lays out the directory under parent.
func newLoggedPluginDir(t *testing.T, parent, binDir string, logged ...string) *loggedPluginDir {
	t.Helper()
	p := &loggedPluginDir{dir: filepath.Join(parent, "plugins"), logDir: filepath.Join(parent, "calls")}
	for _, d := range []string{p.dir, p.logDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := os.ReadDir(binDir)
	if err != nil {
		t.Fatal(err)
	}
	isLogged := map[string]bool{}
	for _, name := range logged {
		isLogged[name] = true
	}
	for _, e := range entries {
		name := e.Name()
		path := filepath.Join(p.dir, name)
		if !isLogged[name] {
			if err := os.Symlink(filepath.Join(binDir, name), path); err != nil {
				t.Fatal(err)
			}
			continue
		}
		// The call's file name starts with the time in nanoseconds: calls sort
		// in the order they were made.
		script := fmt.Sprintf(`#!/bin/sh
f=%q/"$(date +%%s%%N)-$$-%s"
env | grep '^CNI_' > "$f.env"
cat > "$f.stdin"
exec %q < "$f.stdin"
`, p.logDir, name, filepath.Join(binDir, name))
		if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range logged {
		if _, err := os.Stat(filepath.Join(p.dir, name)); err != nil {
			t.Fatalf("plugin %s to log is not in %s", name, binDir)
		}
	}
	return p
}

// pluginCall is one recorded plugin execution.
type pluginCall struct {
	plugin string
	env    map[string]string
	stdin  string
}

func (c pluginCall) command() string { return c.env["CNI_COMMAND"] }

func (c pluginCall) String() string {
	return fmt.Sprintf("%s %s netns=%q args=%q", c.command(), c.plugin, c.env["CNI_NETNS"], c.env["CNI_ARGS"])
}

// calls returns the recorded calls in order.
func (p *loggedPluginDir) calls(t *testing.T) []pluginCall {
	t.Helper()
	matches, err := filepath.Glob(filepath.Join(p.logDir, "*.env"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(matches)
	var out []pluginCall
	for _, envPath := range matches {
		base := strings.TrimSuffix(envPath, ".env")
		parts := strings.SplitN(filepath.Base(base), "-", 3)
		if len(parts) != 3 {
			t.Fatalf("unexpected call log file %s", envPath)
		}
		c := pluginCall{plugin: parts[2], env: map[string]string{}}
		env, err := os.ReadFile(envPath)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(env), "\n") {
			if k, v, ok := strings.Cut(line, "="); ok {
				c.env[k] = v
			}
		}
		stdin, err := os.ReadFile(base + ".stdin")
		if err != nil {
			t.Fatal(err)
		}
		c.stdin = string(stdin)
		out = append(out, c)
	}
	return out
}

// reset forgets the calls recorded so far.
func (p *loggedPluginDir) reset(t *testing.T) {
	t.Helper()
	entries, _ := os.ReadDir(p.logDir)
	for _, e := range entries {
		if err := os.Remove(filepath.Join(p.logDir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
}

// describeCalls lists calls one a line, for failure messages.
func describeCalls(calls []pluginCall) string {
	var b strings.Builder
	for _, c := range calls {
		b.WriteString("  " + c.String() + "\n")
	}
	return b.String()
}
