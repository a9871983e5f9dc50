package runtime

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cnikit/cnikit/cni"
)

// rig is one test's plugin directory (links to the test binary), cache
// directory and Runtime.
type rig struct {
	t      *testing.T
	bin    string
	cache  string
	stderr syncBuffer
	rt     *Runtime
}

func newRig(t *testing.T, pluginTypes ...string) *rig {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	r := &rig{t: t, bin: filepath.Join(root, "bin"), cache: filepath.Join(root, "cache")}
	if err := os.Mkdir(r.bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, typ := range pluginTypes {
		if err := os.Symlink(self, filepath.Join(r.bin, typ)); err != nil {
			t.Fatal(err)
		}
	}
	r.rt = New(Config{Path: []string{r.bin}, CacheDir: r.cache, Stderr: &r.stderr})
	// A test that fails while a plugin holds must not leave it waiting.
	t.Cleanup(func() { os.WriteFile(filepath.Join(r.bin, "release.all"), nil, 0o600) })
	return r
}

// script sets what plugin typ does for each command.
func (r *rig) script(typ string, byCommand map[string]behavior) {
	r.t.Helper()
	data, err := json.Marshal(byCommand)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(r.bin, typ+".json"), data, 0o600); err != nil {
		r.t.Fatal(err)
	}
}

// calls returns the logged plugin invocations ("start" events), in order.
func (r *rig) calls() []call {
	r.t.Helper()
	var out []call
	for _, c := range r.events() {
		if c.Event == "start" {
			out = append(out, c)
		}
	}
	return out
}

func (r *rig) events() []call {
	r.t.Helper()
	f, err := os.Open(filepath.Join(r.bin, "calls.log"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		r.t.Fatal(err)
	}
	defer f.Close()
	var out []call
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var c call
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			r.t.Fatalf("bad log line %q: %v", sc.Text(), err)
		}
		out = append(out, c)
	}
	return out
}

func (r *rig) resetCalls() { os.Remove(filepath.Join(r.bin, "calls.log")) }

// summary renders calls as "type:COMMAND" strings.
func summary(calls []call) string {
	var parts []string
	for _, c := range calls {
		parts = append(parts, c.Type+":"+c.command())
	}
	return strings.Join(parts, " ")
}

// release lets held plugins of containerID go on.
func (r *rig) release(containerID string) {
	if err := os.WriteFile(filepath.Join(r.bin, "release."+containerID), nil, 0o600); err != nil {
		r.t.Fatal(err)
	}
}

// waitHeld waits until a plugin of containerID is holding.
func (r *rig) waitHeld(containerID string) {
	r.t.Helper()
	r.waitFor("a plugin of "+containerID+" to hold", func() bool {
		_, err := os.Stat(filepath.Join(r.bin, "held."+containerID))
		return err == nil
	})
}

// waitFor polls cond; it fails the test when cond stays false for long (a
// safety net against hangs, not a timing assertion).
func (r *rig) waitFor(what string, cond func() bool) {
	r.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			r.t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// list parses a configuration list.
func parseList(t *testing.T, conf string) *cni.ConfigList {
	t.Helper()
	list, err := cni.ParseConfigList([]byte(conf))
	if err != nil {
		t.Fatalf("parsing %s: %v", conf, err)
	}
	return list
}

// stdinOf decodes a logged request into a map, for key-level assertions.
func stdinOf(t *testing.T, c call) map[string]json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(c.Stdin, &m); err != nil {
		t.Fatalf("stdin of %s %s is not an object: %v", c.Type, c.command(), err)
	}
	return m
}

var bg = context.Background()

// sameJSON reports whether a and b encode the same value.
func sameJSON(a, b []byte) bool {
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}

// syncBuffer is a bytes.Buffer that concurrent plugins may write to.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
