package interop

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cnikit/cnikit/internal/nstest"
	"github.com/cnikit/cnikit/internal/plugintest"
)

// dockerConf is the network `cnikit attach` puts Docker's containers on.
const dockerConf = `{"cniVersion":"1.1.0","name":"cnikit-dock","plugins":[
  {"type":"bridge","bridge":"cnikit-dock0","isGateway":true,"ipMasq":true,
   "ipam":{"type":"host-local","ranges":[[{"subnet":"10.132.0.0/24","gateway":"10.132.0.1"}]],
           "routes":[{"dst":"0.0.0.0/0"}]}},
  {"type":"portmap","capabilities":{"portMappings":true}}]}`

// The Kubernetes way with Docker Engine 20.10, which does not speak CNI:
// containers started with --network none are put on a cnikit network
// (bridge and portmap) by `cnikit attach --pid`; each gets eth0 with its
// address, they ping the gateway and each other, and a port published with
// attach --publish answers from the host. `cnikit detach` removes eth0, and after
// `docker rm` no veth, nftables element, IPAM reservation, cache entry or
// pinned namespace is left.
func TestDockerAttach(t *testing.T) {
	requireCommands(t, "dockerd", "docker", "containerd", "runc")
	binDir := plugintest.BinDir(t)
	img := busybox(t)
	host := nstest.New(t)
	dir := t.TempDir()
	confDir, cniDir := mkdir(t, dir, "net.d"), mkdir(t, dir, "cni")
	dataDir, etcDir := mkdir(t, dir, "docker"), mkdir(t, dir, "etc")
	netnsDir := filepath.Join(dir, "netns")
	writeFile(t, filepath.Join(confDir, "10-cnikit-dock.conflist"), dockerConf)
	cgroupParent := fmt.Sprintf("/cnikit-interop-docker-%d", os.Getpid())
	t.Cleanup(func() { removeCgroup(t, cgroupParent) })

	sb := newSandbox(t, host, []sandboxMount{
		{Target: "/run"},                             // dockerd's exec root and socket, containerd's shim sockets
		{Target: "/etc/docker", Source: etcDir},      // dockerd writes its key.json there
		{Target: "/var/lib/docker", Source: dataDir}, // images and containers
		{Target: "/etc/cni/net.d", Source: confDir},
		{Target: "/var/lib/cni", Source: cniDir},
		{Target: "/opt/containerd"}, // containerd's "opt" plugin makes it
	})
	dockerd := sb.startDaemon(nil, "dockerd", "--iptables=false", "--ip6tables=false", "--bridge=none",
		"--cgroup-parent", cgroupParent, "--log-level", "warn")
	docker := func(args ...string) string {
		t.Helper()
		out, err := sb.run(nil, "docker", args...)
		if err != nil {
			t.Fatalf("docker %s: %v\n%s\ndockerd:\n%s", strings.Join(args, " "), err, out, dockerd.log())
		}
		return strings.TrimSpace(out)
	}
	if err := waitFor(60*time.Second, func() error { _, err := sb.run(nil, "docker", "version"); return err }); err != nil {
		t.Fatalf("dockerd did not answer: %v\n%s", err, dockerd.log())
	}
	const imageName = "cnikit/busybox:test"
	docker("import", "--change", `CMD ["/bin/sh"]`, "--change", "ENV PATH=/bin", img.rootfsTar, imageName)

	cnikit := func(args ...string) string {
		t.Helper()
		full := append([]string{"--conf-dir", "/etc/cni/net.d", "--cache-dir", "/var/lib/cni",
			"--netns-dir", netnsDir, "--cni-path", binDir}, args...)
		out, err := sb.run(nil, filepath.Join(binDir, "cnikit"), full...)
		if err != nil {
			t.Fatalf("cnikit %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	names := []string{"cnikit-c1", "cnikit-c2"}
	pids := map[string]string{}
	for i, name := range names {
		docker("run", "-d", "--network", "none", "--ulimit", "nofile=20000:20000", "--name", name, imageName,
			"httpd", "-f", "-p", "80", "-h", "/www")
		pids[name] = docker("inspect", "-f", "{{.State.Pid}}", name)
		attach := []string{"attach", "--pid", pids[name], "--net", "cnikit-dock"}
		if i == 0 {
			// A host port, as a kubelet passes a pod's hostPort.
			attach = append(attach, "--publish", "8081:80")
		}
		cnikit(attach...)
	}
	t.Cleanup(func() { sb.run(nil, "docker", "rm", "-f", names[0], names[1]) })

	ips := map[string]net.IP{}
	for _, name := range names {
		ips[name] = inetOf(t, docker("exec", name, "ip", "-4", "-o", "addr", "show", "eth0"), "10.132.0.")
	}
	if ips[names[0]].Equal(ips[names[1]]) {
		t.Fatalf("both containers got %s", ips[names[0]])
	}
	for _, p := range []struct{ from, to string }{
		{names[0], "10.132.0.1"}, {names[1], "10.132.0.1"},
		{names[0], ips[names[1]].String()}, {names[1], ips[names[0]].String()},
	} {
		if out, err := sb.run(nil, "docker", "exec", p.from, "ping", "-c", "1", "-W", "2", p.to); err != nil {
			t.Errorf("ping %s from %s: %v\n%s", p.to, p.from, err, out)
		}
	}

	// httpd may not listen yet when docker run returns.
	var page string
	err := waitFor(10*time.Second, func() (err error) { page, err = httpGet(host, "10.132.0.1:8081", "/index.html"); return err })
	if err != nil || page != busyboxPage {
		t.Errorf("the published port 8081 of %s from the host: %q, %v", names[0], page, err)
	}

	ipamDir := filepath.Join(cniDir, "networks", "cnikit-dock")
	for _, name := range names {
		assertAttached(t, host, ips[name], ipamDir, cniDir)
	}

	for _, name := range names {
		cnikit("detach", "--pid", pids[name])
		if out, err := sb.run(nil, "docker", "exec", name, "ip", "link", "show", "eth0"); err == nil {
			t.Errorf("eth0 of %s is still there after detach:\n%s", name, out)
		}
	}
	docker("rm", "-f", names[0], names[1])
	for _, name := range names {
		assertNothingLeft(t, host, ips[name], ipamDir, cniDir)
	}
	if pins, _ := os.ReadDir(netnsDir); len(pins) != 0 {
		t.Errorf("%d pinned namespaces left in %s", len(pins), netnsDir)
	}
	if left := docker("ps", "-aq"); left != "" {
		t.Errorf("containers left: %s", left)
	}
}
