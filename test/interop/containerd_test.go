package interop

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cnikit/cnikit/internal/nstest"
	"github.com/cnikit/cnikit/internal/plugintest"
)

// ctrConf is the network `ctr run --cni` finds: the only file in its
// /etc/cni/net.d. host-local keeps its state in the default
// /var/lib/cni/networks, which the sandbox puts in the test's dir.
const ctrConf = `{"cniVersion":"1.0.0","name":"cnikit-ctr","plugins":[
  {"type":"bridge","bridge":"cnikit-ctr0","isGateway":true,"ipMasq":true,"hairpinMode":true,
   "ipam":{"type":"host-local","ranges":[[{"subnet":"10.131.0.0/24","gateway":"10.131.0.1"}]],
           "routes":[{"dst":"0.0.0.0/0"}]}}]}`

// containerd 1.6's `ctr run --cni` runs a container on cnikit's bridge chain:
// the container gets its address and default route and reaches the gateway,
// and while it runs its masquerade element, IPAM reservation and cache entry
// are on the host.
// ctr sends the DEL after the task has exited, with CNI_NETNS empty (the
// logging wrapper in front of bridge proves it); cnikit still removes
// everything: no veth, nftables element, IPAM reservation or cache entry is
// left.
func TestContainerdRunCNI(t *testing.T) {
	requireCommands(t, "containerd", "ctr", "runc")
	binDir := plugintest.BinDir(t)
	img := busybox(t)
	host := nstest.New(t)
	dir := t.TempDir()
	confDir, cniDir := mkdir(t, dir, "net.d"), mkdir(t, dir, "cni")
	dataDir, etcDir := mkdir(t, dir, "containerd"), mkdir(t, dir, "etc")
	plugins := newLoggedPluginDir(t, dir, binDir, "bridge")
	writeFile(t, filepath.Join(confDir, "10-cnikit-ctr.conflist"), ctrConf)
	// No CRI plugin: it would load CNI configs of its own.
	writeFile(t, filepath.Join(etcDir, "config.toml"), "version = 2\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n")

	sb := newSandbox(t, host, []sandboxMount{
		{Target: "/run"}, // containerd's state, socket and shim sockets
		{Target: "/etc/containerd", Source: etcDir},
		{Target: "/var/lib/containerd", Source: dataDir},
		{Target: "/etc/cni/net.d", Source: confDir},
		{Target: "/opt/cni/bin", Source: plugins.dir},
		// Debian's ctr also searches /usr/lib/cni: hide the reference plugins.
		{Target: "/usr/lib/cni"},
		{Target: "/var/lib/cni", Source: cniDir},
		{Target: "/opt/containerd"}, // containerd's "opt" plugin makes it
	})
	containerd := sb.startDaemon(nil, "containerd")
	if err := waitFor(30*time.Second, func() error { _, err := sb.run(nil, "ctr", "version"); return err }); err != nil {
		t.Fatalf("containerd did not answer: %v\n%s", err, containerd.log())
	}
	sb.mustRun(nil, "ctr", "images", "import", img.ociArchive)

	// A cgroup of the test's own, which runc removes with the container.
	cgroup := fmt.Sprintf("/cnikit-interop-ctr-%d", os.Getpid())
	t.Cleanup(func() { removeCgroup(t, cgroup) })
	// The container reports, says it is ready through a shared directory, and
	// runs until the test has looked at the host and tells it to stop.
	shared := mkdir(t, dir, "shared")
	script := "{ ip -4 -o addr show eth0 && ip -4 route && ping -c 1 -W 2 10.131.0.1; } >/shared/out 2>&1; " +
		"touch /shared/ready; while [ ! -e /shared/stop ]; do sleep 0.1; done"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ctr := sb.command(ctx, nil, "ctr", "run", "--cni", "--rm", "--cgroup", cgroup,
		"--mount", "type=bind,src="+shared+",dst=/shared,options=rbind:rw", ociImageName, "cnikit-ctr1", "sh", "-c", script)
	var ctrOut bytes.Buffer
	ctr.Stdout, ctr.Stderr = &ctrOut, &ctrOut
	if err := ctr.Start(); err != nil {
		t.Fatal(err)
	}
	ctrDone := make(chan error, 1)
	go func() { ctrDone <- ctr.Wait() }()
	readyFile := filepath.Join(shared, "ready")
	for ready := false; !ready; {
		select {
		case err := <-ctrDone:
			t.Fatalf("ctr run --cni ended before the container was ready: %v\n%s\ncalls:\n%s\ncontainerd:\n%s",
				err, ctrOut.String(), describeCalls(plugins.calls(t)), containerd.log())
		case <-time.After(100 * time.Millisecond):
			_, err := os.Stat(readyFile)
			ready = err == nil
		}
	}
	outBytes, _ := os.ReadFile(filepath.Join(shared, "out"))
	out := string(outBytes)
	containerIP := inetOf(t, out, "10.131.0.")
	if !strings.Contains(out, "default via 10.131.0.1 dev eth0") {
		t.Errorf("no default route through the gateway in the container:\n%s", out)
	}
	if !strings.Contains(out, "1 packets received") {
		t.Errorf("the gateway did not answer the container's ping:\n%s", out)
	}
	ipamDir := filepath.Join(cniDir, "networks", "cnikit-ctr")
	assertAttached(t, host, containerIP, ipamDir, cniDir)
	writeFile(t, filepath.Join(shared, "stop"), "")
	if err := <-ctrDone; err != nil {
		t.Fatalf("ctr run --cni: %v\n%s\ncontainerd:\n%s", err, ctrOut.String(), containerd.log())
	}

	calls := plugins.calls(t)
	t.Logf("container:\n%s\ncalls:\n%s", out, describeCalls(calls))
	var adds, dels []pluginCall
	for _, c := range calls {
		switch c.command() {
		case "ADD":
			adds = append(adds, c)
		case "DEL":
			dels = append(dels, c)
		}
	}
	if len(adds) != 1 || len(dels) != 1 {
		t.Fatalf("want one ADD and one DEL of bridge, got:\n%s", describeCalls(calls))
	}
	if !regexp.MustCompile(`^/proc/\d+/ns/net$`).MatchString(adds[0].env["CNI_NETNS"]) {
		t.Errorf("ADD's CNI_NETNS is %q, want the task's /proc/PID/ns/net", adds[0].env["CNI_NETNS"])
	}
	if netnsPath, ok := dels[0].env["CNI_NETNS"]; !ok || netnsPath != "" {
		t.Errorf("DEL's CNI_NETNS is %q (set: %v), want it set and empty: the case this test is for", netnsPath, ok)
	}
	assertNothingLeft(t, host, containerIP, ipamDir, cniDir)
	if out, _ := sb.run(nil, "ctr", "containers", "ls", "-q"); strings.TrimSpace(out) != "" {
		t.Errorf("containers left: %s", out)
	}
	if left := cgroupDirs(cgroup); len(left) > 0 {
		t.Errorf("cgroups left: %v", left)
	}
}

// requireCommands skips the test when a client is not installed
// (scripts/setup.sh installs them all).
func requireCommands(t *testing.T, names ...string) {
	t.Helper()
	for _, name := range names {
		found := false
		for _, dir := range filepath.SplitList(sandboxPath) {
			if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
				found = true
				break
			}
		}
		if !found {
			t.Skipf("%s is not installed (scripts/setup.sh installs it)", name)
		}
	}
}

// mkdir makes the directory parent/name and returns its path.
func mkdir(t *testing.T, parent, name string) string {
	t.Helper()
	path := filepath.Join(parent, name)
	if err := os.MkdirAll(path, 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// inetOf finds the IPv4 address with the given prefix in the output of
// `ip -4 -o addr show`.
func inetOf(t *testing.T, out, prefix string) net.IP {
	t.Helper()
	m := regexp.MustCompile(`inet (` + regexp.QuoteMeta(prefix) + `\d+)/\d+`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no address in %s0/24 in:\n%s", prefix, out)
	}
	return net.ParseIP(m[1])
}
