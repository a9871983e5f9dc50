package runtime

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cnikit/cnikit/skel"

	_ "github.com/cnikit/cnikit/plugins/loopback" // a real plugin, in-process or executed
)

// The tests run plugins as real processes: the test binary itself, reached
// through links named after plugin types in a temporary plugin directory. When
// fakePluginVar is set (TestMain sets it for every child), the binary acts as
// the plugin its link names: a plugin registered with skel when there is one,
// otherwise the fake plugin below.
//
// The fake plugin logs every call (its type, CNI_* variables and stdin) to
// calls.log beside its link, and behaves as <type>.json beside its link says,
// per command (a behavior); without instructions ADD returns prevResult with
// one interface named after the plugin appended (or a fresh result), VERSION
// lists every version, and the other commands succeed silently.
const fakePluginVar = "CNIKIT_FAKE_PLUGIN"

func TestMain(m *testing.M) {
	if os.Getenv(fakePluginVar) != "" {
		name := filepath.Base(os.Args[0])
		if p, ok := skel.Lookup(name); ok {
			skel.Main(p)
		}
		os.Exit(fakePlugin(name, filepath.Dir(os.Args[0])))
	}
	os.Setenv(fakePluginVar, "1")
	os.Exit(m.Run())
}

// behavior is what the fake plugin does for one command.
type behavior struct {
	Result json.RawMessage `json:"result,omitempty"` // printed as is, exit 0
	Error  json.RawMessage `json:"error,omitempty"`  // printed as is, exit 1
	Stdout string          `json:"stdout,omitempty"` // printed as is, with Exit
	Exit   int             `json:"exit,omitempty"`
	// Hold makes the plugin wait, after writing held.<containerID>, until
	// release.<containerID> (or release.all) exists: tests observe what runs
	// meanwhile.
	Hold bool `json:"hold,omitempty"`
}

// call is one logged invocation.
type call struct {
	Event string            `json:"event"` // "start" or "end"
	Type  string            `json:"type"`
	Env   map[string]string `json:"env"`
	Stdin json.RawMessage   `json:"stdin,omitempty"`
	Pid   int               `json:"pid"`
}

func (c call) command() string { return c.Env["CNI_COMMAND"] }

func fakePlugin(typ, dir string) int {
	stdin, _ := io.ReadAll(os.Stdin)
	env := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "CNI_") {
			env[k] = v
		}
	}
	command := env["CNI_COMMAND"]
	logCall := func(event string) {
		c := call{Event: event, Type: typ, Env: env, Pid: os.Getpid()}
		if json.Valid(stdin) {
			c.Stdin = stdin
		}
		line, _ := json.Marshal(c)
		f, err := os.OpenFile(filepath.Join(dir, "calls.log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err == nil {
			f.Write(append(line, '\n'))
			f.Close()
		}
	}
	logCall("start")
	defer logCall("end")

	var script map[string]behavior
	if data, err := os.ReadFile(filepath.Join(dir, typ+".json")); err == nil {
		if err := json.Unmarshal(data, &script); err != nil {
			fmt.Printf(`{"code":100,"msg":"fake plugin: bad script: %v"}`, err)
			return 1
		}
	}
	b, scripted := script[command]
	if b.Hold {
		cid := env["CNI_CONTAINERID"]
		os.WriteFile(filepath.Join(dir, "held."+cid), []byte(fmt.Sprint(os.Getpid())), 0o600)
		deadline := time.Now().Add(time.Minute)
		for {
			if _, err := os.Stat(filepath.Join(dir, "release."+cid)); err == nil {
				break
			}
			if _, err := os.Stat(filepath.Join(dir, "release.all")); err == nil {
				break
			}
			if time.Now().After(deadline) {
				fmt.Print(`{"code":100,"msg":"fake plugin: never released"}`)
				return 1
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	switch {
	case b.Error != nil:
		os.Stdout.Write(b.Error)
		return 1
	case b.Result != nil:
		os.Stdout.Write(b.Result)
		return 0
	case b.Stdout != "" || b.Exit != 0:
		fmt.Print(b.Stdout)
		return b.Exit
	case scripted && !b.Hold:
		return 0
	}
	switch command {
	case "ADD":
		out, err := defaultAddResult(typ, stdin)
		if err != nil {
			fmt.Printf(`{"code":100,"msg":%q}`, err.Error())
			return 1
		}
		os.Stdout.Write(out)
	case "VERSION":
		fmt.Print(`{"cniVersion":"1.1.0","supportedVersions":["0.1.0","0.2.0","0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}`)
	}
	return 0
}

// defaultAddResult is prevResult with an interface named typ appended, or a
// fresh result naming typ, in the request's version.
func defaultAddResult(typ string, stdin []byte) ([]byte, error) {
	var conf struct {
		CNIVersion string         `json:"cniVersion"`
		PrevResult map[string]any `json:"prevResult"`
	}
	if err := json.Unmarshal(stdin, &conf); err != nil {
		return nil, err
	}
	switch conf.CNIVersion {
	case "", "0.1.0", "0.2.0":
		return json.Marshal(map[string]any{"cniVersion": conf.CNIVersion, "ip4": map[string]any{"ip": "10.1.2.3/24"}})
	}
	res := conf.PrevResult
	if res == nil {
		res = map[string]any{"ips": []any{map[string]any{"address": "10.1.2.3/24", "gateway": "10.1.2.1", "interface": 0}}}
	}
	ifaces, _ := res["interfaces"].([]any)
	res["interfaces"] = append(ifaces, map[string]any{"name": typ})
	res["cniVersion"] = conf.CNIVersion
	var buf bytes.Buffer
	err := json.NewEncoder(&buf).Encode(res)
	return buf.Bytes(), err
}
