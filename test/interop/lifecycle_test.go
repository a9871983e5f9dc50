package interop

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/nstest"
	"github.com/cnikit/cnikit/internal/plugintest"
	"github.com/cnikit/cnikit/internal/rundir"
)

// impl says whose binary serves a plugin type.
type impl int

const (
	cnikitImpl impl = iota
	referenceImpl
)

func (i impl) String() string { return [...]string{"cnikit", "reference"}[i] }

// impls says whose binary serves each plugin type of a chain: def, except
// the types named in except.
type impls struct {
	def    impl
	except map[string]impl
}

func (m impls) of(pluginType string) impl {
	if i, ok := m.except[pluginType]; ok {
		return i
	}
	return m.def
}

// pluginTypes are the plugins the tests chain, delegated IPAM included.
var pluginTypes = []string{"bridge", "ptp", "host-local", "static", "loopback", "portmap", "firewall", "tuning", "bandwidth"}

// pluginDir returns a CNI_PATH directory serving each plugin type as m says:
// cnikit's plugin dir, the reference one, or for a mixed chain a directory of
// links to both.
func pluginDir(t *testing.T, m impls) string {
	t.Helper()
	binDir := plugintest.BinDir(t)
	if len(m.except) == 0 {
		if m.def == referenceImpl {
			return plugintest.ReferenceDir
		}
		return binDir
	}
	dir := t.TempDir()
	for _, name := range pluginTypes {
		target := filepath.Join(binDir, "cnikit")
		if m.of(name) == referenceImpl {
			target = filepath.Join(plugintest.ReferenceDir, name)
		}
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// driverKind names a runtime that drives a life.
type driverKind string

const (
	byLibcni  driverKind = "libcni"
	byRuntime driverKind = "cnikit-runtime"
	byCLI     driverKind = "cnikit-cli"
)

// lifeCount numbers the lives of the test process: each gets its own
// subnets, bridge, network name and container ID from its number.
var lifeCount atomic.Int32

// life is one attachment of a chain driven through its whole life by one
// runtime, in a host and a container namespace of its own.
type life struct {
	t       *testing.T
	c       lifeCase
	version string
	impls   impls
	d       driver
	n       int
	dir     string

	host, container *nstest.NS
	att             attachment
	// res is ADD's result.
	res *cni.Result
	// before holds what the case read before ADD, to compare after DEL.
	before map[string]string
	// deleted says the final DEL ran, so the cleanup has nothing to undo.
	deleted bool
}

func newLife(t *testing.T, c lifeCase, version string, m impls, kind driverKind) *life {
	t.Helper()
	l := &life{t: t, c: c, version: version, impls: m, n: int(lifeCount.Add(1)) - 1, dir: t.TempDir(),
		before: map[string]string{}}
	if l.n >= 128*50 {
		t.Fatal("out of subnets")
	}
	l.host, l.container = nstest.New(t), nstest.New(t)
	ifName := c.ifName
	if ifName == "" {
		ifName = "eth0"
	}
	l.att = attachment{containerID: l.containerID(), netns: l.container.Path(), ifName: ifName}
	if c.capabilityArgs != nil {
		l.att.capabilityArgs = c.capabilityArgs(l)
	}
	dir := pluginDir(t, m)
	switch kind {
	case byLibcni:
		l.d = newLibcniDriver([]string{dir}, l.cacheDir())
	case byRuntime:
		l.d = newCnikitDriver([]string{dir}, l.cacheDir())
	case byCLI:
		l.d = newCLIDriver(plugintest.Binary(t), dir, filepath.Join(l.dir, "net.d"), l.cacheDir())
	}
	t.Logf("life %d: network %s, subnet %s.0/24, bridge %s, container %s, %s", l.n, l.network(), l.subnet(),
		l.bridge(), l.containerID(), l.d.name())
	return l
}

// subnet is the first three octets of the life's container subnet, in
// 10.150.0.0/16 and up; outside those of a second one, for a namespace the
// container reaches through the host.
func (l *life) subnet() string  { return fmt.Sprintf("10.%d.%d", 150+l.n/128, 2*(l.n%128)) }
func (l *life) outside() string { return fmt.Sprintf("10.%d.%d", 150+l.n/128, 2*(l.n%128)+1) }
func (l *life) gateway() string { return l.subnet() + ".1" }

// Fixed-width numbers: no life's name is part of another's.
func (l *life) bridge() string      { return fmt.Sprintf("br-io-%04d", l.n) }
func (l *life) network() string     { return fmt.Sprintf("io%04d", l.n) }
func (l *life) containerID() string { return fmt.Sprintf("interop-%04d", l.n) }

func (l *life) cacheDir() string { return filepath.Join(l.dir, "cache") }
func (l *life) ipamDir() string  { return filepath.Join(l.dir, "ipam", l.network()) }

// tuningDir holds the reference tuning plugin's backups; cnikit's keep theirs
// under $CNIKIT_STATE_DIR.
func (l *life) tuningDir() string { return filepath.Join(l.dir, "tuning") }

// plugins renders plugin templates.
func (l *life) plugins(templates []string) []map[string]any {
	ipam := strings.NewReplacer(
		"%HOSTLOCAL%", `{"type":"host-local","dataDir":"%DATA%","ranges":[[{"subnet":"%SUBNET%.0/24"}]]}`,
		"%STATIC%", `{"type":"static","addresses":[{"address":"%SUBNET%.5/24","gateway":"%SUBNET%.1"}]}`)
	vars := strings.NewReplacer("%BRIDGE%", l.bridge(), "%SUBNET%", l.subnet(), "%DATA%", filepath.Join(l.dir, "ipam"))
	var out []map[string]any
	for _, tmpl := range templates {
		text := vars.Replace(ipam.Replace(tmpl))
		var p map[string]any
		if err := json.Unmarshal([]byte(text), &p); err != nil {
			l.t.Fatalf("plugin template %s: %v", text, err)
		}
		if p["type"] == "tuning" && l.impls.of("tuning") == referenceImpl {
			// Its default, /run/cni/tuning, is the machine's.
			p["dataDir"] = l.tuningDir()
		}
		out = append(out, p)
	}
	return out
}

// uses says whether one of plugins, or its ipam section, is of type typ.
func uses(plugins []map[string]any, typ string) bool {
	for _, p := range plugins {
		if ipam, _ := p["ipam"].(map[string]any); p["type"] == typ || ipam != nil && ipam["type"] == typ {
			return true
		}
	}
	return false
}

// conf is the configuration list of plugins.
func (l *life) conf(plugins []map[string]any) []byte {
	data, err := json.Marshal(map[string]any{"cniVersion": l.version, "name": l.network(), "plugins": plugins})
	if err != nil {
		l.t.Fatal(err)
	}
	return data
}

// refusingPlugin returns the type of the chain's last plugin when its
// implementation refuses the life's version on purpose, else "".
func (l *life) refusingPlugin() string {
	last := l.plugins(l.c.plugins[len(l.c.plugins)-1:])[0]["type"].(string)
	min, ok := l.c.minVersion[l.impls.of(last)]
	if !ok {
		return ""
	}
	if atLeast, err := cni.VersionAtLeast(l.version, min); err != nil || atLeast {
		return ""
	}
	return last
}

// do runs op in the host namespace.
func (l *life) do(op func() error) error {
	var err error
	l.host.NS.Do(func() error { err = op(); return nil })
	return err
}

// run drives the life: ADD → CHECK → STATUS → GC → CHECK → DEL → DEL, the
// verbs the version lacks left out as a runtime leaves them out (CHECK needs
// 0.4.0, STATUS and GC 1.1.0), with the case's probes after ADD and after the
// last DEL, and the leftover checks at the end.
func (l *life) run() {
	t := l.t
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	plugins := l.plugins(l.c.plugins)
	conf := l.conf(plugins)
	if l.c.before != nil {
		l.c.before(l)
	}
	t.Cleanup(func() {
		if !l.deleted {
			l.do(func() error { return l.d.del(context.Background(), conf, l.att) })
		}
	})
	var out []byte
	addErr := l.do(func() (err error) { out, err = l.d.add(ctx, conf, l.att); return err })
	if refusing := l.refusingPlugin(); refusing != "" {
		l.assertRefused(ctx, conf, addErr, refusing, plugins[:len(plugins)-1])
		return
	}
	if addErr != nil {
		t.Fatalf("ADD: %v\nconfiguration: %s", addErr, conf)
	}
	res, err := cni.ParseResult(out, l.version)
	if err != nil {
		t.Fatalf("ADD result %s: %v", out, err)
	}
	l.res = res
	l.assertAttached(plugins)

	if cni.SupportsCheck(l.version) {
		l.assertCheck(l.do(func() error { return l.d.check(ctx, conf, l.att) }), plugins)
	}
	if cni.SupportsGCAndStatus(l.version) {
		if err := l.do(func() error { return l.d.status(ctx, conf) }); err != nil {
			t.Fatalf("STATUS: %v", err)
		}
		if err := l.do(func() error { return l.d.gc(ctx, conf, []attachment{l.att}) }); err != nil {
			t.Fatalf("GC: %v", err)
		}
		if err := l.do(func() error { return l.d.check(ctx, conf, l.att) }); err != nil {
			t.Fatalf("CHECK after a GC that keeps the attachment: %v", err)
		}
	}
	for i := 1; i <= 2; i++ {
		if err := l.do(func() error { return l.d.del(ctx, conf, l.att) }); err != nil {
			t.Fatalf("DEL %d: %v", i, err)
		}
	}
	l.deleted = true
	if l.c.after != nil {
		l.c.after(l)
	}
	l.assertLeftovers(plugins)
}

// referenceCheckBugs are the reference plugins' (v1.1.1) CHECK failures on
// attachments their own ADD made, by a text of the error: CHECK of an
// IPv4-only container's port mappings looks for the IPv6 chain ADD never made
// (plugins#819, fixed after v1.1.1), and tuning's CHECK reads a sysctl key
// without putting the interface name in place of IFNAME, as ADD does.
var referenceCheckBugs = map[string]string{
	"portmap": "could not check ipv6 dnat: chain CNI-DN-",
	"tuning":  "/proc/sys/net/ipv4/conf/IFNAME/",
}

// assertCheck checks CHECK's outcome: success, unless a reference plugin of
// the chain fails it by one of its known bugs; then it must fail that way.
func (l *life) assertCheck(err error, plugins []map[string]any) {
	l.t.Helper()
	var bugs []string
	for _, p := range plugins {
		typ := p["type"].(string)
		bug, ok := referenceCheckBugs[typ]
		if !ok || l.impls.of(typ) != referenceImpl {
			continue
		}
		if typ == "tuning" && !strings.Contains(fmt.Sprint(p["sysctl"]), "IFNAME") {
			continue // the bug needs a key with IFNAME
		}
		bugs = append(bugs, bug)
	}
	switch {
	case err == nil && len(bugs) > 0:
		l.t.Errorf("CHECK succeeded; want the reference plugins' known failure (%s)", strings.Join(bugs, " or "))
	case err != nil && len(bugs) == 0:
		l.t.Fatalf("CHECK: %v", err)
	case err != nil:
		for _, bug := range bugs {
			if strings.Contains(err.Error(), bug) {
				l.t.Logf("CHECK fails by a known reference bug: %v", err)
				return
			}
		}
		l.t.Fatalf("CHECK: %v", err)
	}
}

// assertRefused checks that the plugin refused the version with code 1, for
// ADD and for DEL alike, so that no runtime can remove the attachment with
// this list; a list without it removes what the plugins before it made.
func (l *life) assertRefused(ctx context.Context, conf []byte, addErr error, pluginType string, others []map[string]any) {
	t := l.t
	wantRefusal := func(verb string, err error) {
		t.Helper()
		if codeOf(err) != cni.CodeIncompatibleVersion || !strings.Contains(err.Error(), pluginType) {
			t.Fatalf("%s: want %s's refusal of version %s (code 1), got %v", verb, pluginType, l.version, err)
		}
		t.Logf("%s refused as it should: %v", verb, err)
	}
	wantRefusal("ADD", addErr)
	wantRefusal("DEL", l.do(func() error { return l.d.del(ctx, conf, l.att) }))
	if len(others) > 0 {
		rest := l.conf(others)
		for i := 1; i <= 2; i++ {
			if err := l.do(func() error { return l.d.del(ctx, rest, l.att) }); err != nil {
				t.Fatalf("DEL %d without %s: %v", i, pluginType, err)
			}
		}
	}
	l.deleted = true
	l.assertLeftovers(others)
}

// containerAddr is the address ADD gave the container interface, or nil.
func (l *life) containerAddr() net.IP {
	if l.res == nil || len(l.res.IPs) == 0 {
		return nil
	}
	return l.res.IPs[0].Address.IP
}

// assertAttached checks the running container: its address in the life's
// subnet answers and reaches the gateway, the result is cached, host-local
// holds the reservation; then the case's own probe.
func (l *life) assertAttached(plugins []map[string]any) {
	t := l.t
	if l.att.ifName != "lo" {
		ip := l.containerAddr()
		if ip == nil || !strings.HasPrefix(ip.String(), l.subnet()+".") {
			t.Fatalf("ADD gave no address in %s.0/24: %+v", l.subnet(), l.res.IPs)
		}
		if err := l.container.Ping(l.gateway()); err != nil {
			t.Fatal(err)
		}
		if uses(plugins, "host-local") {
			if _, err := os.Stat(filepath.Join(l.ipamDir(), ip.String())); err != nil {
				t.Errorf("no host-local reservation for the running container: %v", err)
			}
		}
	}
	if results, _ := os.ReadDir(filepath.Join(l.cacheDir(), "results")); len(results) != 1 {
		t.Errorf("%d result cache entries while the container runs, want 1", len(results))
	}
	if l.c.attached != nil {
		l.c.attached(l)
	}
}

// assertLeftovers checks the host after the last DEL of plugins: no veth,
// IFB, nftables element, rule naming the container, IPAM reservation, cache
// entry, UDP conntrack entry or plugin state file; exactly the links and
// iptables rules the plugins leave by design.
func (l *life) assertLeftovers(plugins []map[string]any) {
	t := l.t
	dump := assertNothingLeft(t, l.host, l.containerAddr(), l.ipamDir(), l.cacheDir())

	var wantLinks, wantRules []string
	for _, p := range plugins {
		typ := p["type"].(string)
		if typ == "bridge" {
			// Both implementations keep the bridge and its gateway address.
			link := "bridge " + p["bridge"].(string)
			if p["isGateway"] == true || p["isDefaultGateway"] == true {
				link += " " + l.gateway() + "/24"
			}
			wantLinks = append(wantLinks, link)
		}
		if l.impls.of(typ) == referenceImpl {
			wantRules = append(wantRules, referenceLeaves[typ]...)
		}
	}
	slices.Sort(wantLinks)
	slices.Sort(wantRules)
	wantRules = slices.Compact(wantRules)
	if got := hostLinks(t, l.host); !slices.Equal(got, wantLinks) {
		t.Errorf("host links after DEL:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(wantLinks, "\n  "))
	}
	if got := iptablesRules(dump); !slices.Equal(got, wantRules) {
		t.Errorf("iptables after DEL:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(wantRules, "\n  "))
	}
	if left := stateNaming(t, rundir.Root(), l.network(), l.containerID()); len(left) > 0 {
		t.Errorf("plugin state left under %s: %v", rundir.Root(), left)
	}
	if left, _ := os.ReadDir(l.tuningDir()); len(left) > 0 {
		t.Errorf("reference tuning backups left in %s: %v", l.tuningDir(), left)
	}
}

// referenceLeaves lists the iptables rules and chains each reference plugin
// (v1.1.1) leaves in the host after the DEL of its last container, by design
// (plugins-reference.md): portmap's shared NAT chains and the jumps to them,
// the firewall's CNI-FORWARD and CNI-ADMIN chains and their jumps. bridge and
// ptp remove their masquerade chains; bandwidth, tuning, loopback and the
// IPAM plugins write no iptables rules.
var referenceLeaves = map[string][]string{
	"portmap": {
		"ip4 nat -N CNI-HOSTPORT-DNAT",
		"ip4 nat -N CNI-HOSTPORT-MASQ",
		"ip4 nat -N CNI-HOSTPORT-SETMARK",
		"ip4 nat -A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT",
		"ip4 nat -A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT",
		`ip4 nat -A POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ`,
		"ip4 nat -A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE",
		`ip4 nat -A CNI-HOSTPORT-SETMARK -m comment --comment "CNI portfwd masquerade mark" -j MARK --set-xmark 0x2000/0x2000`,
	},
	"firewall": {
		"ip4 filter -N CNI-ADMIN",
		"ip4 filter -N CNI-FORWARD",
		`ip4 filter -A FORWARD -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD`,
		`ip4 filter -A CNI-FORWARD -m comment --comment "CNI firewall plugin admin overrides" -j CNI-ADMIN`,
	},
}

// cnikitVersions are the versions a current runtime sends; cnikit's plugins
// take every one.
var cnikitVersions = []string{"0.3.1", "0.4.0", "1.0.0", "1.1.0"}

// referenceVersions are those the reference plugins of Debian 12 (v1.1.1)
// take: up to 1.0.0.
var referenceVersions = []string{"0.3.1", "0.4.0", "1.0.0"}

// The reference runtime library (libcni) drives every cnikit plugin through
// its whole life, for every spec version a current runtime sends.
func TestLibcniDrivesCnikitPlugins(t *testing.T) {
	plugintest.BinDir(t)
	for _, c := range lifeCases {
		for _, version := range append(slices.Clone(cnikitVersions), c.extraVersions...) {
			t.Run(version+"/"+c.name, func(t *testing.T) {
				t.Parallel()
				newLife(t, c, version, impls{def: cnikitImpl}, byLibcni).run()
			})
		}
	}
}

// cliDrives says whether the CLI drives case c at version. The CLI is the
// runtime library (driven at every version) behind flags: it drives every
// case at 1.0.0, the first case at every version (it prints each version's
// result format), and every version a plugin refuses (it reports the
// plugin's code).
func cliDrives(c lifeCase, version string) bool {
	if version == "1.0.0" || c.name == lifeCases[0].name {
		return true
	}
	min, ok := c.minVersion[referenceImpl]
	atLeast, err := cni.VersionAtLeast(version, min)
	return ok && err == nil && !atLeast
}

// cnikit's runtime library and its command-line runtime drive the reference
// plugin binaries (Debian 12's v1.1.1) through the same lives.
func TestCnikitDrivesReferencePlugins(t *testing.T) {
	plugintest.RequireReference(t)
	plugintest.BinDir(t)
	for _, kind := range []driverKind{byRuntime, byCLI} {
		for _, c := range lifeCases {
			for _, version := range append(slices.Clone(referenceVersions), c.extraVersions...) {
				if kind == byCLI && !cliDrives(c, version) {
					continue
				}
				t.Run(string(kind)+"/"+version+"/"+c.name, func(t *testing.T) {
					t.Parallel()
					newLife(t, c, version, impls{def: referenceImpl}, kind).run()
				})
			}
		}
	}
	// They stop at 1.0.0: a 1.1.0 configuration gets their "incompatible CNI
	// versions" error, code 1, before anything is made.
	t.Run("1.1.0 is refused with code 1", func(t *testing.T) {
		t.Parallel()
		l := newLife(t, lifeCases[0], "1.1.0", impls{def: referenceImpl}, byRuntime)
		err := l.do(func() error {
			_, err := l.d.add(context.Background(), l.conf(l.plugins(l.c.plugins)), l.att)
			return err
		})
		if codeOf(err) != cni.CodeIncompatibleVersion {
			t.Fatalf("want code 1, got %v", err)
		}
		if links := hostLinks(t, l.host); len(links) != 0 {
			t.Errorf("a refused ADD made links: %v", links)
		}
	})
}
