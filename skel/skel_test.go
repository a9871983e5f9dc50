package skel

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/cnikit/cnikit/cni"
)

// recorder is a plugin whose verbs record how they were called and return
// what the test set.
type recorder struct {
	calls  []string
	args   *Args
	result *cni.Result
	err    error
}

func (r *recorder) plugin() *Plugin {
	return &Plugin{
		Name: "skeltest",
		Add: func(ctx context.Context, args *Args) (*cni.Result, error) {
			r.calls, r.args = append(r.calls, "ADD"), args
			return r.result, r.err
		},
		Del:    r.verb("DEL"),
		Check:  r.verb("CHECK"),
		Status: r.verb("STATUS"),
		GC:     r.verb("GC"),
	}
}

func (r *recorder) verb(name string) func(context.Context, *Args) error {
	return func(ctx context.Context, args *Args) error {
		r.calls, r.args = append(r.calls, name), args
		return r.err
	}
}

// outcome is what a plugin process shows to its caller.
type outcome struct {
	status         int
	stdout, stderr string
}

// errObj decodes the error object on stdout, failing the test if there is none.
func (o outcome) errObj(t *testing.T) *cni.Error {
	t.Helper()
	if o.status == 0 {
		t.Fatalf("exit status 0, want a failure; stdout %q", o.stdout)
	}
	var e cni.Error
	if err := json.Unmarshal([]byte(o.stdout), &e); err != nil {
		t.Fatalf("stdout is not an error object: %v\n%s", err, o.stdout)
	}
	return &e
}

// fullEnv is a complete environment for verb, with a namespace path that does
// not exist (which passes the own-namespace check).
func fullEnv(verb string) map[string]string {
	return map[string]string{
		"CNI_COMMAND": verb, "CNI_CONTAINERID": "ctr1", "CNI_NETNS": "/nonexistent/netns/x",
		"CNI_IFNAME": "eth0", "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAME=web", "CNI_PATH": "/opt/cni/bin",
	}
}

func conf(version string) string {
	return `{"cniVersion":"` + version + `","name":"testnet","type":"skeltest"}`
}

func run(p *Plugin, env map[string]string, stdin io.Reader) outcome {
	var stdout, stderr bytes.Buffer
	status := Run(context.Background(), p, func(k string) string { return env[k] }, stdin, &stdout, &stderr)
	return outcome{status, stdout.String(), stderr.String()}
}

func runString(p *Plugin, env map[string]string, stdin string) outcome {
	return run(p, env, strings.NewReader(stdin))
}

// failingReader fails every read, standing in for a broken stdin.
type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("stdin exploded") }

func TestMissingEnvironment(t *testing.T) {
	tests := []struct {
		verb    string
		set     []string // variables present besides CNI_COMMAND
		missing string   // "" when nothing is missing
	}{
		{"ADD", nil, "[CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME]"},
		{"ADD", []string{"CNI_NETNS"}, "[CNI_CONTAINERID,CNI_IFNAME]"},
		{"ADD", []string{"CNI_CONTAINERID", "CNI_NETNS"}, "[CNI_IFNAME]"},
		{"CHECK", nil, "[CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME]"},
		{"CHECK", []string{"CNI_IFNAME", "CNI_PATH"}, "[CNI_CONTAINERID,CNI_NETNS]"},
		{"DEL", nil, "[CNI_CONTAINERID,CNI_IFNAME]"},
		{"DEL", []string{"CNI_CONTAINERID"}, "[CNI_IFNAME]"},
		{"GC", nil, "[CNI_PATH]"},
		{"STATUS", nil, ""},
		{"VERSION", nil, ""},
		{"NOSUCHVERB", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.verb+" with "+strings.Join(tt.set, ","), func(t *testing.T) {
			env := map[string]string{"CNI_COMMAND": tt.verb}
			for _, k := range tt.set {
				env[k] = fullEnv(tt.verb)[k]
			}
			rec := &recorder{}
			out := runString(rec.plugin(), env, conf("1.1.0"))
			if tt.missing == "" {
				if strings.Contains(out.stdout, "missing") {
					t.Errorf("reported missing variables: %s", out.stdout)
				}
				return
			}
			e := out.errObj(t)
			want := "required env variables " + tt.missing + " missing"
			if e.Code != cni.CodeInvalidEnvironment || e.Msg != want {
				t.Errorf("got code %d %q, want code 4 %q", e.Code, e.Msg, want)
			}
			if len(rec.calls) != 0 {
				t.Errorf("plugin called: %v", rec.calls)
			}
		})
	}
}

func TestEnvironmentValidation(t *testing.T) {
	tests := []struct {
		name    string
		verb    string
		key     string
		value   string
		code    cni.Code
		wantMsg string
	}{
		{"bad container ID on ADD", "ADD", "CNI_CONTAINERID", "../evil", cni.CodeInvalidEnvironment, `invalid characters in containerID "../evil"`},
		{"bad container ID on DEL", "DEL", "CNI_CONTAINERID", "a b", cni.CodeInvalidEnvironment, `"a b"`},
		{"ifname too long", "ADD", "CNI_IFNAME", "abcdefghijklmnop", cni.CodeInvalidEnvironment, "too long"},
		{"ifname with slash", "CHECK", "CNI_IFNAME", "a/b", cni.CodeInvalidEnvironment, `"a/b" contains '/'`},
		{"ifname dot dot", "DEL", "CNI_IFNAME", "..", cni.CodeInvalidEnvironment, "is . or .."},
		{"ifname with colon", "ADD", "CNI_IFNAME", "eth0:1", cni.CodeInvalidEnvironment, `contains ':'`},
		{"ifname with space", "ADD", "CNI_IFNAME", "eth 0", cni.CodeInvalidEnvironment, `contains ' '`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := fullEnv(tt.verb)
			env[tt.key] = tt.value
			rec := &recorder{}
			e := runString(rec.plugin(), env, conf("1.1.0")).errObj(t)
			if e.Code != tt.code || !strings.Contains(e.Msg, tt.wantMsg) {
				t.Errorf("got code %d %q, want code %d containing %q", e.Code, e.Msg, tt.code, tt.wantMsg)
			}
			if len(rec.calls) != 0 {
				t.Errorf("plugin called: %v", rec.calls)
			}
		})
	}
	t.Run("not validated when not required", func(t *testing.T) {
		// STATUS needs neither; garbage in them is ignored, as in the reference.
		env := map[string]string{"CNI_COMMAND": "STATUS", "CNI_CONTAINERID": "../x", "CNI_IFNAME": "a/b"}
		rec := &recorder{}
		if out := runString(rec.plugin(), env, conf("1.1.0")); out.status != 0 {
			t.Errorf("STATUS failed: %s", out.stdout)
		}
	})
}

func TestVersionCommand(t *testing.T) {
	tests := []struct {
		name     string
		versions []string
		stdin    io.Reader
	}{
		{"all versions", nil, strings.NewReader(`{"cniVersion":"0.4.0"}`)},
		{"restricted versions", []string{"0.4.0", "1.0.0", "1.1.0"}, strings.NewReader("")},
		{"stdin is not read", nil, failingReader{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &Plugin{Name: "v", Versions: tt.versions}
			out := run(p, map[string]string{"CNI_COMMAND": "VERSION"}, tt.stdin)
			if out.status != 0 {
				t.Fatalf("status %d: %s", out.status, out.stdout)
			}
			want := tt.versions
			if want == nil {
				want = cni.AllVersions
			}
			info, err := cni.ParsePluginInfo([]byte(out.stdout))
			if err != nil {
				t.Fatal(err)
			}
			if info.CNIVersion != "1.1.0" || !reflect.DeepEqual(info.SupportedVersions, want) {
				t.Errorf("got %+v", info)
			}
		})
	}
}

func TestAboutWithoutCommand(t *testing.T) {
	tests := []struct {
		name, about string
		versions    []string
		want        string
	}{
		{"own text", "cnikit bridge plugin", nil,
			"cnikit bridge plugin\nCNI protocol versions supported: 0.1.0, 0.2.0, 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0\n"},
		{"default text", "", []string{"1.0.0", "1.1.0"},
			"CNI skeltest plugin\nCNI protocol versions supported: 1.0.0, 1.1.0\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			p := rec.plugin()
			p.About, p.Versions = tt.about, tt.versions
			env := fullEnv("")
			out := run(p, env, failingReader{})
			if out.status != 0 || out.stdout != "" || out.stderr != tt.want {
				t.Errorf("status %d, stdout %q, stderr %q; want 0, nothing, %q", out.status, out.stdout, out.stderr, tt.want)
			}
			if len(rec.calls) != 0 {
				t.Errorf("plugin called: %v", rec.calls)
			}
		})
	}
}

func TestConfigurationChecks(t *testing.T) {
	tests := []struct {
		name    string
		verb    string
		stdin   string
		code    cni.Code
		wantMsg string
	}{
		{"stdin not JSON", "ADD", `{"cniVersion":`, cni.CodeDecodingFailure, "error unmarshalling network configuration"},
		{"stdin empty", "DEL", ``, cni.CodeDecodingFailure, "error unmarshalling network configuration"},
		{"stdin an array", "CHECK", `[]`, cni.CodeDecodingFailure, "error unmarshalling"},
		{"name of the wrong type", "ADD", `{"cniVersion":"1.0.0","name":1}`, cni.CodeDecodingFailure, "name"},
		{"missing name", "ADD", `{"cniVersion":"1.0.0"}`, cni.CodeInvalidNetworkConfig, "missing network name"},
		{"empty name", "GC", `{"cniVersion":"1.1.0","name":""}`, cni.CodeInvalidNetworkConfig, "missing network name"},
		{"bad name", "DEL", `{"cniVersion":"1.0.0","name":"a/b"}`, cni.CodeInvalidNetworkConfig, `invalid characters found in network name "a/b"`},
		{"unknown verb", "FROB", conf("1.0.0"), cni.CodeInvalidEnvironment, "unknown CNI_COMMAND: FROB"},
		{"lower-case verb is unknown", "add", conf("1.0.0"), cni.CodeInvalidEnvironment, "unknown CNI_COMMAND: add"},
		{"unknown verb with empty stdin", "FROB", ``, cni.CodeDecodingFailure, "error unmarshalling"},
		{"unknown verb without name", "FROB", `{}`, cni.CodeInvalidNetworkConfig, "missing network name"},
		{"unknown verb with bad version", "FROB", conf("x"), cni.CodeInvalidEnvironment, "unknown CNI_COMMAND"},
		{"unparseable cniVersion", "ADD", conf("one.two"), cni.CodeDecodingFailure, `"one.two"`},
		{"cniVersion not a string", "ADD", `{"cniVersion":1.0,"name":"n"}`, cni.CodeDecodingFailure, "cniVersion"},
		{"bad name before bad version", "ADD", `{"cniVersion":"x","name":"a b"}`, cni.CodeInvalidNetworkConfig, "network name"},
		{"CHECK below 0.4.0", "CHECK", conf("0.3.1"), cni.CodeIncompatibleVersion, `"0.3.1" does not allow CHECK`},
		{"CHECK with no version (0.1.0)", "CHECK", `{"name":"n"}`, cni.CodeIncompatibleVersion, `"0.1.0" does not allow CHECK`},
		{"GC below 1.1.0", "GC", conf("1.0.0"), cni.CodeIncompatibleVersion, `"1.0.0" does not allow GC`},
		{"STATUS below 1.1.0", "STATUS", conf("0.4.0"), cni.CodeIncompatibleVersion, `"0.4.0" does not allow STATUS`},
		{"logFile of the wrong type", "ADD", `{"cniVersion":"1.0.0","name":"n","logFile":7}`, cni.CodeDecodingFailure, "logFile"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{result: &cni.Result{}}
			e := runString(rec.plugin(), fullEnv(tt.verb), tt.stdin).errObj(t)
			if e.Code != tt.code || !strings.Contains(e.Error(), tt.wantMsg) {
				t.Errorf("got code %d %q, want code %d containing %q", e.Code, e.Error(), tt.code, tt.wantMsg)
			}
			if len(rec.calls) != 0 {
				t.Errorf("plugin called: %v", rec.calls)
			}
		})
	}
}

func TestUnsupportedVersion(t *testing.T) {
	rec := &recorder{}
	p := rec.plugin()
	p.Versions = []string{"0.4.0", "1.0.0"}
	for _, v := range []string{"1.1.0", "0.3.1", "1.0", "2.0.0"} {
		e := runString(p, fullEnv("ADD"), conf(v)).errObj(t)
		wantDetails := fmt.Sprintf(`config is %q, plugin supports ["0.4.0" "1.0.0"]`, v)
		if e.Code != cni.CodeIncompatibleVersion || e.Msg != "incompatible CNI versions" || e.Details != wantDetails {
			t.Errorf("%s: got %+v, want code 1 with details %q", v, e, wantDetails)
		}
	}
	if len(rec.calls) != 0 {
		t.Errorf("plugin called: %v", rec.calls)
	}
}

func TestStdin(t *testing.T) {
	t.Run("read error is code 5", func(t *testing.T) {
		rec := &recorder{}
		e := run(rec.plugin(), fullEnv("ADD"), failingReader{}).errObj(t)
		if e.Code != cni.CodeIOFailure || !strings.Contains(e.Msg, "stdin exploded") {
			t.Errorf("got %+v", e)
		}
	})
	t.Run("larger than MaxStdin is code 7", func(t *testing.T) {
		rec := &recorder{}
		big := `{"cniVersion":"1.0.0","name":"n","pad":"` + strings.Repeat("x", MaxStdin) + `"}`
		e := runString(rec.plugin(), fullEnv("ADD"), big).errObj(t)
		if e.Code != cni.CodeInvalidNetworkConfig || !strings.Contains(e.Msg, fmt.Sprint(MaxStdin)) {
			t.Errorf("got %+v", e)
		}
		if len(rec.calls) != 0 {
			t.Errorf("plugin called: %v", rec.calls)
		}
	})
	t.Run("exactly MaxStdin is accepted", func(t *testing.T) {
		rec := &recorder{}
		head := `{"cniVersion":"1.0.0","name":"n","pad":"`
		stdin := head + strings.Repeat("x", MaxStdin-len(head)-2) + `"}`
		if out := runString(rec.plugin(), fullEnv("DEL"), stdin); out.status != 0 {
			t.Errorf("status %d: %s", out.status, out.stdout)
		}
	})
	t.Run("environment is checked before stdin is read", func(t *testing.T) {
		rec := &recorder{}
		e := run(rec.plugin(), map[string]string{"CNI_COMMAND": "ADD"}, failingReader{}).errObj(t)
		if e.Code != cni.CodeInvalidEnvironment {
			t.Errorf("got %+v, want the environment error", e)
		}
	})
}

func TestArgsReachThePlugin(t *testing.T) {
	rec := &recorder{}
	stdin := `{"cniVersion":"0.4.0","name":"testnet","type":"skeltest","extra":{"k":1}}`
	env := fullEnv("DEL")
	if out := runString(rec.plugin(), env, stdin); out.status != 0 {
		t.Fatalf("status %d: %s", out.status, out.stdout)
	}
	a := rec.args
	if a.Command != "DEL" || a.ContainerID != "ctr1" || a.Netns != env["CNI_NETNS"] || a.IfName != "eth0" ||
		a.CNIArgs != env["CNI_ARGS"] || a.Path != "/opt/cni/bin" || string(a.StdinData) != stdin ||
		a.Version != "0.4.0" || a.NetnsOverride || a.Log == nil {
		t.Errorf("args = %+v", a)
	}
	for _, v := range []string{"1", "true", "TRUE", "True"} {
		env["CNI_NETNS_OVERRIDE"] = v
		runString(rec.plugin(), env, stdin)
		if !rec.args.NetnsOverride {
			t.Errorf("CNI_NETNS_OVERRIDE=%s not seen", v)
		}
	}
	for _, v := range []string{"0", "yes", "false"} {
		env["CNI_NETNS_OVERRIDE"] = v
		runString(rec.plugin(), env, stdin)
		if rec.args.NetnsOverride {
			t.Errorf("CNI_NETNS_OVERRIDE=%s taken as true", v)
		}
	}
}

func TestEmptyVersionMeans010(t *testing.T) {
	rec := &recorder{result: &cni.Result{IPs: []*cni.IPConfig{{Address: mustCIDR("10.0.0.2/24")}}}}
	out := runString(rec.plugin(), fullEnv("ADD"), `{"name":"n"}`)
	if out.status != 0 {
		t.Fatalf("status %d: %s", out.status, out.stdout)
	}
	if rec.args.Version != "0.1.0" || !strings.Contains(out.stdout, `"cniVersion": "0.1.0"`) || !strings.Contains(out.stdout, `"ip4"`) {
		t.Errorf("version %q, output:\n%s", rec.args.Version, out.stdout)
	}
}

func TestResultPrintedInRequestVersion(t *testing.T) {
	result := &cni.Result{
		CNIVersion: "1.1.0", // ignored: the request's version decides
		Interfaces: []*cni.Interface{{Name: "eth0", Mac: "0a:58:0a:00:00:02", MTU: 1400, Sandbox: "/run/netns/x"}},
		IPs:        []*cni.IPConfig{{Interface: cni.IntPtr(0), Address: mustCIDR("10.0.0.2/24"), Gateway: mustCIDR("10.0.0.1/32").IP}},
		Routes:     []*cni.Route{{Dst: mustCIDR("0.0.0.0/0")}},
	}
	for _, v := range cni.AllVersions {
		t.Run(v, func(t *testing.T) {
			rec := &recorder{result: result}
			out := runString(rec.plugin(), fullEnv("ADD"), conf(v))
			if out.status != 0 {
				t.Fatalf("status %d: %s", out.status, out.stdout)
			}
			want := &bytes.Buffer{}
			if err := result.Print(want, v); err != nil {
				t.Fatal(err)
			}
			if out.stdout != want.String() {
				t.Errorf("stdout:\n%s\nwant:\n%s", out.stdout, want)
			}
		})
	}
	t.Run("a result the version cannot express", func(t *testing.T) {
		rec := &recorder{result: &cni.Result{Interfaces: []*cni.Interface{{Name: "eth0"}}}}
		e := runString(rec.plugin(), fullEnv("ADD"), conf("0.2.0")).errObj(t)
		if e.Code != cni.CodeIncompatibleVersion || !strings.Contains(e.Msg, "no valid IP addresses") {
			t.Errorf("got %+v", e)
		}
	})
}

func TestPluginErrors(t *testing.T) {
	typed := &cni.Error{Code: cni.CodeTryAgainLater, Msg: "busy", Details: "lock held by pid 42"}
	tests := []struct {
		name string
		err  error
		want cni.Error
	}{
		{"plain error is 999", errors.New("it broke"), cni.Error{CNIVersion: "1.0.0", Code: cni.CodeInternal, Msg: "it broke"}},
		{"typed error passes through", typed, cni.Error{CNIVersion: "1.0.0", Code: cni.CodeTryAgainLater, Msg: "busy", Details: "lock held by pid 42"}},
		{"typed error keeps its own cniVersion", &cni.Error{CNIVersion: "0.4.0", Code: 3, Msg: "gone"}, cni.Error{CNIVersion: "0.4.0", Code: 3, Msg: "gone"}},
		{"wrapped typed error keeps its code", fmt.Errorf("bridge: %w", typed), cni.Error{CNIVersion: "1.0.0", Code: cni.CodeTryAgainLater, Msg: "bridge: busy; lock held by pid 42"}},
		{"plugin-specific code", cni.Errorf(142, "custom"), cni.Error{CNIVersion: "1.0.0", Code: 142, Msg: "custom"}},
	}
	for _, verb := range []string{"ADD", "DEL", "CHECK"} {
		for _, tt := range tests {
			t.Run(verb+" "+tt.name, func(t *testing.T) {
				rec := &recorder{err: tt.err}
				out := runString(rec.plugin(), fullEnv(verb), conf("1.0.0"))
				if out.status != 1 {
					t.Errorf("exit status %d, want 1", out.status)
				}
				if e := out.errObj(t); *e != tt.want {
					t.Errorf("got %+v, want %+v", *e, tt.want)
				}
			})
		}
	}
}

func TestErrorObjectFormat(t *testing.T) {
	rec := &recorder{err: &cni.Error{Code: 7, Msg: "Invalid Configuration", Details: "too small"}}
	out := runString(rec.plugin(), fullEnv("ADD"), conf("1.1.0"))
	want := "{\n    \"cniVersion\": \"1.1.0\",\n    \"code\": 7,\n    \"msg\": \"Invalid Configuration\",\n    \"details\": \"too small\"\n}\n"
	if out.status != 1 || out.stdout != want {
		t.Errorf("status %d, stdout:\n%s\nwant:\n%s", out.status, out.stdout, want)
	}
	// Before the version is known, the error carries the request's version
	// when it is a supported one, else the newest.
	tests := []struct {
		name, stdin, want string
	}{
		{"supported version", `{"cniVersion":"0.4.0","name":"a b"}`, "0.4.0"},
		{"unsupported version", `{"cniVersion":"7.0.0","name":"a b"}`, "1.1.0"},
		{"not JSON", `nope`, "1.1.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := runString((&recorder{}).plugin(), fullEnv("ADD"), tt.stdin).errObj(t)
			if e.CNIVersion != tt.want {
				t.Errorf("cniVersion %q, want %q", e.CNIVersion, tt.want)
			}
		})
	}
}

func TestNilVerbsAreNoOps(t *testing.T) {
	p := &Plugin{Name: "nothing"}
	for _, verb := range []string{"DEL", "CHECK", "STATUS", "GC"} {
		out := runString(p, fullEnv(verb), conf("1.1.0"))
		if out.status != 0 || out.stdout != "" {
			t.Errorf("%s: status %d, stdout %q", verb, out.status, out.stdout)
		}
	}
	tests := []struct {
		name, stdin, want string
	}{
		{"ADD without prevResult prints an empty result", conf("1.0.0"), "{\n    \"cniVersion\": \"1.0.0\"\n}\n"},
		{"ADD passes prevResult through in the request's version",
			`{"cniVersion":"0.4.0","name":"n","prevResult":{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.2/24"}]}}`,
			"{\n    \"cniVersion\": \"0.4.0\",\n    \"ips\": [\n        {\n            \"version\": \"4\",\n            \"address\": \"10.0.0.2/24\"\n        }\n    ]\n}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := runString(p, fullEnv("ADD"), tt.stdin)
			if out.status != 0 || out.stdout != tt.want {
				t.Errorf("status %d, stdout:\n%s\nwant:\n%s", out.status, out.stdout, tt.want)
			}
		})
	}
	t.Run("ADD with a broken prevResult", func(t *testing.T) {
		e := runString(p, fullEnv("ADD"), `{"cniVersion":"1.0.0","name":"n","prevResult":{"ips":[{"address":"x"}]}}`).errObj(t)
		if e.Code != cni.CodeDecodingFailure || !strings.Contains(e.Msg, "prevResult") {
			t.Errorf("got %+v", e)
		}
	})
}

func TestAddWithoutResult(t *testing.T) {
	rec := &recorder{}
	e := runString(rec.plugin(), fullEnv("ADD"), conf("1.0.0")).errObj(t)
	if e.Code != cni.CodeInternal || !strings.Contains(e.Msg, "neither a result nor an error") {
		t.Errorf("got %+v", e)
	}
}

func TestLogFile(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "plugin.log")
	p := &Plugin{Name: "logger", Del: func(ctx context.Context, args *Args) error {
		args.Log.Info("deleting", "reason", "test")
		args.Log.Debug("details")
		return nil
	}}
	tests := []struct {
		name      string
		level     string
		wantDebug bool
	}{
		{"default level", "", false},
		{"debug level", `,"logLevel":"debug"`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			os.Remove(logPath)
			stdin := fmt.Sprintf(`{"cniVersion":"1.0.0","name":"lognet","logFile":%q%s}`, logPath, tt.level)
			out := runString(p, fullEnv("DEL"), stdin)
			if out.status != 0 {
				t.Fatalf("status %d: %s", out.status, out.stdout)
			}
			data, err := os.ReadFile(logPath)
			if err != nil {
				t.Fatal(err)
			}
			for _, text := range []string{string(data), out.stderr} {
				for _, want := range []string{"deleting", "reason=test", "plugin=logger", "network=lognet", "command=DEL", "containerID=ctr1", "ifname=eth0"} {
					if !strings.Contains(text, want) {
						t.Errorf("log %q lacks %q", text, want)
					}
				}
				if strings.Contains(text, "details") != tt.wantDebug {
					t.Errorf("debug line present = %v, want %v: %q", !tt.wantDebug, tt.wantDebug, text)
				}
			}
			if st, err := os.Stat(logPath); err != nil || st.Mode().Perm() != 0o600 {
				t.Errorf("log file mode %v, %v; want 0600", st.Mode().Perm(), err)
			}
			if out.stdout != "" {
				t.Errorf("log lines reached stdout: %q", out.stdout)
			}
		})
	}
	t.Run("unopenable log file does not fail the verb", func(t *testing.T) {
		stdin := `{"cniVersion":"1.0.0","name":"n","logFile":"/nonexistent/dir/x.log"}`
		out := runString(p, fullEnv("DEL"), stdin)
		if out.status != 0 || !strings.Contains(out.stderr, "cannot open log file") {
			t.Errorf("status %d, stderr %q", out.status, out.stderr)
		}
	})
}

func TestInvoke(t *testing.T) {
	rec := &recorder{result: &cni.Result{IPs: []*cni.IPConfig{{Address: mustCIDR("10.0.0.2/24")}}}}
	p := rec.plugin()
	args := &Args{StdinData: []byte(conf("1.0.0"))}
	args.Env = envOf(fullEnv("ADD"))
	out, cerr := Invoke(context.Background(), p, args)
	if cerr != nil {
		t.Fatal(cerr)
	}
	if r, err := cni.ParseResult(out, ""); err != nil || r.CNIVersion != "1.0.0" || len(r.IPs) != 1 {
		t.Errorf("result %s: %v", out, err)
	}
	t.Run("environment checked", func(t *testing.T) {
		args := &Args{StdinData: []byte(conf("1.0.0"))}
		args.Env = envOf(fullEnv("ADD"))
		args.IfName = ""
		if _, cerr := Invoke(context.Background(), p, args); cerr == nil || cerr.Code != cni.CodeInvalidEnvironment {
			t.Errorf("got %v, want code 4", cerr)
		}
	})
	t.Run("codes as in a process", func(t *testing.T) {
		args := &Args{StdinData: []byte(conf("0.3.0"))}
		args.Env = envOf(fullEnv("CHECK"))
		if _, cerr := Invoke(context.Background(), p, args); cerr == nil || cerr.Code != cni.CodeIncompatibleVersion {
			t.Errorf("got %v, want code 1", cerr)
		}
	})
}

func TestRegistry(t *testing.T) {
	p := &Plugin{Name: "skeltest-registry"}
	Register(p)
	if got, ok := Lookup("skeltest-registry"); !ok || got != p {
		t.Errorf("Lookup = %v, %v", got, ok)
	}
	if _, ok := Lookup("skeltest-absent"); ok {
		t.Error("found an unregistered plugin")
	}
	names := Names()
	found := false
	for i, n := range names {
		found = found || n == p.Name
		if i > 0 && names[i-1] >= n {
			t.Errorf("Names() not sorted: %v", names)
		}
	}
	if !found {
		t.Errorf("Names() = %v lacks %s", names, p.Name)
	}
	defer func() {
		if recover() == nil {
			t.Error("registering a name twice did not panic")
		}
	}()
	Register(&Plugin{Name: "skeltest-registry"})
}
