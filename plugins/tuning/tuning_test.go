package tuning

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/link"
	"github.com/cnikit/cnikit/internal/nstest"
	"github.com/cnikit/cnikit/internal/plugintest"
)

// describeState renders what a test observes of eth0, for comparisons.
func describeState(a link.Attributes) string {
	return fmt.Sprintf("mac=%s mtu=%d txqlen=%d promisc=%v allmulti=%v alias=%q",
		a.MAC, a.MTU, *a.TxQLen, *a.Promisc, *a.Allmulti, *a.Alias)
}

// TestEachKeyAppliedAndRestored: every key changes what it names at ADD,
// passes CHECK, and DEL puts the old value back (sysctls included), removes
// the backup file, and can be repeated.
func TestEachKeyAppliedAndRestored(t *testing.T) {
	e := newEnv(t)
	sysctlOf := func(path string) func(*env) string { return func(e *env) string { return e.sysctl(path) } }
	linkState := func(e *env) string { return describeState(e.attrs("eth0")) }
	cases := []struct {
		name    string
		extra   map[string]any
		observe func(*env) string
		want    string
	}{
		{"sysctl of the interface", map[string]any{"sysctl": map[string]string{"net.ipv4.conf.IFNAME.arp_ignore": "2"}},
			sysctlOf("net/ipv4/conf/eth0/arp_ignore"), "2"},
		{"sysctl in slash form", map[string]any{"sysctl": map[string]string{"net/ipv6/conf/IFNAME/accept_ra": "0"}},
			sysctlOf("net/ipv6/conf/eth0/accept_ra"), "0"},
		{"namespace-wide sysctl", map[string]any{"sysctl": map[string]string{"net.core.somaxconn": "1234"}},
			sysctlOf("net/core/somaxconn"), "1234"},
		{"sysctl of all interfaces", map[string]any{"sysctl": map[string]string{"net.ipv4.conf.all.arp_announce": "2"}},
			sysctlOf("net/ipv4/conf/all/arp_announce"), "2"},
		{"multi-field sysctl", map[string]any{"sysctl": map[string]string{"net.ipv4.ip_local_port_range": "40000 50000"}},
			sysctlOf("net/ipv4/ip_local_port_range"), "40000\t50000"},
		{"mac", map[string]any{"mac": "02:11:22:33:44:55"},
			func(e *env) string { return e.attrs("eth0").MAC.String() }, "02:11:22:33:44:55"},
		{"mtu", map[string]any{"mtu": 1400},
			func(e *env) string { return fmt.Sprint(e.attrs("eth0").MTU) }, "1400"},
		{"txQLen", map[string]any{"txQLen": 123},
			func(e *env) string { return fmt.Sprint(*e.attrs("eth0").TxQLen) }, "123"},
		{"promisc", map[string]any{"promisc": true},
			func(e *env) string { return fmt.Sprint(*e.attrs("eth0").Promisc) }, "true"},
		{"allmulti", map[string]any{"allmulti": true},
			func(e *env) string { return fmt.Sprint(*e.attrs("eth0").Allmulti) }, "true"},
		{"alias", map[string]any{"alias": "front door"},
			func(e *env) string { return *e.attrs("eth0").Alias }, "front door"},
		{"everything at once", map[string]any{"mac": "02:00:00:00:00:07", "mtu": 1300, "txQLen": 7, "promisc": true,
			"allmulti": true, "alias": "x", "sysctl": map[string]string{"net.ipv4.conf.IFNAME.arp_ignore": "1", "net.core.somaxconn": "99"}},
			func(e *env) string {
				return linkState(e) + " " + e.sysctl("net/ipv4/conf/eth0/arp_ignore") + " " + e.sysctl("net/core/somaxconn")
			}, `mac=02:00:00:00:00:07 mtu=1300 txqlen=7 promisc=true allmulti=true alias="x" 1 99`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			before, beforeLink := tc.observe(e), linkState(e)
			if before == tc.want {
				t.Fatalf("the test is void: %q already holds before ADD", before)
			}
			conf := e.conf(tc.extra)
			out := e.host.MustInvoke(plugintest.Call{Verb: "ADD", Conf: conf, Netns: e.cont.Path()})
			if got := tc.observe(e); got != tc.want {
				t.Errorf("after ADD: %q, want %q", got, tc.want)
			}
			res, err := cni.ParseResult(out, "1.1.0")
			if err != nil {
				t.Fatal(err)
			}
			if mac, ok := tc.extra["mac"]; ok && res.Interfaces[1].Mac != mac {
				t.Errorf("result MAC of eth0 %q, want %q", res.Interfaces[1].Mac, mac)
			}
			if res.Interfaces[0].Mac != "aa:aa:aa:aa:aa:aa" || len(res.IPs) != 1 {
				t.Errorf("prevResult not passed through: %s", out)
			}
			withResult := plugintest.WithPrevResult(t, conf, out)
			e.host.MustInvoke(plugintest.Call{Verb: "CHECK", Conf: withResult, Netns: e.cont.Path()})
			e.host.MustInvoke(plugintest.Call{Verb: "DEL", Conf: withResult, Netns: e.cont.Path()})
			if got := tc.observe(e); got != before {
				t.Errorf("after DEL: %q, want the original %q", got, before)
			}
			if got := linkState(e); got != beforeLink {
				t.Errorf("after DEL the link is %s, was %s", got, beforeLink)
			}
			if files := e.backupFiles(); len(files) != 0 {
				t.Errorf("backup files left: %v", files)
			}
			e.host.MustInvoke(plugintest.Call{Verb: "DEL", Conf: withResult, Netns: e.cont.Path()})
		})
	}
}

// TestMACPrecedence: CNI_ARGS MAC < runtimeConfig.mac < args.cni.mac, and
// CNI_ARGS beats the top-level mac, as in the reference.
func TestMACPrecedence(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		name    string
		extra   map[string]any
		cniArgs string
		want    string
	}{
		{"top-level", map[string]any{"mac": "02:00:00:00:00:01"}, "", "02:00:00:00:00:01"},
		{"CNI_ARGS over top-level", map[string]any{"mac": "02:00:00:00:00:01"}, "IgnoreUnknown=1;MAC=02:00:00:00:00:02", "02:00:00:00:00:02"},
		{"runtimeConfig over CNI_ARGS", map[string]any{"runtimeConfig": map[string]any{"mac": "02:00:00:00:00:03"}},
			"MAC=02:00:00:00:00:02", "02:00:00:00:00:03"},
		{"args.cni over runtimeConfig", map[string]any{"runtimeConfig": map[string]any{"mac": "02:00:00:00:00:03"},
			"args": map[string]any{"cni": map[string]any{"mac": "02:00:00:00:00:04"}}}, "MAC=02:00:00:00:00:02", "02:00:00:00:00:04"},
		{"upper case normalised", map[string]any{"mac": "02:AB:CD:00:00:05"}, "", "02:ab:cd:00:00:05"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			conf := e.conf(tc.extra)
			out := e.host.MustInvoke(plugintest.Call{Verb: "ADD", Conf: conf, CNIArgs: tc.cniArgs, Netns: e.cont.Path()})
			if got := e.attrs("eth0").MAC.String(); got != tc.want {
				t.Errorf("eth0 MAC %s, want %s", got, tc.want)
			}
			res, err := cni.ParseResult(out, "1.1.0")
			if err != nil || res.Interfaces[1].Mac != tc.want {
				t.Errorf("result lacks the new MAC: %s", out)
			}
			e.host.MustInvoke(plugintest.Call{Verb: "DEL", Conf: conf, CNIArgs: tc.cniArgs, Netns: e.cont.Path()})
		})
	}
}

// TestArgsOverrides: args.cni keys beat the top-level ones and args.cni's
// sysctls are merged in.
func TestArgsOverrides(t *testing.T) {
	e := newEnv(t)
	conf := e.conf(map[string]any{
		"mtu": 1400, "promisc": true, "txQLen": 10, "allmulti": false, "alias": "top",
		"sysctl": map[string]string{"net.core.somaxconn": "100", "net.ipv4.conf.IFNAME.arp_ignore": "1"},
		"args": map[string]any{"cni": map[string]any{
			"mtu": 1280, "promisc": false, "txQLen": 20, "allmulti": true, "alias": "args",
			"sysctl": map[string]string{"net.core.somaxconn": "200", "net.ipv4.conf.IFNAME.arp_announce": "2"},
		}},
	})
	e.host.MustInvoke(plugintest.Call{Verb: "ADD", Conf: conf, Netns: e.cont.Path()})
	a := e.attrs("eth0")
	if a.MTU != 1280 || *a.Promisc || *a.TxQLen != 20 || !*a.Allmulti || *a.Alias != "args" {
		t.Errorf("attributes %s", describeState(a))
	}
	for path, want := range map[string]string{"net/core/somaxconn": "200", "net/ipv4/conf/eth0/arp_ignore": "1", "net/ipv4/conf/eth0/arp_announce": "2"} {
		if got := e.sysctl(path); got != want {
			t.Errorf("%s = %s, want %s", path, got, want)
		}
	}
	e.host.MustInvoke(plugintest.Call{Verb: "CHECK", Conf: conf, Netns: e.cont.Path()})
	e.host.MustInvoke(plugintest.Call{Verb: "DEL", Conf: conf, Netns: e.cont.Path()})
	if got := e.sysctl("net/core/somaxconn"); got != "4096" {
		t.Errorf("somaxconn after DEL %s, want the default 4096", got)
	}
}

// TestForbiddenSysctls: keys outside the container's own business are
// refused with code 7 naming the key, and nothing at all is changed.
func TestForbiddenSysctls(t *testing.T) {
	e := newEnv(t)
	allowlist := filepath.Join(t.TempDir(), "allowlist.conf")
	cases := []struct {
		name      string
		sysctl    map[string]string
		allowlist string
		msg       string
	}{
		{"another interface", map[string]string{"net.ipv4.conf.eth1.arp_ignore": "1"}, "", `names interface "eth1"`},
		{"loopback", map[string]string{"net/ipv6/conf/lo/disable_ipv6": "1"}, "", `names interface "lo"`},
		{"neighbour table of another interface", map[string]string{"net.ipv4.neigh.eth1.gc_stale_time": "1"}, "", `names interface "eth1"`},
		{"dot-dot in a path", map[string]string{"net/ipv4/../../kernel/hostname": "x"}, "", `".." component`},
		{"dot-dot after IFNAME", map[string]string{"net/ipv4/conf/IFNAME/../../../../kernel/hostname": "x"}, "", `".." component`},
		{"empty component", map[string]string{"net..core.somaxconn": "1"}, "", "empty component"},
		{"absolute path", map[string]string{"/proc/sys/kernel/hostname": "x"}, "", "empty component"},
		{"not network", map[string]string{"kernel.hostname": "x"}, "", "not below net."},
		{"vm", map[string]string{"vm/swappiness": "1"}, "", "not below net."},
		{"net alone", map[string]string{"net": "1"}, "", "not below net."},
		{"does not exist", map[string]string{"net.ipv4.conf.IFNAME.no_such_thing": "1"}, "", "does not exist"},
		{"same setting twice", map[string]string{"net.core.somaxconn": "1", "net/core/somaxconn": "2"}, "", "name the same setting"},
		{"value refused by the kernel", map[string]string{"net.ipv4.conf.IFNAME.arp_ignore": "banana"}, "", `refused value "banana"`},
		{"not in the allowlist", map[string]string{"net.ipv4.conf.IFNAME.arp_ignore": "1"}, `^net\.core\.somaxconn$`, "is not allowed by"},
	}
	before := e.sysctl("net/ipv4/conf/eth0/arp_ignore") + e.sysctl("net/core/somaxconn")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			if tc.allowlist != "" {
				if err := os.WriteFile(allowlist, []byte(tc.allowlist+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				t.Setenv(AllowlistEnv, allowlist)
			}
			// A good key rides along, so a partial apply would show.
			sysctl := map[string]string{"net.core.somaxconn": "777"}
			for k, v := range tc.sysctl {
				sysctl[k] = v
			}
			_, cerr := e.host.Invoke(plugintest.Call{Verb: "ADD", Conf: e.conf(map[string]any{"sysctl": sysctl, "mtu": 1400}), Netns: e.cont.Path()})
			if cerr == nil {
				t.Fatal("ADD succeeded")
			}
			var key string
			for k := range tc.sysctl {
				key = k
			}
			if cerr.Code != cni.CodeInvalidNetworkConfig || !strings.Contains(cerr.Msg, tc.msg) || !strings.Contains(cerr.Msg, fmt.Sprintf("%q", key)) {
				t.Errorf("got code %d %q, want code 7 naming %q and containing %q", cerr.Code, cerr.Msg, key, tc.msg)
			}
			if after := e.sysctl("net/ipv4/conf/eth0/arp_ignore") + e.sysctl("net/core/somaxconn"); after != before {
				t.Errorf("sysctls changed: %s -> %s", before, after)
			}
			if mtu := e.attrs("eth0").MTU; mtu != 1500 {
				t.Errorf("MTU changed to %d", mtu)
			}
			if files := e.backupFiles(); len(files) != 0 {
				t.Errorf("backup files left: %v", files)
			}
		})
	}
}

// TestSysctlSymlinkTrick: a sysctl whose path leads, through a symbolic
// link, out of net/ is refused. /proc/sys holds no such link, so the tree is
// a copy in a temporary directory.
func TestSysctlSymlinkTrick(t *testing.T) {
	root := t.TempDir()
	mk := func(path, content string) {
		full := filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	link := func(target, path string) {
		full := filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, full); err != nil {
			t.Fatal(err)
		}
	}
	mk("kernel/hostname", "host")
	mk("net/core/somaxconn", "4096")
	mk("net/ipv4/conf/eth9/rp_filter", "1")
	link("../../kernel/hostname", "net/core/escape")
	link("../../../kernel", "net/ipv4/conf/eth0")
	link("/etc/passwd", "net/core/absolute")
	link("somaxconn", "net/core/inside")
	link("../../net/ipv4/conf/eth9/rp_filter", "net/core/sibling")
	tree := sysctlTree{root: root}
	cases := []struct {
		name, key string
		wantErr   error
	}{
		{"file link out of net", "net.core.escape", errOutsideNet},
		{"directory link out of net", "net.ipv4.conf.IFNAME.hostname", errOutsideNet},
		{"absolute link", "net.core.absolute", errOutsideNet},
		{"link within net", "net.core.inside", nil},
		{"plain file", "net.core.somaxconn", nil},
		{"missing", "net.core.nothing", errNoSysctl},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path, err := resolveSysctlKey(tc.key, "eth0")
			if err != nil {
				t.Fatalf("resolveSysctlKey: %v", err)
			}
			file, err := tree.sysctlFile(sysctlSetting{key: tc.key, path: path})
			if tc.wantErr == nil {
				if err != nil || !strings.HasPrefix(file, filepath.Join(root, "net")+"/") {
					t.Fatalf("file %q, %v", file, err)
				}
				return
			}
			if cni.CodeOf(err) != cni.CodeInvalidNetworkConfig || !strings.Contains(err.Error(), tc.key) {
				t.Errorf("got %v (code %d), want code 7 naming %q", err, cni.CodeOf(err), tc.key)
			}
			if _, ferr := tree.file(path); ferr == nil || !strings.Contains(ferr.Error(), tc.wantErr.Error()) {
				t.Errorf("file: %v, want %v", ferr, tc.wantErr)
			}
		})
	}
	if data, _ := os.ReadFile(filepath.Join(root, "kernel/hostname")); string(data) != "host" {
		t.Errorf("the target outside net/ was written: %q", data)
	}
}

// TestResolveSysctlKey covers the key syntax, without privileges.
func TestResolveSysctlKey(t *testing.T) {
	cases := []struct {
		name, key, ifName, want, err string
	}{
		{"dotted", "net.core.somaxconn", "eth0", "net/core/somaxconn", ""},
		{"IFNAME", "net.ipv4.conf.IFNAME.rp_filter", "eth0", "net/ipv4/conf/eth0/rp_filter", ""},
		{"IFNAME with a dotted name", "net.ipv4.conf.IFNAME.rp_filter", "eth0.100", "net/ipv4/conf/eth0.100/rp_filter", ""},
		{"slash form keeps dots", "net/ipv4/conf/eth0.100/rp_filter", "eth0.100", "net/ipv4/conf/eth0.100/rp_filter", ""},
		{"own name", "net.ipv6.conf.net1.accept_ra", "net1", "net/ipv6/conf/net1/accept_ra", ""},
		{"default", "net.ipv6.conf.default.accept_ra", "eth0", "net/ipv6/conf/default/accept_ra", ""},
		{"neigh default", "net.ipv4.neigh.default.gc_thresh1", "eth0", "net/ipv4/neigh/default/gc_thresh1", ""},
		{"other interface", "net.ipv6.conf.eth1.accept_ra", "eth0", "", `names interface "eth1"`},
		{"dotted name without IFNAME", "net.ipv4.conf.eth0.100.rp_filter", "eth0.100", "", `names interface "eth0"`},
		{"trailing dot", "net.core.", "eth0", "", "empty component"},
		{"NUL", "net.core.x\x00y", "eth0", "", "NUL"},
		{"dot component", "net/./core/somaxconn", "eth0", "", `"." component`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := resolveSysctlKey(tc.key, tc.ifName)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("resolveSysctlKey = %q, %v; want an error containing %q", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("resolveSysctlKey = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// TestBadConfigs: invalid values are refused with the right code before
// anything changes.
func TestBadConfigs(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		name    string
		extra   map[string]any
		cniArgs string
		code    cni.Code
		msg     string
	}{
		{"no prevResult", map[string]any{"prevResult": nil, "mtu": 1400}, "", cni.CodeInvalidNetworkConfig, "prevResult is required"},
		{"bad mac", map[string]any{"mac": "zz:zz"}, "", cni.CodeInvalidNetworkConfig, `mac "zz:zz"`},
		{"bad runtimeConfig mac", map[string]any{"runtimeConfig": map[string]any{"mac": "1"}}, "", cni.CodeInvalidNetworkConfig, `runtimeConfig.mac "1"`},
		{"bad args.cni mac", map[string]any{"args": map[string]any{"cni": map[string]any{"mac": "x"}}}, "", cni.CodeInvalidNetworkConfig, `args.cni.mac "x"`},
		{"bad CNI_ARGS mac", nil, "MAC=nope", cni.CodeInvalidEnvironment, `CNI_ARGS MAC "nope"`},
		{"unknown CNI_ARGS", nil, "FOO=bar", cni.CodeInvalidEnvironment, "FOO=bar"},
		{"negative mtu", map[string]any{"mtu": -1}, "", cni.CodeInvalidNetworkConfig, "mtu -1"},
		{"huge mtu", map[string]any{"mtu": 70000}, "", cni.CodeInvalidNetworkConfig, "mtu 70000"},
		{"negative txQLen", map[string]any{"txQLen": -5}, "", cni.CodeInvalidNetworkConfig, "txQLen -5"},
		{"long alias", map[string]any{"alias": strings.Repeat("a", 256)}, "", cni.CodeInvalidNetworkConfig, "longer than 255"},
		{"mtu not a number", map[string]any{"mtu": "big"}, "", cni.CodeInvalidNetworkConfig, "mtu"},
		{"sysctl value not a string", map[string]any{"sysctl": map[string]any{"net.core.somaxconn": true}}, "", cni.CodeInvalidNetworkConfig, "not a string"},
		{"sysctl not an object", map[string]any{"sysctl": []string{"net.core.somaxconn"}}, "", cni.CodeInvalidNetworkConfig, "object"},
		{"relative dataDir", map[string]any{"dataDir": "tuning"}, "", cni.CodeInvalidNetworkConfig, `dataDir "tuning"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			_, cerr := e.host.Invoke(plugintest.Call{Verb: "ADD", Conf: e.conf(tc.extra), Netns: e.cont.Path(), CNIArgs: tc.cniArgs})
			if cerr == nil {
				t.Fatal("ADD succeeded")
			}
			if cerr.Code != tc.code || !strings.Contains(cerr.Msg, tc.msg) {
				t.Errorf("got code %d %q, want code %d containing %q", cerr.Code, cerr.Msg, tc.code, tc.msg)
			}
			if files := e.backupFiles(); len(files) != 0 {
				t.Errorf("backup files left: %v", files)
			}
		})
	}
	t.Run("duplicate sysctl key", func(t *testing.T) {
		e.t = t
		conf := strings.Replace(string(e.conf(nil)), `"type":"tuning"`,
			`"type":"tuning","sysctl":{"net.core.somaxconn":"1","net.core.somaxconn":"2"}`, 1)
		_, cerr := e.host.Invoke(plugintest.Call{Verb: "ADD", Conf: []byte(conf), Netns: e.cont.Path()})
		if cerr == nil || cerr.Code != cni.CodeInvalidNetworkConfig || !strings.Contains(cerr.Msg, `"net.core.somaxconn" is given twice`) {
			t.Errorf("got %v, want code 7 about the duplicate", cerr)
		}
	})
	t.Run("missing netns", func(t *testing.T) {
		e.t = t
		_, cerr := e.host.Invoke(plugintest.Call{Verb: "ADD", Conf: e.conf(map[string]any{"mtu": 1400}), Netns: "/nonexistent/netns"})
		if cerr == nil || cerr.Code != cni.CodeUnknownContainer {
			t.Errorf("got %v, want code 3", cerr)
		}
	})
	t.Run("missing interface", func(t *testing.T) {
		e.t = t
		_, cerr := e.host.Invoke(plugintest.Call{Verb: "ADD", Conf: e.conf(map[string]any{"mtu": 1400}), Netns: e.cont.Path(), IfName: "eth7"})
		if cerr == nil || !strings.Contains(cerr.Msg, `"eth7"`) {
			t.Errorf("got %v, want an error naming eth7", cerr)
		}
	})
}

// TestFailedAddRollsBack: when the kernel refuses a setting, what was
// already changed is put back and no backup file stays.
func TestFailedAddRollsBack(t *testing.T) {
	e := newEnv(t)
	// A veth takes no MTU below 68: the sysctls are written, then the link
	// request fails.
	conf := e.conf(map[string]any{"mtu": 60, "sysctl": map[string]string{"net.core.somaxconn": "321"}})
	_, cerr := e.host.Invoke(plugintest.Call{Verb: "ADD", Conf: conf, Netns: e.cont.Path()})
	if cerr == nil || !strings.Contains(cerr.Msg, "mtu 60") {
		t.Fatalf("ADD: %v, want a failure naming mtu 60", cerr)
	}
	if got := e.sysctl("net/core/somaxconn"); got != "4096" {
		t.Errorf("somaxconn %s after the failed ADD, want 4096", got)
	}
	if files := e.backupFiles(); len(files) != 0 {
		t.Errorf("backup files left: %v", files)
	}
}

// TestAddTwiceKeepsOriginal: a second ADD of the same attachment (a runtime
// retry) does not overwrite the original values with the first ADD's.
func TestAddTwiceKeepsOriginal(t *testing.T) {
	e := newEnv(t)
	conf := e.conf(map[string]any{"mtu": 1400, "sysctl": map[string]string{"net.core.somaxconn": "55"}})
	e.host.MustInvoke(plugintest.Call{Verb: "ADD", Conf: conf, Netns: e.cont.Path()})
	e.host.MustInvoke(plugintest.Call{Verb: "ADD", Conf: e.conf(map[string]any{"mtu": 1300, "sysctl": map[string]string{"net.core.somaxconn": "66"}}), Netns: e.cont.Path()})
	e.host.MustInvoke(plugintest.Call{Verb: "DEL", Conf: conf, Netns: e.cont.Path()})
	if mtu, s := e.attrs("eth0").MTU, e.sysctl("net/core/somaxconn"); mtu != 1500 || s != "4096" {
		t.Errorf("after DEL: mtu %d somaxconn %s, want the originals 1500 4096", mtu, s)
	}
}

// TestNothingToDo: a configuration with no setting passes prevResult on
// without entering the namespace or writing a file.
func TestNothingToDo(t *testing.T) {
	e := newEnv(t)
	out := e.host.MustInvoke(plugintest.Call{Verb: "ADD", Conf: e.conf(nil), Netns: "/nonexistent/netns"})
	if !strings.Contains(string(out), "veth1234") {
		t.Errorf("prevResult not passed on: %s", out)
	}
	if files := e.backupFiles(); len(files) != 0 {
		t.Errorf("backup files: %v", files)
	}
}

// TestCheck: CHECK notices every kind of drift.
func TestCheck(t *testing.T) {
	e := newEnv(t)
	conf := e.conf(map[string]any{"mtu": 1400, "promisc": true, "alias": "a", "sysctl": map[string]string{"net.ipv4.conf.IFNAME.arp_ignore": "2"}})
	e.host.MustInvoke(plugintest.Call{Verb: "ADD", Conf: conf, Netns: e.cont.Path()})
	e.host.MustInvoke(plugintest.Call{Verb: "CHECK", Conf: conf, Netns: e.cont.Path()})
	cases := []struct {
		name, cmd, msg string
		undo           []string
	}{
		{"mtu", "ip link set eth0 mtu 1450", "mtu of \"eth0\" is 1450, configured 1400", []string{"ip", "link", "set", "eth0", "mtu", "1400"}},
		{"promisc", "ip link set eth0 promisc off", "promisc", []string{"ip", "link", "set", "eth0", "promisc", "on"}},
		{"alias", "ip link set eth0 alias b", `alias of "eth0" is "b", configured "a"`, []string{"ip", "link", "set", "eth0", "alias", "a"}},
		{"sysctl", "sysctl -w net.ipv4.conf.eth0.arp_ignore=0", `sysctl "net.ipv4.conf.IFNAME.arp_ignore" is "0", configured "2"`,
			[]string{"sysctl", "-w", "net.ipv4.conf.eth0.arp_ignore=2"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			f := strings.Fields(tc.cmd)
			e.cont.MustRun(f[0], f[1:]...)
			_, cerr := e.host.Invoke(plugintest.Call{Verb: "CHECK", Conf: conf, Netns: e.cont.Path()})
			if cerr == nil || !strings.Contains(cerr.Msg, tc.msg) {
				t.Errorf("CHECK: %v, want an error containing %q", cerr, tc.msg)
			}
			e.cont.MustRun(tc.undo[0], tc.undo[1:]...)
			e.host.MustInvoke(plugintest.Call{Verb: "CHECK", Conf: conf, Netns: e.cont.Path()})
		})
	}
	_, cerr := e.host.Invoke(plugintest.Call{Verb: "CHECK", Conf: e.conf(map[string]any{"prevResult": nil}), Netns: e.cont.Path()})
	if cerr == nil || !strings.Contains(cerr.Msg, "prevResult is required") {
		t.Errorf("CHECK without prevResult: %v", cerr)
	}
}

// TestDelIdempotent: DEL succeeds with nothing saved, with an empty or
// vanished namespace (dropping the file), and with the interface gone.
func TestDelIdempotent(t *testing.T) {
	cases := []struct {
		name   string
		before func(e *env) string // returns the DEL's CNI_NETNS
	}{
		{"no backup", func(e *env) string { return e.cont.Path() }},
		{"empty netns", func(e *env) string {
			e.host.MustInvoke(plugintest.Call{Verb: "ADD", Conf: e.conf(map[string]any{"mtu": 1400}), Netns: e.cont.Path()})
			return ""
		}},
		{"netns gone", func(e *env) string {
			e.host.MustInvoke(plugintest.Call{Verb: "ADD", Conf: e.conf(map[string]any{"mtu": 1400}), Netns: e.cont.Path()})
			return filepath.Join(t.TempDir(), "gone")
		}},
		{"interface gone", func(e *env) string {
			e.host.MustInvoke(plugintest.Call{Verb: "ADD", Conf: e.conf(map[string]any{"mtu": 1400, "sysctl": map[string]string{"net.ipv4.conf.IFNAME.arp_ignore": "1"}}), Netns: e.cont.Path()})
			e.cont.MustRun("ip", "link", "del", "eth0")
			return e.cont.Path()
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			netnsPath := tc.before(e)
			conf := e.conf(map[string]any{"prevResult": nil})
			for i := 0; i < 2; i++ {
				if _, cerr := e.host.Invoke(plugintest.Call{Verb: "DEL", Conf: conf, Netns: netnsPath}); cerr != nil {
					t.Fatalf("DEL %d: %v", i+1, cerr)
				}
			}
			if files := e.backupFiles(); len(files) != 0 {
				t.Errorf("backup files left: %v", files)
			}
		})
	}
}

// TestReferenceBackupRestored: a backup file in the reference plugin's
// format (as its ADD writes it) is restored by DEL.
func TestReferenceBackupRestored(t *testing.T) {
	e := newEnv(t)
	e.cont.MustRun("ip", "link", "set", "eth0", "address", "02:00:00:00:00:99", "mtu", "1400", "promisc", "on", "allmulticast", "on", "txqueuelen", "50")
	// What the reference writes, byte for byte in its layout.
	ref := "{\n \"mac\": \"02:00:00:00:00:01\",\n \"promisc\": false,\n \"mtu\": 1500,\n \"allmulti\": false,\n \"txQLen\": 1000\n}"
	if err := os.WriteFile(filepath.Join(e.dataDir, "ctr1_eth0.json"), []byte(ref), 0o600); err != nil {
		t.Fatal(err)
	}
	e.host.MustInvoke(plugintest.Call{Verb: "DEL", Conf: e.conf(nil), Netns: e.cont.Path()})
	want := `mac=02:00:00:00:00:01 mtu=1500 txqlen=1000 promisc=false allmulti=false alias=""`
	if got := describeState(e.attrs("eth0")); got != want {
		t.Errorf("after DEL: %s, want %s", got, want)
	}
	if files := e.backupFiles(); len(files) != 0 {
		t.Errorf("backup file left: %v", files)
	}
}

// TestBackupFormat: the file cnikit writes holds the reference's keys (so
// the reference plugin's DEL restores it) plus cnikit's own.
func TestBackupFormat(t *testing.T) {
	e := newEnv(t)
	e.host.MustInvoke(plugintest.Call{Verb: "ADD", Conf: e.conf(map[string]any{"mac": "02:00:00:00:00:42", "mtu": 1400, "promisc": true,
		"allmulti": true, "txQLen": 9, "alias": "z", "sysctl": map[string]string{"net.core.somaxconn": "5"}}), Netns: e.cont.Path()})
	data, err := os.ReadFile(filepath.Join(e.dataDir, "ctr1_eth0.json"))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(filepath.Join(e.dataDir, "ctr1_eth0.json"))
	if st.Mode().Perm() != 0o600 {
		t.Errorf("backup file mode %v, want 0600", st.Mode().Perm())
	}
	for key, want := range map[string]any{"mtu": 1500.0, "promisc": false, "allmulti": false, "txQLen": 1000.0, "alias": "",
		"network": "tunenet", "containerID": "ctr1", "ifName": "eth0"} {
		if got[key] != want {
			t.Errorf("%s = %v, want %v (file %s)", key, got[key], want, data)
		}
	}
	if mac, _ := got["mac"].(string); mac == "" || mac == "02:00:00:00:00:42" {
		t.Errorf("mac = %q, want the original", mac)
	}
	if !strings.Contains(string(data), `"sysctls":[{"path":"net/core/somaxconn","value":"4096"}]`) {
		t.Errorf("sysctls not saved: %s", data)
	}
}

// TestGC: GC removes this network's backup files whose attachment is not
// valid any more, and leaves everything else in the directory alone.
func TestGC(t *testing.T) {
	nstest.RequireRoot(t)
	e := &env{t: t, dataDir: t.TempDir()}
	files := map[string]string{
		"keep_eth0.json":     `{"mtu":1500,"network":"tunenet","containerID":"keep","ifName":"eth0"}`,
		"stale_eth0.json":    `{"mtu":1500,"network":"tunenet","containerID":"stale","ifName":"eth0"}`,
		"keep_net1.json":     `{"mtu":1500,"network":"tunenet","containerID":"keep","ifName":"net1"}`,
		"other_eth0.json":    `{"mtu":1500,"network":"othernet","containerID":"other","ifName":"eth0"}`,
		"ref_eth0.json":      `{"mtu":1500}`,
		"renamed_eth0.json":  `{"mtu":1500,"network":"tunenet","containerID":"x","ifName":"eth0"}`,
		"10-tunenet_a.json":  `{"cniVersion":"1.0.0","name":"tunenet","type":"bridge","network":"tunenet","containerID":"10-tunenet","ifName":"a"}`,
		"garbage_eth0.json":  `not json`,
		"stale_eth0.json.gz": `{"network":"tunenet","containerID":"stale","ifName":"eth0"}`,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(e.dataDir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	conf, _ := json.Marshal(map[string]any{"cniVersion": "1.1.0", "name": "tunenet", "type": "tuning", "dataDir": e.dataDir,
		"cni.dev/valid-attachments": []map[string]string{{"containerID": "keep", "ifname": "eth0"}}})
	_, p := plugintest.Invoke(t, plugintest.Call{Plugin: "tuning", Verb: "GC", Path: "/nonexistent", Conf: conf})
	if p != nil {
		t.Fatalf("GC: %v", p)
	}
	left := map[string]bool{}
	for _, n := range e.backupFiles() {
		left[n] = true
	}
	for name := range files {
		removed := name == "stale_eth0.json" || name == "keep_net1.json"
		if left[name] == removed {
			t.Errorf("%s: left %v, want removed %v", name, left[name], removed)
		}
	}
}

// TestStatus: STATUS fails (code 50) on a broken allowlist and a dataDir
// that is not a directory.
func TestStatus(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o600)
	bad := filepath.Join(dir, "allowlist.conf")
	os.WriteFile(bad, []byte("net\\.core\\.(\n"), 0o600)
	cases := []struct {
		name, dataDir, allowlist string
		code                     cni.Code
	}{
		{"ready", dir, filepath.Join(dir, "none"), 0},
		{"dataDir is a file", file, filepath.Join(dir, "none"), cni.CodePluginNotAvailable},
		{"broken allowlist", dir, bad, cni.CodePluginNotAvailable},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(AllowlistEnv, tc.allowlist)
			conf, _ := json.Marshal(map[string]any{"cniVersion": "1.1.0", "name": "n", "type": "tuning", "dataDir": tc.dataDir})
			_, cerr := plugintest.Invoke(t, plugintest.Call{Plugin: "tuning", Verb: "STATUS", Path: "/nonexistent", Conf: conf})
			if got := cni.CodeOf(errOrNil(cerr)); got != tc.code {
				t.Errorf("STATUS: %v, want code %d", cerr, tc.code)
			}
		})
	}
}
