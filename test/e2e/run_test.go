package e2e

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cnikit/cnikit/internal/nstest"
	"github.com/cnikit/cnikit/netns"
)

// The built-in default network, exercised through `cnikit run`: a container
// pings the gateway and a second container on the same bridge, and everything
// is gone when the commands exit.
func TestRunTwoContainersOnDefaultNetwork(t *testing.T) {
	h := newHarness(t)
	// The first container waits in the background until the second has pinged it.
	first := h.start(h.command(nil, append(h.globalArgs(), "run", "--id", "first", "--", "sleep", "60")...))
	var firstIP string
	waitFor(t, "first container attached", func() bool {
		for _, a := range h.attachments() {
			if a["containerID"] == "first" {
				ips := a["ips"].([]any)
				if len(ips) > 0 {
					firstIP = strings.Split(ips[0].(string), "/")[0]
					return true
				}
			}
		}
		return false
	})
	r := h.cnikit("run", "--id", "second", "--", "sh", "-c",
		"ip -4 -o addr show eth0 && ip route && ping -c 1 -W 2 10.77.0.1 && ping -c 1 -W 2 "+firstIP)
	h.mustSucceed(r, "second container")
	if !strings.Contains(r.stdout, "inet 10.77.") || !strings.Contains(r.stdout, "default via 10.77.0.1 dev eth0") {
		t.Errorf("second container's address or default route missing:\n%s", r.stdout)
	}

	first.cmd.Process.Signal(os.Interrupt)
	if r := first.wait(); r.code != 128+2 && r.code != 130 {
		t.Errorf("first container: want exit status 130 after SIGINT, got %s", r)
	}
	if n := len(h.attachments()); n != 0 {
		t.Errorf("%d attachments left in the cache", n)
	}
	if n := h.vethCount(); n != 0 {
		t.Errorf("%d veths left in the host namespace: %v", n, h.hostLinks())
	}
	if files := h.ipamFiles("cnikit"); len(files) != 0 {
		t.Errorf("IPAM allocations left: %v", files)
	}
	if r := h.cnikit("netns", "list"); strings.TrimSpace(r.stdout) != "" {
		t.Errorf("namespaces left: %s", r.stdout)
	}
}

// The command's exit status becomes cnikit's.
func TestRunReturnsExitStatus(t *testing.T) {
	h := newHarness(t)
	h.writeConf("10-l2.conflist", l2Conf("exitnet", "brexit", "10.91.0.0/24"))
	r := h.cnikit("run", "--net", "exitnet", "--", "sh", "-c", "exit 7")
	if r.code != 7 {
		t.Fatalf("want exit status 7, got %s", r)
	}
}

// Masquerade: traffic from a container to an outside namespace arrives with the
// host's address as its source.
func TestMasqueradeToOutside(t *testing.T) {
	h := newHarness(t)
	outside := connectOutside(t, h)
	h.writeConf("10-masq.conflist", masqConf("masqnet", "brmasq", "10.92.0.0/24"))

	var ln net.Listener
	outside.Do(func() (err error) {
		ln, err = net.Listen("tcp", "198.51.100.2:8080")
		return err
	})
	defer ln.Close()
	peers := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			peers <- err.Error()
			return
		}
		peers <- c.RemoteAddr().(*net.TCPAddr).IP.String()
		c.Close()
	}()
	r := h.cnikit("run", "--net", "masqnet", "--", "bash", "-c", "exec 3<>/dev/tcp/198.51.100.2/8080 && echo hi >&3")
	h.mustSucceed(r, "container connecting out")
	select {
	case peer := <-peers:
		if peer != "198.51.100.1" {
			t.Fatalf("outside saw source %s, want the host's 198.51.100.1 (masquerade)", peer)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the outside namespace got no connection")
	}
}

// connectOutside links the host namespace to a new "outside" namespace:
// host 198.51.100.1/24 <-> outside 198.51.100.2/24, host default route via it.
// The outside has no route to container subnets: replies reach containers
// only when masqueraded.
func connectOutside(t *testing.T, h *harness) *nstest.NS {
	t.Helper()
	outside := nstest.New(t)
	h.host.MustRun("ip", "link", "add", "uplink", "type", "veth", "peer", "name", "downlink", "netns", outside.Path())
	h.host.MustRun("ip", "addr", "add", "198.51.100.1/24", "dev", "uplink")
	h.host.MustRun("ip", "link", "set", "uplink", "up")
	h.host.MustRun("ip", "route", "add", "default", "via", "198.51.100.2")
	outside.MustRun("ip", "addr", "add", "198.51.100.2/24", "dev", "downlink")
	outside.MustRun("ip", "link", "set", "downlink", "up")
	return outside
}

func l2Conf(name, bridge, subnet string) string {
	return fmt.Sprintf(`{"cniVersion":"1.1.0","name":%q,"plugins":[{"type":"bridge","bridge":%q,"isGateway":true,
	  "ipam":{"type":"host-local","dataDir":"%%DATA%%","ranges":[[{"subnet":%q}]]}}]}`, name, bridge, subnet)
}

func masqConf(name, bridge, subnet string) string {
	return fmt.Sprintf(`{"cniVersion":"1.1.0","name":%q,"plugins":[{"type":"bridge","bridge":%q,"isGateway":true,
	  "isDefaultGateway":true,"ipMasq":true,"ipam":{"type":"host-local","dataDir":"%%DATA%%","ranges":[[{"subnet":%q}]]}}]}`,
		name, bridge, subnet)
}

// waitFor polls cond until it holds, failing the test after 20 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The built-in network publishes ports (-p) and takes a requested address
// (--ip): a server in the container answers on the host's address.
func TestRunPublishesPortAndStaticIP(t *testing.T) {
	h := newHarness(t)
	server := h.start(h.command(nil, append(h.globalArgs(), "run", "--id", "web", "--ip", "10.77.3.3",
		"-p", "8080:80", "--", "sh", "-c", "ip -4 -o addr show eth0; exec sleep 60")...))
	waitFor(t, "web attached", func() bool { return len(h.attachments()) == 1 })
	if ips := h.attachments()[0]["ips"].([]any); len(ips) != 1 || ips[0] != "10.77.3.3/16" {
		t.Fatalf("--ip 10.77.3.3: got %v", ips)
	}
	// A listener inside the container's namespace (pinned in the netns dir).
	container, err := netns.Open(filepath.Join(h.netnsDir, "web"))
	if err != nil {
		t.Fatal(err)
	}
	defer container.Close()
	var ln net.Listener
	if err := container.Do(func() (err error) { ln, err = net.Listen("tcp", ":80"); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Write([]byte("hello from web"))
			c.Close()
		}
	}()
	var got []byte
	h.host.Do(func() error {
		c, err := net.DialTimeout("tcp", "10.77.0.1:8080", 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err = io.ReadAll(c)
		return err
	})
	if string(got) != "hello from web" {
		t.Fatalf("published port answered %q", got)
	}
	server.cmd.Process.Signal(os.Interrupt)
	server.wait()
	h.assertNothingLeft("cnikit")
}
