package main

import (
	"reflect"
	"strings"
	"testing"
)

func TestParsePublish(t *testing.T) {
	cases := []struct {
		spec    string
		want    portMapping
		wantErr string
	}{
		{spec: "8080:80", want: portMapping{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}},
		{spec: "53:53/udp", want: portMapping{HostPort: 53, ContainerPort: 53, Protocol: "udp"}},
		{spec: "127.0.0.1:8080:80/sctp", want: portMapping{HostPort: 8080, ContainerPort: 80, Protocol: "sctp", HostIP: "127.0.0.1"}},
		{spec: "[::1]:8443:443", want: portMapping{HostPort: 8443, ContainerPort: 443, Protocol: "tcp", HostIP: "::1"}},
		{spec: "80", wantErr: "want [hostIP:]hostPort:containerPort"},
		{spec: "0:80", wantErr: `"0" is not a port number`},
		{spec: "8080:70000", wantErr: `"70000" is not a port number`},
		{spec: "8080:80/icmp", wantErr: `unknown protocol "icmp"`},
	}
	for _, tc := range cases {
		t.Run(tc.spec, func(t *testing.T) {
			got, err := parsePublish([]string{tc.spec})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, %v; want error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, []portMapping{tc.want}) {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

// The container ID must be cnitool's, so that either tool can delete what the
// other added: "cnitool-" and the first 10 bytes of sha512(netns path) in hex.
func TestCnitoolContainerID(t *testing.T) {
	got := cnitoolContainerID("/var/run/netns/testing")
	if len(got) != len("cnitool-")+20 || !strings.HasPrefix(got, "cnitool-") {
		t.Fatalf("cnitoolContainerID = %q", got)
	}
	// sha512("/var/run/netns/testing") starts with these bytes (computed with
	// sha512sum, independently of this code).
	if want := "cnitool-" + sha512Prefix; got != want {
		t.Fatalf("cnitoolContainerID = %q, want %q", got, want)
	}
}

func TestAttachmentFlags(t *testing.T) {
	cases := []struct {
		name    string
		flags   attachmentFlags
		wantErr string
	}{
		{name: "args pairs", flags: attachmentFlags{ifName: "eth0", cniArgs: "IgnoreUnknown=1;IP=10.0.0.5"}},
		{name: "args without =", flags: attachmentFlags{ifName: "eth0", cniArgs: "IP"}, wantErr: `invalid pair "IP"`},
		{name: "args with empty value", flags: attachmentFlags{ifName: "eth0", cniArgs: "IP="}, wantErr: `invalid CNI_ARGS pair "IP="`},
		{name: "cap args not JSON", flags: attachmentFlags{ifName: "eth0", capArgs: "{"}, wantErr: "not a JSON object"},
		{name: "cap args", flags: attachmentFlags{ifName: "eth0", capArgs: `{"portMappings":[]}`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			att, err := tc.flags.attachment("/run/netns/x")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v; want error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || att.ContainerID != cnitoolContainerID("/run/netns/x") {
				t.Fatalf("got %+v, %v", att, err)
			}
		})
	}
}

const sha512Prefix = "77383ca0a0715733ca6f"
