package plugintest

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/link"
	"github.com/cnikit/cnikit/internal/nstest"
	"github.com/cnikit/cnikit/invoke"
	"github.com/cnikit/cnikit/skel"
)

// Call is one plugin invocation: the CNI_* variables, the configuration on
// stdin, and which registered plugin answers it.
type Call struct {
	Plugin      string // the registered plugin (skel.Lookup)
	Verb        string // CNI_COMMAND
	ContainerID string // CNI_CONTAINERID
	Netns       string // CNI_NETNS
	IfName      string // CNI_IFNAME
	CNIArgs     string // CNI_ARGS
	Path        string // CNI_PATH
	Conf        []byte // stdin
	// NetnsOverride lets the plugin work on its own namespace, for IPAM
	// plugins that never enter CNI_NETNS.
	NetnsOverride bool
}

// env returns the call's CNI_* variables.
func (c Call) env() invoke.Env {
	return invoke.Env{Command: c.Verb, ContainerID: c.ContainerID, Netns: c.Netns, IfName: c.IfName,
		CNIArgs: c.CNIArgs, Path: c.Path}
}

// Invoke runs c in-process (skel.Invoke) on the calling thread, whose
// namespace the plugin takes for the host's. It fails the test when the
// plugin is not registered in the test binary.
func Invoke(t testing.TB, c Call) ([]byte, *cni.Error) {
	p, ok := skel.Lookup(c.Plugin)
	if !ok {
		t.Fatalf("%s is not registered", c.Plugin)
	}
	return skel.Invoke(context.Background(), p, &skel.Args{Env: c.env(), NetnsOverride: c.NetnsOverride, StdinData: c.Conf})
}

// Host is a throw-away "host" network namespace in which a test runs plugins
// in-process, as a runtime on that host would (see the rules in
// internal/nstest: plugin code does its host-side work on the calling
// thread). The embedded namespace gives Do, Run, MustRun, Handle and Path.
type Host struct {
	*nstest.NS
	// Defaults fills in the Plugin, ContainerID, IfName and Path that a call
	// leaves empty. Netns, CNIArgs and Conf are never filled in: an empty one
	// is a case worth testing.
	Defaults Call

	t testing.TB
}

// NewHost creates a host namespace, removed when the test ends, whose calls
// go to plugin for container "ctr1" on "eth0" unless they say otherwise. It
// skips the test unless it runs as root.
func NewHost(t testing.TB, plugin string) *Host {
	t.Helper()
	nstest.RequireRoot(t)
	return &Host{NS: nstest.New(t), Defaults: Call{Plugin: plugin, ContainerID: "ctr1", IfName: "eth0"}, t: t}
}

// withDefaults fills in c's empty fields from h.Defaults.
func (h *Host) withDefaults(c Call) Call {
	for _, f := range []struct{ field, def *string }{
		{&c.Plugin, &h.Defaults.Plugin},
		{&c.ContainerID, &h.Defaults.ContainerID},
		{&c.IfName, &h.Defaults.IfName},
		{&c.Path, &h.Defaults.Path},
	} {
		if *f.field == "" {
			*f.field = *f.def
		}
	}
	return c
}

// Invoke runs c in-process inside the host namespace and returns the
// plugin's output and error.
func (h *Host) Invoke(c Call) ([]byte, *cni.Error) {
	c = h.withDefaults(c)
	var out []byte
	var cerr *cni.Error
	h.Do(func() error {
		out, cerr = Invoke(h.t, c)
		return nil
	})
	return out, cerr
}

// MustInvoke is Invoke that fails the test when the plugin returns an error.
func (h *Host) MustInvoke(c Call) []byte {
	h.t.Helper()
	out, cerr := h.Invoke(c)
	if cerr != nil {
		h.t.Fatalf("%s of %s: %v", c.Verb, h.withDefaults(c).ContainerID, cerr)
	}
	return out
}

// MustAdd runs c as an ADD and returns the parsed result and its bytes; it
// fails the test on an error or a result that does not parse.
func (h *Host) MustAdd(c Call) (*cni.Result, []byte) {
	h.t.Helper()
	c.Verb = "ADD"
	out := h.MustInvoke(c)
	res, err := cni.ParseResult(out, "1.1.0")
	if err != nil {
		h.t.Fatalf("parsing ADD result %s: %v", out, err)
	}
	return res, out
}

// Exec runs a plugin binary from inside the host namespace, as a runtime
// would (invoke.Exec), and returns its output. The call's Plugin is not
// used, and its Path, when empty, is the binary's own directory rather than
// Defaults.Path: a binary finds the plugins installed next to it.
// NetnsOverride sets CNI_NETNS_OVERRIDE=1.
func (h *Host) Exec(binary string, c Call) ([]byte, error) {
	if c.Path == "" {
		c.Path = filepath.Dir(binary)
	}
	c = h.withDefaults(c)
	environ := c.env().Environ(os.Environ())
	if c.NetnsOverride {
		environ = append(environ, "CNI_NETNS_OVERRIDE=1")
	}
	var out []byte
	err := h.NS.NS.Do(func() error {
		var err error
		out, err = invoke.Exec(context.Background(), binary, c.Conf, environ, os.Stderr)
		return err
	})
	return out, err
}

// MustExec is Exec that fails the test when the binary fails.
func (h *Host) MustExec(binary string, c Call) []byte {
	h.t.Helper()
	out, err := h.Exec(binary, c)
	if err != nil {
		h.t.Fatalf("%s %s: %v", binary, c.Verb, err)
	}
	return out
}

// Link returns a link of the host namespace and fails the test without it.
func (h *Host) Link(name string) netlink.Link {
	h.t.Helper()
	l, err := h.Handle().LinkByName(name)
	if err != nil {
		h.t.Fatalf("host link %q: %v", name, err)
	}
	return l
}

// HasLink reports whether the host namespace has a link called name.
func (h *Host) HasLink(name string) bool {
	_, err := h.Handle().LinkByName(name)
	return err == nil
}

// LinkNames returns the names of the host namespace's links.
func (h *Host) LinkNames() []string {
	h.t.Helper()
	links, err := h.Handle().LinkList()
	if err != nil {
		h.t.Fatal(err)
	}
	var names []string
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	return names
}

// Sysctl reads a setting ("net/ipv4/ip_forward" or the dotted form) inside
// ns and fails the test when it cannot.
func Sysctl(t testing.TB, ns *nstest.NS, name string) string {
	t.Helper()
	var v string
	ns.Do(func() error {
		var err error
		v, err = link.Sysctl(name)
		return err
	})
	return v
}

// GlobalAddrs returns the addresses of link name in ns other than the
// link-local ones, with their flags; it fails the test without the link.
func GlobalAddrs(t testing.TB, ns *nstest.NS, name string) []netlink.Addr {
	t.Helper()
	l, err := ns.Handle().LinkByName(name)
	if err != nil {
		t.Fatalf("link %q: %v", name, err)
	}
	addrs, err := ns.Handle().AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	var out []netlink.Addr
	for _, a := range addrs {
		if !a.IP.IsLinkLocalUnicast() {
			out = append(out, a)
		}
	}
	return out
}

// Conf builds a plugin configuration of type plugin: cniVersion 1.1.0, the
// network name, then keys, where a nil value (an untyped nil, or a nil map
// or slice) removes the key instead.
func Conf(t testing.TB, plugin, name string, keys map[string]any) []byte {
	t.Helper()
	m := map[string]any{"cniVersion": "1.1.0", "name": name, "type": plugin}
	for k, v := range keys {
		if isNil(v) {
			delete(m, k)
			continue
		}
		m[k] = v
	}
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// isNil reports whether v is nil or a nil map or slice.
func isNil(v any) bool {
	if v == nil {
		return true
	}
	switch rv := reflect.ValueOf(v); rv.Kind() {
	case reflect.Map, reflect.Slice, reflect.Pointer:
		return rv.IsNil()
	}
	return false
}

// HostLocal is a host-local ipam section with one range set per subnet,
// keeping its state in dataDir.
func HostLocal(dataDir string, subnets ...string) map[string]any {
	var ranges [][]map[string]string
	for _, s := range subnets {
		ranges = append(ranges, []map[string]string{{"subnet": s}})
	}
	return map[string]any{"type": "host-local", "ranges": ranges, "dataDir": dataDir}
}

// WithPrevResult sets a configuration's prevResult to an ADD result, as a
// runtime does for CHECK and DEL.
func WithPrevResult(t testing.TB, conf, result []byte) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(conf, &m); err != nil {
		t.Fatal(err)
	}
	m["prevResult"] = json.RawMessage(result)
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// InProcessPath returns a CNI_PATH holding, under each of names, a link to
// the test binary itself: a plugin that delegates (skel.Delegate) to one of
// them then runs it in-process, as the cnikit binary does, so that the test
// needs no build and measures no process start. The test binary must import
// the plugins named.
func InProcessPath(t testing.TB, names ...string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, name := range names {
		if err := os.Symlink(self, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// BenchmarkAdd measures c as an ADD inside the host; each attachment is
// deleted again (DEL with prevResult) outside the timer.
func (h *Host) BenchmarkAdd(b *testing.B, c Call) {
	for b.Loop() {
		c.Verb = "ADD"
		out, cerr := h.Invoke(c)
		if cerr != nil {
			b.Fatal(cerr)
		}
		b.StopTimer()
		del := c
		del.Verb, del.Conf = "DEL", WithPrevResult(b, c.Conf, out)
		if _, cerr := h.Invoke(del); cerr != nil {
			b.Fatal(cerr)
		}
		b.StartTimer()
	}
}

// BenchmarkDel measures c as a DEL with prevResult, as a runtime sends it;
// the ADD before each runs outside the timer.
func (h *Host) BenchmarkDel(b *testing.B, c Call) {
	for b.Loop() {
		b.StopTimer()
		c.Verb = "ADD"
		out, cerr := h.Invoke(c)
		if cerr != nil {
			b.Fatal(cerr)
		}
		del := c
		del.Verb, del.Conf = "DEL", WithPrevResult(b, c.Conf, out)
		b.StartTimer()
		if _, cerr := h.Invoke(del); cerr != nil {
			b.Fatal(cerr)
		}
	}
}
