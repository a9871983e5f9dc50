package firewall

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cnikit/cnikit/cni"
)

// busConfig is a private system bus that lets everyone talk to everyone,
// with the system policies (firewalld's among them) of the installed
// packages.
const busConfig = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=%SOCKET%</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
  <includedir>/usr/share/dbus-1/system.d</includedir>
</busconfig>
`

// firewalld is a real firewalld running in the test's host namespace, on a
// private D-Bus system bus, with a private mount namespace whose
// /etc/firewalld and /var/log are empty tmpfs: it touches nothing of the
// machine.
type firewalld struct {
	t   *testing.T
	e   *env
	cmd *exec.Cmd
}

// startFirewalld starts dbus-daemon and firewalld and waits until firewalld
// answers; DBUS_SYSTEM_BUS_ADDRESS points at the private bus for the rest of
// the test. Both are stopped when the test ends.
func startFirewalld(t *testing.T, e *env) *firewalld {
	t.Helper()
	for _, prog := range []string{"firewalld", "dbus-daemon", "unshare", "firewall-cmd"} {
		if _, err := exec.LookPath(prog); err != nil {
			t.Skipf("%s is not installed (scripts/setup.sh installs firewalld and dbus): %v", prog, err)
		}
	}
	dir := t.TempDir()
	socket := filepath.Join(dir, "bus.sock")
	conf := filepath.Join(dir, "bus.conf")
	if err := os.WriteFile(conf, []byte(strings.ReplaceAll(busConfig, "%SOCKET%", socket)), 0o600); err != nil {
		t.Fatal(err)
	}
	address := "unix:path=" + socket
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", address)

	start := func(cmd *exec.Cmd) {
		e.host.Do(func() error { return cmd.Start() }) // started from the host namespace
		t.Cleanup(func() {
			cmd.Process.Kill()
			cmd.Wait()
		})
	}
	bus := exec.Command("dbus-daemon", "--config-file="+conf, "--nofork", "--print-address=1")
	stdout, err := bus.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	start(bus)
	// The address is printed once the bus listens.
	if _, err := bufio.NewReader(stdout).ReadString('\n'); err != nil {
		t.Fatalf("dbus-daemon did not start: %v", err)
	}

	fw := &firewalld{t: t, e: e}
	logFile, err := os.Create(filepath.Join(dir, "firewalld.log"))
	if err != nil {
		t.Fatal(err)
	}
	fw.cmd = exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c",
		"mount -t tmpfs tmpfs /etc/firewalld && mount -t tmpfs tmpfs /var/log && exec firewalld --nofork --nopid")
	fw.cmd.Stdout, fw.cmd.Stderr = logFile, logFile
	start(fw.cmd)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for {
		if c, err := firewalldRunning(ctx); err == nil {
			var state string
			v, err := c.conn.Object(firewalldName, firewalldPath).GetProperty(firewalldName + ".state")
			if err == nil {
				state, _ = v.Value().(string)
			}
			c.Close()
			if state == "RUNNING" {
				break
			}
		}
		if ctx.Err() != nil {
			log, _ := os.ReadFile(logFile.Name())
			t.Fatalf("firewalld did not start:\n%s", log)
		}
		time.Sleep(100 * time.Millisecond) // waiting for a daemon to come up, not asserting time
	}
	return fw
}

// stop stops firewalld (the bus stays).
func (fw *firewalld) stop() {
	fw.cmd.Process.Kill()
	fw.cmd.Wait()
}

// sources lists a zone's sources with firewall-cmd.
func (fw *firewalld) sources(zone string) []string {
	out, err := exec.Command("firewall-cmd", "--zone="+zone, "--list-sources").CombinedOutput()
	if err != nil {
		fw.t.Fatalf("firewall-cmd --list-sources: %v\n%s", err, out)
	}
	return strings.Fields(string(out))
}

func (fw *firewalld) mustCmd(args ...string) {
	if out, err := exec.Command("firewall-cmd", args...).CombinedOutput(); err != nil {
		fw.t.Fatalf("firewall-cmd %v: %v\n%s", args, err, out)
	}
}

func has(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestFirewalld runs the firewalld backend against a real firewalld 1.3:
// forwarded traffic of a container is rejected until its addresses are
// sources of the trusted zone, and again after DEL; sources are what the
// state records say; isolation still applies on top; STATUS follows
// firewalld.
func TestFirewalld(t *testing.T) {
	e := newEnv(t)
	fw := startFirewalld(t, e)
	fwNet := dualStack("fwd", "br-fwd", 8, map[string]any{"backend": backendFirewalld})
	c := e.attach(fwNet, "c1")
	src4, src6 := c.ips[0]+"/32", c.ips[1]+"/128"
	recordDir := filepath.Join(e.stateDir, "firewalld", fwNet.name)
	records := func() int {
		entries, _ := os.ReadDir(recordDir)
		return len(entries)
	}

	t.Run("STATUS", func(t *testing.T) {
		if _, cerr := e.invoke("firewall", "STATUS", "", "", e.fwConf(fwNet, nil)); cerr != nil {
			t.Fatalf("STATUS: %v", cerr)
		}
	})

	t.Run("ADD, CHECK, DEL with real traffic", func(t *testing.T) {
		if v4, v6 := e.reachesOutside(c, false); v4 || v6 {
			t.Fatal("firewalld lets the unknown container's traffic through")
		}
		e.mustFw("ADD", fwNet, c)
		if got := fw.sources("trusted"); !has(got, src4) || !has(got, src6) {
			t.Errorf("trusted zone sources %v, want %s and %s", got, src4, src6)
		}
		if records() != 1 {
			t.Errorf("%d state records, want 1", records())
		}
		if v4, v6 := e.reachesOutside(c, true); !v4 || !v6 {
			t.Errorf("after ADD: outside reachable over IPv4 %v, IPv6 %v", v4, v6)
		}
		e.mustFw("ADD", fwNet, c) // ZONE_ALREADY_SET is success
		e.mustFw("CHECK", fwNet, c)
		e.mustFw("DEL", fwNet, c)
		if got := fw.sources("trusted"); len(got) != 0 {
			t.Errorf("sources left after DEL: %v", got)
		}
		if records() != 0 {
			t.Error("state record left after DEL")
		}
		if v4, v6 := e.reachesOutside(c, false); v4 || v6 {
			t.Error("traffic passes after DEL")
		}
		if cerr := e.fw("CHECK", fwNet, c, true); cerr == nil {
			t.Error("CHECK passes after DEL")
		}
		e.mustFw("DEL", fwNet, c)
	})

	t.Run("default backend is firewalld when it runs", func(t *testing.T) {
		auto := fwNet
		auto.fw = map[string]any{"firewalldZone": "internal"}
		e.mustFw("ADD", auto, c)
		if got := fw.sources("internal"); !has(got, src4) {
			t.Errorf("internal zone sources %v, want %s", got, src4)
		}
		if len(e.nftElements()) != 0 {
			t.Error("the default backend also wrote nftables entries")
		}
		// DEL without prevResult: the record says what to remove.
		if cerr := e.fw("DEL", auto, c, false); cerr != nil {
			t.Fatalf("DEL: %v", cerr)
		}
		if got := fw.sources("internal"); len(got) != 0 {
			t.Errorf("sources left after DEL without prevResult: %v", got)
		}
	})

	t.Run("a source the reference plugin bound is removed given prevResult", func(t *testing.T) {
		fw.mustCmd("--zone=trusted", "--add-source="+src4)
		e.mustFw("DEL", fwNet, c)
		if got := fw.sources("trusted"); len(got) != 0 {
			t.Errorf("sources left: %v", got)
		}
	})

	t.Run("GC", func(t *testing.T) {
		c2 := e.attach(fwNet, "c2")
		e.mustFw("ADD", fwNet, c)
		e.mustFw("ADD", fwNet, c2)
		var conf map[string]any
		json.Unmarshal(e.fwConf(fwNet, nil), &conf)
		conf["cni.dev/valid-attachments"] = []map[string]string{{"containerID": c2.cid, "ifname": "eth0"}}
		if _, cerr := e.invoke("firewall", "GC", "", "", mustJSON(t, conf)); cerr != nil {
			t.Fatalf("GC: %v", cerr)
		}
		got := fw.sources("trusted")
		if has(got, src4) || !has(got, c2.ips[0]+"/32") {
			t.Errorf("after GC keeping c2: sources %v", got)
		}
		if records() != 1 {
			t.Errorf("%d state records after GC, want 1", records())
		}
		e.mustFw("DEL", fwNet, c2)
	})

	t.Run("isolation applies on top of the trusted zone", func(t *testing.T) {
		netA := network{name: "fwd-a", bridge: "br-fwa", subnets: []string{"10.65.1.0/24"},
			fw: map[string]any{"backend": backendFirewalld, "ingressPolicy": policySameBridge}}
		netB := network{name: "fwd-b", bridge: "br-fwb", subnets: []string{"10.65.2.0/24"}, fw: netA.fw}
		a1, b1 := e.attach(netA, "a1"), e.attach(netB, "b1")
		e.mustFw("ADD", netA, a1)
		e.mustFw("ADD", netB, b1)
		if probe(a1.ns, b1.ips[0], false) {
			t.Error("a1 reaches b1 across isolating bridges")
		}
		if e.outside(); !probe(a1.ns, outside4, true) {
			t.Error("a1 does not reach outside")
		}
		e.mustFw("CHECK", netA, a1)
		e.mustFw("DEL", netA, a1)
		e.mustFw("DEL", netB, b1)
		if len(e.nftElements()) != 0 {
			t.Errorf("nftables entries left: %v", e.nftElements())
		}
	})

	t.Run("firewalld stopped", func(t *testing.T) {
		e.mustFw("ADD", fwNet, c)
		fw.stop()
		_, cerr := e.invoke("firewall", "STATUS", "", "", e.fwConf(fwNet, nil))
		if cerr == nil || cerr.Code != cni.CodePluginNotAvailable {
			t.Errorf("STATUS without firewalld: %v, want code 50", cerr)
		}
		if cerr := e.fw("ADD", fwNet, c, true); cerr == nil || cerr.Code != cni.CodeTryAgainLater {
			t.Errorf("ADD without firewalld: %v, want code 11", cerr)
		}
		// Its runtime sources are gone with it: DEL succeeds and forgets them.
		e.mustFw("DEL", fwNet, c)
		if records() != 0 {
			t.Error("state record left after DEL")
		}
	})
}
