package invoke

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// fakePluginVar selects, in a re-executed test binary, what the fake plugin
// does instead of running the tests.
const fakePluginVar = "INVOKE_FAKE_PLUGIN"

func TestMain(m *testing.M) {
	if mode := os.Getenv(fakePluginVar); mode != "" {
		os.Exit(fakePlugin(mode))
	}
	os.Exit(m.Run())
}

// fakePlugin behaves like a plugin in one of a few ways, for Exec's tests.
func fakePlugin(mode string) int {
	stdin, _ := io.ReadAll(os.Stdin)
	switch mode {
	case "echo": // stdin back on stdout, a log line on stderr
		fmt.Fprintln(os.Stderr, "echo plugin log line")
		os.Stdout.Write(stdin)
		return 0
	case "env": // the CNI_* environment as a JSON object
		env := map[string]string{}
		for _, kv := range os.Environ() {
			if k, v, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "CNI_") {
				env[k] = v
			}
		}
		json.NewEncoder(os.Stdout).Encode(env)
		return 0
	case "error-stdout":
		fmt.Fprintln(os.Stderr, "some log")
		fmt.Println(`{"cniVersion":"1.0.0","code":7,"msg":"bad config","details":"subnet too small"}`)
		return 1
	case "error-stderr":
		fmt.Fprintln(os.Stderr, `{"code":11,"msg":"busy, try later"}`)
		return 1
	case "text-stderr":
		fmt.Fprintln(os.Stderr, "panic: something broke")
		return 2
	case "garbage-stdout":
		fmt.Println("this is not JSON")
		return 1
	case "silent":
		return 3
	case "hang": // start a grandchild that also hangs, record its pid, wait
		child := exec.Command(os.Args[0])
		child.Env = append(os.Environ(), fakePluginVar+"=sleep")
		if err := child.Start(); err != nil {
			return 9
		}
		os.WriteFile(os.Getenv("INVOKE_PID_FILE"), []byte(fmt.Sprint(child.Process.Pid)), 0o600)
		time.Sleep(time.Hour)
		return 0
	case "sleep":
		time.Sleep(time.Hour)
		return 0
	}
	fmt.Fprintf(os.Stderr, "unknown fake plugin mode %q\n", mode)
	return 100
}
