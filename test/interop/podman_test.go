package interop

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/nstest"
	"github.com/cnikit/cnikit/internal/plugintest"
)

// podmanConf is the conflist `podman network create` (Podman 4.3, CNI backend)
// writes, as captured in testdata, with host-local's state moved to dataDir:
// a test must not write to /var/lib/cni.
func podmanConf(t *testing.T, dataDir string) []byte {
	t.Helper()
	raw, err := os.ReadFile("testdata/podman.conflist")
	if err != nil {
		t.Fatal(err)
	}
	var list map[string]any
	if err := json.Unmarshal(raw, &list); err != nil {
		t.Fatal(err)
	}
	ipam := list["plugins"].([]any)[0].(map[string]any)["ipam"].(map[string]any)
	ipam["dataDir"] = dataDir
	out, _ := json.Marshal(list)
	return out
}

// The standard chain as Podman writes it, driven by cnikit's runtime and by
// the reference library, through ADD → CHECK → DEL → DEL: it works (address,
// gateway, a published TCP port reachable from the host), and afterwards no
// link, nftables element, IPAM reservation, cache entry or conntrack entry of
// the container is left.
func TestPodmanConflist(t *testing.T) {
	binDir := plugintest.BinDir(t)
	drivers := []func(cacheDir string) driver{
		func(c string) driver { return newCnikitDriver([]string{binDir}, c) },
		func(c string) driver { return newLibcniDriver([]string{binDir}, c) },
	}
	for _, newDriver := range drivers {
		dir := t.TempDir()
		d := newDriver(filepath.Join(dir, "cache"))
		t.Run(d.name(), func(t *testing.T) {
			host, container := nstest.New(t), nstest.New(t)
			conf := podmanConf(t, filepath.Join(dir, "ipam"))
			att := attachment{
				containerID: "podman1", netns: container.Path(), ifName: "eth0",
				args: [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAME", "web"}},
				capabilityArgs: map[string]any{"portMappings": []map[string]any{
					{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
					{"hostPort": 5353, "containerPort": 53, "protocol": "udp"},
				}},
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()

			var out []byte
			host.Do(func() (err error) { out, err = d.add(ctx, conf, att); return err })
			res, err := cni.ParseResult(out, "0.4.0")
			if err != nil || len(res.IPs) != 1 {
				t.Fatalf("ADD result %s: %v", out, err)
			}
			containerIP := res.IPs[0].Address.IP
			if !strings.HasPrefix(containerIP.String(), "10.123.0.") {
				t.Fatalf("container got %s, not an address of 10.123.0.0/24", containerIP)
			}
			if err := container.Ping("10.123.0.1"); err != nil {
				t.Fatal(err)
			}
			assertPublishedTCP(t, host, container, "10.123.0.1:8080", ":80")
			sendUDP(t, host, "10.123.0.1:5353")
			host.Do(func() error { return d.check(ctx, conf, att) })

			for i := 0; i < 2; i++ {
				host.Do(func() error { return d.del(ctx, conf, att) })
			}
			assertNothingLeft(t, host, containerIP, filepath.Join(dir, "ipam", "podtest"), filepath.Join(dir, "cache"))
		})
	}
}

// assertPublishedTCP listens on listenAddr inside the container and connects
// to hostAddr from the host namespace.
func assertPublishedTCP(t *testing.T, host, container *nstest.NS, hostAddr, listenAddr string) {
	t.Helper()
	var ln net.Listener
	container.Do(func() (err error) { ln, err = net.Listen("tcp", listenAddr); return err })
	defer ln.Close()
	accepted := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Write([]byte("hello"))
			c.Close()
		}
		accepted <- err
	}()
	host.Do(func() error {
		c, err := net.DialTimeout("tcp", hostAddr, 5*time.Second)
		if err != nil {
			return fmt.Errorf("connecting to the published port %s: %w", hostAddr, err)
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 5)
		if _, err := c.Read(buf); err != nil || string(buf) != "hello" {
			return fmt.Errorf("reading from the published port %s: %q, %v", hostAddr, buf, err)
		}
		return nil
	})
	if err := <-accepted; err != nil {
		t.Fatal(err)
	}
}

// sendUDP sends one datagram from the host namespace, which leaves a
// conntrack entry behind.
func sendUDP(t *testing.T, host *nstest.NS, addr string) {
	t.Helper()
	host.Do(func() error {
		c, err := net.Dial("udp", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("ping"))
		return err
	})
}
