package interop

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cnikit/cnikit/internal/nstest"
	"github.com/cnikit/cnikit/internal/plugintest"
)

// podmanSandbox is Podman 4.3 with its CNI backend in a sandbox: its
// configuration, image store, CNI conf dir and CNI state are the test's own.
type podmanSandbox struct {
	*sandbox
	env        []string
	netConfDir string // where `podman network create` writes conflists
	cniDir     string // /var/lib/cni in the sandbox: libcni's cache, host-local's state
	cgroup     string // parent cgroup of the containers
}

// newPodmanSandbox configures Podman to run its CNI networks with the plugins
// in pluginDir.
func newPodmanSandbox(t *testing.T, host *nstest.NS, pluginDir string) *podmanSandbox {
	t.Helper()
	dir := t.TempDir()
	netConfDir, cniDir := mkdir(t, dir, "net.d"), mkdir(t, dir, "cni")
	storageDir, tmpDir := mkdir(t, dir, "storage"), mkdir(t, dir, "tmp")
	p := &podmanSandbox{netConfDir: netConfDir, cniDir: cniDir, cgroup: fmt.Sprintf("/cnikit-interop-podman-%d", os.Getpid())}
	t.Cleanup(func() { removeCgroup(t, p.cgroup) })
	// The machine's limits and cgroup layout need the first settings
	// (docs/real-clients.md); the rest keeps every path in the test's dirs.
	containersConf := fmt.Sprintf(`[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
log_driver = "k8s-file"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
image_copy_tmp_dir = %q
[network]
network_backend = "cni"
cni_plugin_dirs = [%q]
network_config_dir = %q
`, tmpDir, pluginDir, netConfDir)
	storageConf := fmt.Sprintf("[storage]\ndriver = \"overlay\"\ngraphroot = %q\nrunroot = \"/run/containers/storage\"\n", storageDir)
	writeFile(t, filepath.Join(dir, "containers.conf"), containersConf)
	writeFile(t, filepath.Join(dir, "storage.conf"), storageConf)
	p.env = []string{
		"CONTAINERS_CONF=" + filepath.Join(dir, "containers.conf"),
		"CONTAINERS_STORAGE_CONF=" + filepath.Join(dir, "storage.conf"),
	}
	p.sandbox = newSandbox(t, host, []sandboxMount{
		{Target: "/run"}, // Podman's run root, tmp dir and the containers' netns files
		// Podman is told to use netConfDir; hide the machine's conf dir anyway.
		{Target: "/etc/cni/net.d"},
		{Target: "/var/lib/cni", Source: cniDir},
		{Target: "/var/tmp"}, // image imports stage files there
	})
	return p
}

// podman runs podman in the sandbox and fails the test if it fails.
func (p *podmanSandbox) podman(args ...string) string {
	p.t.Helper()
	out, err := p.run(p.env, "podman", args...)
	if err != nil {
		p.t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// tryPodman runs podman in the sandbox and returns its output and error.
func (p *podmanSandbox) tryPodman(args ...string) (string, error) {
	return p.run(p.env, "podman", args...)
}

// runArgs starts the arguments of a `podman run` on network.
func (p *podmanSandbox) runArgs(network string) []string {
	return []string{"run", "--network", network, "--cgroup-parent", p.cgroup}
}

// podmanImage is the busybox image's name in Podman's store.
const podmanImage = "localhost/cnikit-busybox:test"

// Podman 4.3 with its CNI backend runs containers on a network it created
// itself (`podman network create`: bridge, portmap, firewall and tuning, all
// cnikit's): the container has its address and default route and pings the
// gateway, a port published with -p answers from the host, a static --ip is
// honoured, and after `podman rm` no veth, nftables element or rule, IPAM
// reservation or cache entry is left. The plugins' log shows what Podman
// sends, as docs/real-clients.md describes it.
func TestPodmanRealRuns(t *testing.T) {
	requireCommands(t, "podman", "runc", "conmon")
	binDir := plugintest.BinDir(t)
	chain := []string{"bridge", "portmap", "firewall", "tuning"}
	var missing []string
	for _, name := range chain {
		if _, err := os.Stat(filepath.Join(binDir, name)); err != nil {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("Podman's standard chain needs cnikit plugins %v that cmd/cnikit does not register", missing)
	}
	img := busybox(t)
	host := nstest.New(t)
	plugins := newLoggedPluginDir(t, t.TempDir(), binDir, chain...)
	p := newPodmanSandbox(t, host, plugins.dir)

	if backend := strings.TrimSpace(p.podman("info", "--format", "{{.Host.NetworkBackend}}")); backend != "cni" {
		t.Fatalf("podman's network backend is %q, want cni", backend)
	}
	p.podman("import", "--change", `CMD ["/bin/sh"]`, "--change", "ENV PATH=/bin", img.rootfsTar, podmanImage)
	const network, gateway = "cnikit-pod", "10.130.0.1"
	p.podman("network", "create", "--subnet", "10.130.0.0/24", "--gateway", gateway, network)
	assertPodmanChain(t, filepath.Join(p.netConfDir, network+".conflist"), chain)
	t.Cleanup(func() { p.tryPodman("rm", "--all", "--force", "--time", "0") })

	var containerIPs []net.IP
	t.Run("address, route and gateway", func(t *testing.T) {
		plugins.reset(t)
		out := p.podman(append(p.runArgs(network), "--rm", "--name", "cnikit-ping", "--cap-add", "NET_RAW", podmanImage,
			"sh", "-c", "ip -4 -o addr show eth0 && ip -4 route && ping -c 1 -W 2 "+gateway)...)
		containerIPs = append(containerIPs, inetOf(t, out, "10.130.0."))
		if !strings.Contains(out, "default via "+gateway+" dev eth0") {
			t.Errorf("no default route through the gateway:\n%s", out)
		}
		if !strings.Contains(out, "1 packets received") {
			t.Errorf("the gateway did not answer:\n%s", out)
		}
		assertPodmanCalls(t, plugins.calls(t), chain, "cnikit-ping", "")
	})

	t.Run("published port", func(t *testing.T) {
		plugins.reset(t)
		p.podman(append(p.runArgs(network), "-d", "--name", "cnikit-web", "-p", "8080:80", podmanImage,
			"httpd", "-f", "-p", "80", "-h", "/www")...)
		ip := p.podman("exec", "cnikit-web", "ip", "-4", "-o", "addr", "show", "eth0")
		containerIPs = append(containerIPs, inetOf(t, ip, "10.130.0."))
		// httpd may not listen yet when podman returns.
		var body string
		err := waitFor(10*time.Second, func() (err error) { body, err = httpGet(host, gateway+":8080", "/index.html"); return err })
		if err != nil || body != busyboxPage {
			t.Errorf("the published port 8080 from the host: %q, %v", body, err)
		}
		assertAttached(t, host, containerIPs[len(containerIPs)-1], filepath.Join(p.cniDir, "networks", network), p.cniDir)
		p.podman("rm", "--force", "--time", "0", "cnikit-web")
		calls := plugins.calls(t)
		assertPodmanCalls(t, calls, chain, "cnikit-web", "")
		for _, c := range calls {
			if c.command() == "ADD" && strings.Contains(c.stdin, `"portMappings"`) != (c.plugin == "portmap") {
				t.Errorf("%s's ADD config: portMappings must go to portmap alone:\n%s", c.plugin, c.stdin)
			}
		}
	})

	t.Run("static --ip", func(t *testing.T) {
		plugins.reset(t)
		const static = "10.130.0.50"
		out := p.podman(append(p.runArgs(network), "--rm", "--name", "cnikit-static", "--ip", static, podmanImage,
			"ip", "-4", "-o", "addr", "show", "eth0")...)
		if got := inetOf(t, out, "10.130.0."); got.String() != static {
			t.Errorf("the container got %s, want %s", got, static)
		}
		containerIPs = append(containerIPs, net.ParseIP(static))
		assertPodmanCalls(t, plugins.calls(t), chain, "cnikit-static", ";IP="+static)
	})

	if left := strings.TrimSpace(p.podman("ps", "--all", "--quiet")); left != "" {
		t.Errorf("containers left: %s", left)
	}
	for _, ip := range containerIPs {
		assertNothingLeft(t, host, ip, filepath.Join(p.cniDir, "networks", network), p.cniDir)
	}
	bridge := bridgeOf(t, filepath.Join(p.netConfDir, network+".conflist"))
	p.podman("network", "rm", network)
	if _, err := host.Handle().LinkByName(bridge); err == nil {
		t.Errorf("podman network rm left the bridge %s", bridge)
	}
	if _, err := os.Stat(filepath.Join(p.netConfDir, network+".conflist")); !os.IsNotExist(err) {
		t.Errorf("podman network rm left the conflist: %v", err)
	}
}

// assertPodmanChain checks the conflist Podman wrote has the plugins of its
// standard chain, in order: the test is about Podman's own configuration.
func assertPodmanChain(t *testing.T, path string, chain []string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Plugins []struct {
			Type string `json:"type"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var types []string
	for _, p := range list.Plugins {
		types = append(types, p.Type)
	}
	if strings.Join(types, ",") != strings.Join(chain, ",") {
		t.Fatalf("podman network create wrote plugins %v, want %v:\n%s", types, chain, raw)
	}
}

// bridgeOf returns the bridge name of a conflist's first plugin.
func bridgeOf(t *testing.T, path string) string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Plugins []struct {
			Bridge string `json:"bridge"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(raw, &list); err != nil || len(list.Plugins) == 0 || list.Plugins[0].Bridge == "" {
		t.Fatalf("%s: no bridge name (%v):\n%s", path, err, raw)
	}
	return list.Plugins[0].Bridge
}

// assertPodmanCalls checks the calls of one `podman run` and `podman rm`
// against what docs/real-clients.md says Podman sends: VERSION to a plugin
// before its ADD and before its DEL, ADD down the chain with
// CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAME=<name> (plus wantArgs), and DEL to
// every plugin with a live netns and the cached result as prevResult.
func assertPodmanCalls(t *testing.T, calls []pluginCall, chain []string, name, wantArgs string) {
	t.Helper()
	t.Logf("calls:\n%s", describeCalls(calls))
	var adds, dels []string
	versioned := map[string]bool{}
	for _, c := range calls {
		switch c.command() {
		case "VERSION":
			versioned[c.plugin] = true
		case "ADD", "DEL":
			if !versioned[c.plugin] {
				t.Errorf("%s of %s came without a VERSION before it", c.command(), c.plugin)
			}
			versioned[c.plugin] = false
			if c.env["CNI_NETNS"] == "" {
				t.Errorf("%s of %s without a netns", c.command(), c.plugin)
			}
			wantCNIArgs := "IgnoreUnknown=1;K8S_POD_NAME=" + name + wantArgs
			if c.env["CNI_ARGS"] != wantCNIArgs {
				t.Errorf("%s of %s: CNI_ARGS=%q, want %q", c.command(), c.plugin, c.env["CNI_ARGS"], wantCNIArgs)
			}
			if c.command() == "ADD" {
				adds = append(adds, c.plugin)
			} else {
				dels = append(dels, c.plugin)
				if !strings.Contains(c.stdin, `"prevResult"`) {
					t.Errorf("DEL of %s without prevResult:\n%s", c.plugin, c.stdin)
				}
			}
		}
	}
	reversed := make([]string, len(chain))
	for i, name := range chain {
		reversed[len(chain)-1-i] = name
	}
	if strings.Join(adds, ",") != strings.Join(chain, ",") || strings.Join(dels, ",") != strings.Join(reversed, ",") {
		t.Errorf("want ADD %v and DEL %v, got:\n%s", chain, reversed, describeCalls(calls))
	}
}

// httpGet fetches url's path with HTTP/1.0 from inside the host namespace.
// The connection is made on the calling goroutine, which is on the
// namespace's thread (net/http would dial from goroutines of its own).
func httpGet(host *nstest.NS, addr, path string) (string, error) {
	var response []byte
	err := host.NS.Do(func() error {
		c, err := net.DialTimeout("tcp4", addr, 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := fmt.Fprintf(c, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", path, addr); err != nil {
			return err
		}
		response, err = io.ReadAll(c)
		return err
	})
	if err != nil {
		return "", err
	}
	head, body, _ := strings.Cut(string(response), "\r\n\r\n")
	if status, _, _ := strings.Cut(head, "\r\n"); !strings.Contains(status, " 200 ") {
		return "", fmt.Errorf("GET %s from %s: %q", path, addr, status)
	}
	return body, nil
}
