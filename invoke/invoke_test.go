package invoke

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cnikit/cnikit/cni"
)

func testBinary(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return self
}

// fakeEnv is a plugin environment that makes the re-executed test binary act
// as the fake plugin in mode.
func fakeEnv(mode string, extra ...string) []string {
	env := Env{Command: "ADD", ContainerID: "c1", Netns: "/run/netns/x", IfName: "eth0", Path: "/opt/cni/bin"}
	return append(env.Environ(os.Environ()), append([]string{fakePluginVar + "=" + mode}, extra...)...)
}

func TestEnvEnviron(t *testing.T) {
	env := Env{Command: "DEL", ContainerID: "abc", Netns: "/n", IfName: "eth1", CNIArgs: "A=1;B=2", Path: "/a:/b"}
	base := []string{"HOME=/root", "CNI_COMMAND=ADD", "CNI_IFNAME=old", "CNI_NETNS_OVERRIDE=1", "CNI_OTHER=x", "PATH=/usr/bin"}
	got := env.Environ(base)
	want := []string{"HOME=/root", "CNI_NETNS_OVERRIDE=1", "CNI_OTHER=x", "PATH=/usr/bin",
		"CNI_COMMAND=DEL", "CNI_CONTAINERID=abc", "CNI_NETNS=/n", "CNI_IFNAME=eth1", "CNI_ARGS=A=1;B=2", "CNI_PATH=/a:/b"}
	if !slices.Equal(got, want) {
		t.Errorf("Environ:\n got %q\nwant %q", got, want)
	}
	if v, ok := env.Lookup("CNI_ARGS"); !ok || v != "A=1;B=2" {
		t.Errorf("Lookup(CNI_ARGS) = %q, %v", v, ok)
	}
	if _, ok := env.Lookup("CNI_NETNS_OVERRIDE"); ok {
		t.Error("Lookup knows CNI_NETNS_OVERRIDE, which is not one of the six variables")
	}
}

func TestDirs(t *testing.T) {
	tests := []struct {
		name string
		path string
		want []string
	}{
		{"empty", "", nil},
		{"one", "/opt/cni/bin", []string{"/opt/cni/bin"}},
		{"several with empty entries", "/a::/b:", []string{"/a", "/b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Dirs(tt.path)
			if !slices.Equal(got, tt.want) {
				t.Errorf("Dirs(%q) = %q, want %q", tt.path, got, tt.want)
			}
			if tt.want != nil && JoinDirs(got) != strings.Trim(strings.ReplaceAll(tt.path, "::", ":"), ":") {
				t.Errorf("JoinDirs(%q) = %q", got, JoinDirs(got))
			}
		})
	}
}

func writeFile(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // WriteFile's mode is subject to umask
		t.Fatal(err)
	}
}

func TestFind(t *testing.T) {
	root := t.TempDir()
	first, second := filepath.Join(root, "first"), filepath.Join(root, "second")
	writeFile(t, filepath.Join(first, "noexec"), 0o644)
	writeFile(t, filepath.Join(second, "noexec"), 0o755)
	writeFile(t, filepath.Join(first, "both"), 0o755)
	writeFile(t, filepath.Join(second, "both"), 0o755)
	writeFile(t, filepath.Join(second, "target"), 0o755)
	if err := os.Symlink("target", filepath.Join(second, "linked")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(first, "adir"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, "outside"), 0o755)
	dirs := []string{first, second}

	tests := []struct {
		name     string
		typ      string
		dirs     []string
		want     string
		wantCode cni.Code
		wantMsg  string
	}{
		{name: "first directory wins", typ: "both", dirs: dirs, want: filepath.Join(first, "both")},
		{name: "non-executable skipped", typ: "noexec", dirs: dirs, want: filepath.Join(second, "noexec")},
		{name: "symlink to executable", typ: "linked", dirs: dirs, want: filepath.Join(second, "linked")},
		{name: "directory is not a plugin", typ: "adir", dirs: dirs, wantCode: cni.CodeInvalidNetworkConfig, wantMsg: `failed to find plugin "adir"`},
		{name: "missing", typ: "nosuch", dirs: dirs, wantCode: cni.CodeInvalidNetworkConfig, wantMsg: `failed to find plugin "nosuch" in path`},
		{name: "path traversal refused", typ: "../outside", dirs: dirs, wantCode: cni.CodeInvalidNetworkConfig, wantMsg: `invalid plugin type "../outside"`},
		{name: "absolute path refused", typ: filepath.Join(root, "outside"), dirs: dirs, wantCode: cni.CodeInvalidNetworkConfig, wantMsg: "invalid plugin type"},
		{name: "backslash refused", typ: `a\b`, dirs: dirs, wantCode: cni.CodeInvalidNetworkConfig, wantMsg: "invalid plugin type"},
		{name: "empty type", typ: "", dirs: dirs, wantCode: cni.CodeInvalidNetworkConfig, wantMsg: "missing plugin type"},
		{name: "no search path", typ: "both", dirs: nil, wantCode: cni.CodeInvalidEnvironment, wantMsg: "no plugin search path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Find(tt.typ, tt.dirs)
			if tt.wantMsg == "" {
				if err != nil || got != tt.want {
					t.Fatalf("Find(%q) = %q, %v; want %q", tt.typ, got, err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("Find(%q) = %q, want an error", tt.typ, got)
			}
			if cni.CodeOf(err) != tt.wantCode || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("Find(%q) error = code %d %q; want code %d containing %q", tt.typ, cni.CodeOf(err), err, tt.wantCode, tt.wantMsg)
			}
		})
	}
}

func TestFindRefusesReplaceableBinaryAsRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the ownership rule applies to a root runtime")
	}
	dir := t.TempDir()
	tests := []struct {
		name  string
		mode  os.FileMode
		owner int
	}{
		{"world-writable", 0o757, 0},
		{"group-writable", 0o775, 0},
		{"owned by another user", 0o755, 65534},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sub := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-"))
			path := filepath.Join(sub, "plugin")
			writeFile(t, path, tt.mode)
			if err := os.Chown(path, tt.owner, 0); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tt.mode); err != nil { // chown clears nothing for root, but be explicit
				t.Fatal(err)
			}
			_, err := Find("plugin", []string{sub})
			if err == nil || !strings.Contains(err.Error(), "refusing to execute plugin") || cni.CodeOf(err) != cni.CodeInvalidNetworkConfig {
				t.Fatalf("Find = %v, want a refusal with code 7", err)
			}
		})
	}
}

func TestExec(t *testing.T) {
	bin := testBinary(t)
	tests := []struct {
		name       string
		mode       string
		wantOut    string
		wantStderr string
		wantCode   cni.Code
		wantMsg    string
	}{
		{name: "success returns stdout and forwards stderr", mode: "echo", wantOut: `{"cniVersion":"1.0.0"}`, wantStderr: "echo plugin log line\n"},
		{name: "error object on stdout", mode: "error-stdout", wantCode: 7, wantMsg: "bad config; subnet too small", wantStderr: "some log\n"},
		{name: "error object on stderr", mode: "error-stderr", wantCode: 11, wantMsg: "busy, try later"},
		{name: "text on stderr quoted", mode: "text-stderr", wantCode: 0, wantMsg: `failed: "panic: something broke": exit status 2`},
		{name: "unparseable stdout", mode: "garbage-stdout", wantCode: 0, wantMsg: "could not be parsed"},
		{name: "no output at all", mode: "silent", wantCode: 0, wantMsg: "failed with no error message: exit status 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			out, err := Exec(context.Background(), bin, []byte(`{"cniVersion":"1.0.0"}`), fakeEnv(tt.mode), &stderr)
			if tt.wantMsg == "" {
				if err != nil {
					t.Fatalf("Exec: %v", err)
				}
				if string(out) != tt.wantOut {
					t.Errorf("stdout = %q, want %q", out, tt.wantOut)
				}
			} else {
				var cerr *cni.Error
				if !errors.As(err, &cerr) {
					t.Fatalf("Exec error = %v (%T), want a *cni.Error", err, err)
				}
				if cerr.Code != tt.wantCode || !strings.Contains(cerr.Error(), tt.wantMsg) {
					t.Errorf("error = code %d %q; want code %d containing %q", cerr.Code, cerr.Error(), tt.wantCode, tt.wantMsg)
				}
			}
			if tt.wantStderr != "" && stderr.String() != tt.wantStderr {
				t.Errorf("forwarded stderr = %q, want %q", stderr.String(), tt.wantStderr)
			}
		})
	}
}

func TestExecEnvironment(t *testing.T) {
	base := append(os.Environ(), "CNI_IFNAME=stale", fakePluginVar+"=env")
	env := Env{Command: "CHECK", ContainerID: "ctr", Netns: "/run/netns/n", IfName: "net1", CNIArgs: "K=V", Path: "/x:/y"}
	out, err := Exec(context.Background(), testBinary(t), nil, env.Environ(base), nil)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]string
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"CNI_COMMAND": "CHECK", "CNI_CONTAINERID": "ctr", "CNI_NETNS": "/run/netns/n",
		"CNI_IFNAME": "net1", "CNI_ARGS": "K=V", "CNI_PATH": "/x:/y"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("plugin saw %s=%q, want %q", k, got[k], v)
		}
	}
}

func TestExecDeadlineKillsPluginAndItsChildren(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := Exec(ctx, testBinary(t), nil, fakeEnv("hang", "INVOKE_PID_FILE="+pidFile), nil)
		done <- err
	}()
	// Cancel once the plugin has started its own child.
	grandchild := waitForPID(t, pidFile)
	cancel()
	err := <-done
	if cni.CodeOf(err) != cni.CodeTryAgainLater || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("Exec after cancel = %v, want code 11 naming the kill", err)
	}
	waitGone(t, grandchild)
}

func waitForPID(t *testing.T, path string) int {
	t.Helper()
	for range 1000 {
		if data, err := os.ReadFile(path); err == nil && len(data) > 0 {
			pid, err := strconv.Atoi(string(data))
			if err != nil {
				t.Fatal(err)
			}
			return pid
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the fake plugin never started its child")
	return 0
}

// waitGone waits until pid has exited (it may linger as a zombie until its new
// parent reaps it, which counts as gone).
func waitGone(t *testing.T, pid int) {
	t.Helper()
	for range 1000 {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return
		}
		if fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:])); len(fields) > 0 && fields[0] == "Z" {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	t.Fatalf("process %d, started by the cancelled plugin, is still running", pid)
}

func TestExecRetriesTextFileBusy(t *testing.T) {
	// A binary still open for writing cannot be executed (ETXTBSY): the state a
	// plugin is in while an installer replaces it.
	src, err := os.ReadFile(testBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "plugin")
	w, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(src); err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	var retries []int
	onTextBusy = func(attempt int) {
		retries = append(retries, attempt)
		w.Close() // the "installer" finishes
	}
	defer func() { onTextBusy = nil }()

	out, err := Exec(context.Background(), path, []byte(`{"ok":true}`), fakeEnv("echo"), nil)
	if len(retries) == 0 {
		if err == nil {
			t.Skip("this kernel executes files that are open for writing; ETXTBSY cannot be provoked")
		}
		t.Fatalf("Exec = %v without retrying", err)
	}
	if err != nil || string(out) != `{"ok":true}` {
		t.Fatalf("Exec after %d retries = %q, %v", len(retries), out, err)
	}
}

func TestExecMissingBinary(t *testing.T) {
	_, err := Exec(context.Background(), filepath.Join(t.TempDir(), "gone"), nil, nil, nil)
	if cni.CodeOf(err) != cni.CodeIOFailure || !strings.Contains(err.Error(), "executing plugin") {
		t.Fatalf("Exec of a missing file = %v, want code 5", err)
	}
}

func TestIsRunningExecutable(t *testing.T) {
	self := testBinary(t)
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(self, link); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "other")
	writeFile(t, other, 0o755)
	for path, want := range map[string]bool{self: true, link: true, other: false, "/nonexistent": false} {
		if got := IsRunningExecutable(path); got != want {
			t.Errorf("IsRunningExecutable(%q) = %v, want %v", path, got, want)
		}
	}
}
