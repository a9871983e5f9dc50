package e2e

import (
	"bytes"
	"strings"
	"testing"

	"github.com/cnikit/cnikit/cni"
)

// Bad input gets a CNI error with the right code and a message naming the bad
// value, and changes nothing on the host.
func TestBadInputThroughRuntime(t *testing.T) {
	good := `{"type":"bridge","bridge":"brbad","isGateway":true,"ipMasq":true,
	  "ipam":{"type":"host-local","dataDir":"%DATA%","ranges":[[{"subnet":"10.95.0.0/24"}]]}}`
	cases := []struct {
		name     string
		conf     string   // network "badnet" (or as named) in the conf dir
		network  string   // network to ask for (default badnet)
		args     []string // extra add flags
		wantCode cni.Code
		wantMsg  string // must appear in the message
	}{
		{name: "plugin type with a path", wantCode: 7, wantMsg: "../bridge",
			conf: `{"cniVersion":"1.1.0","name":"badnet","plugins":[{"type":"../bridge"}]}`},
		{name: "absolute plugin path", wantCode: 7, wantMsg: "/usr/bin/true",
			conf: `{"cniVersion":"1.1.0","name":"badnet","plugins":[{"type":"/usr/bin/true"}]}`},
		{name: "plugin not installed", wantCode: 7, wantMsg: "nosuchplugin",
			conf: `{"cniVersion":"1.1.0","name":"badnet","plugins":[{"type":"nosuchplugin"}]}`},
		{name: "network name with a slash", network: "bad/net", wantCode: 7, wantMsg: "bad/net",
			conf: `{"cniVersion":"1.1.0","name":"bad/net","plugins":[` + good + `]}`},
		{name: "network name ..", network: "..", wantCode: 7, wantMsg: `".."`,
			conf: `{"cniVersion":"1.1.0","name":"..","plugins":[` + good + `]}`},
		{name: "interface name with a slash", args: []string{"--ifname", "a/b"}, wantCode: 4, wantMsg: "a/b"},
		{name: "interface name ..", args: []string{"--ifname", ".."}, wantCode: 4, wantMsg: `".."`},
		{name: "interface name too long", args: []string{"--ifname", "averyveryverylongname"}, wantCode: 4, wantMsg: "averyveryverylongname"},
		{name: "container ID with ..", args: []string{"--container-id", "../etc"}, wantCode: 4, wantMsg: "../etc"},
		{name: "container ID with a space", args: []string{"--container-id", "a b"}, wantCode: 4, wantMsg: "a b"},
		{name: "unknown cniVersion", wantCode: 1, wantMsg: "9.9.9",
			conf: `{"cniVersion":"9.9.9","name":"badnet","plugins":[` + good + `]}`},
		{name: "bridge key of the wrong type", wantCode: 6, wantMsg: "isGateway",
			conf: `{"cniVersion":"1.1.0","name":"badnet","plugins":[{"type":"bridge","isGateway":"yes"}]}`},
		{name: "bad subnet", wantCode: 7, wantMsg: "10.95.0.0/33",
			conf: `{"cniVersion":"1.1.0","name":"badnet","plugins":[{"type":"bridge","bridge":"brbad",
			  "ipam":{"type":"host-local","dataDir":"%DATA%","ranges":[[{"subnet":"10.95.0.0/33"}]]}}]}`},
		{name: "malformed CNI_ARGS", args: []string{"--args", "IP"}, wantCode: 4, wantMsg: "IP"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			conf := tc.conf
			if conf == "" {
				conf = `{"cniVersion":"1.1.0","name":"badnet","plugins":[` + good + `]}`
			}
			h.writeConf("10-bad.conflist", conf)
			network := tc.network
			if network == "" {
				network = "badnet"
			}
			path := h.newContainerNetns("c1")
			r := h.cnikit(append([]string{"--json", "add", network, path}, tc.args...)...)
			if r.code == 0 {
				t.Fatalf("ADD succeeded: %s", r)
			}
			e := cniError(t, r)
			if e.Code != tc.wantCode || !strings.Contains(e.Error(), tc.wantMsg) {
				t.Fatalf("got code %d %q, want code %d naming %q", e.Code, e.Error(), tc.wantCode, tc.wantMsg)
			}
			h.assertUntouched()
		})
	}
}

// assertUntouched checks that the host namespace holds nothing but lo and that
// no state was written.
func (h *harness) assertUntouched() {
	h.t.Helper()
	if links := h.hostLinks(); len(links) != 1 {
		h.t.Errorf("links created in the host namespace: %v", links)
	}
	if out, _ := h.host.Run("nft", "list", "ruleset"); strings.TrimSpace(out) != "" {
		h.t.Errorf("nftables rules created:\n%s", out)
	}
	if n := len(h.attachments()); n != 0 {
		h.t.Errorf("%d attachments cached", n)
	}
}

// The same discipline for a plugin executed directly by some runtime: broken
// stdin gets the spec's codes.
func TestBadInputToPluginBinary(t *testing.T) {
	h := newHarness(t)
	path := h.newContainerNetns("c1")
	env := map[string]string{"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": path,
		"CNI_IFNAME": "eth0", "CNI_PATH": h.binDir}
	huge := append([]byte(`{"cniVersion":"1.1.0","name":"n","type":"bridge","pad":"`),
		bytes.Repeat([]byte("x"), 9<<20)...)
	huge = append(huge, `"}`...)
	cases := []struct {
		name     string
		env      map[string]string
		stdin    []byte
		wantCode cni.Code
		wantMsg  string
	}{
		{name: "not JSON", stdin: []byte("{not json"), wantCode: 6, wantMsg: "network configuration"},
		{name: "no name", stdin: []byte(`{"cniVersion":"1.1.0","type":"bridge"}`), wantCode: 7, wantMsg: "network name"},
		{name: "unknown version", stdin: []byte(`{"cniVersion":"7.0.0","name":"n","type":"bridge"}`), wantCode: 1, wantMsg: "7.0.0"},
		{name: "unparseable version", stdin: []byte(`{"cniVersion":"one","name":"n","type":"bridge"}`), wantCode: 6, wantMsg: "one"},
		{name: "stdin over the limit", stdin: huge, wantCode: 7, wantMsg: "larger than"},
		{name: "missing CNI_NETNS", env: map[string]string{"CNI_NETNS": ""},
			stdin: []byte(`{"cniVersion":"1.1.0","name":"n","type":"bridge"}`), wantCode: 4, wantMsg: "CNI_NETNS"},
		{name: "unknown command", env: map[string]string{"CNI_COMMAND": "FROB"},
			stdin: []byte(`{"cniVersion":"1.1.0","name":"n","type":"bridge"}`), wantCode: 4, wantMsg: "FROB"},
		{name: "netns that is not a namespace", env: map[string]string{"CNI_NETNS": "/etc/hostname"},
			stdin: []byte(`{"cniVersion":"1.1.0","name":"n","type":"bridge"}`), wantCode: 4, wantMsg: "/etc/hostname"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := map[string]string{}
			for k, v := range env {
				e[k] = v
			}
			for k, v := range tc.env {
				e[k] = v
			}
			r := h.plugin("bridge", e, tc.stdin)
			if r.code == 0 {
				t.Fatalf("plugin succeeded: %s", r)
			}
			got := cniError(t, r)
			if got.Code != tc.wantCode || !strings.Contains(got.Error(), tc.wantMsg) {
				t.Fatalf("got code %d %q, want code %d naming %q", got.Code, got.Error(), tc.wantCode, tc.wantMsg)
			}
			h.assertUntouched()
		})
	}
}
