package static

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/plugintest"
)

// runReference executes the reference static plugin with the same request.
func runReference(t *testing.T, r request) ([]byte, error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(plugintest.ReferenceDir, "static"))
	cmd.Stdin = bytes.NewReader(r.stdin(t))
	cmd.Env = append(os.Environ(), "CNI_COMMAND=ADD", "CNI_CONTAINERID=ctr1", "CNI_NETNS=/proc/self/ns/net",
		"CNI_IFNAME=eth0", "CNI_PATH="+plugintest.ReferenceDir, "CNI_ARGS="+r.cniArgs)
	return cmd.Output()
}

// TestSameResultsAsReference: every successful ADD of the table gives the
// reference static plugin's result, address for address (the reference
// understands versions up to 1.0.0, so 1.1.0 requests are compared as 1.0.0).
func TestSameResultsAsReference(t *testing.T) {
	plugintest.RequireReference(t)
	for _, tc := range addCases {
		t.Run(tc.name, func(t *testing.T) {
			version := tc.version
			if version == "" {
				version = "1.0.0"
			}
			r := request{version: version, conf: tc.conf, cniArgs: tc.cniArgs}
			refOut, err := runReference(t, r)
			if err != nil {
				t.Fatalf("reference: %v: %s", err, refOut)
			}
			out, cerr := run(t, r)
			if cerr != nil {
				t.Fatalf("cnikit: %v", cerr)
			}
			ref, err := cni.ParseResult(refOut, version)
			if err != nil {
				t.Fatalf("reference result %s: %v", refOut, err)
			}
			mine, err := cni.ParseResult(out, version)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := strings.Join(summary(mine), "|"), strings.Join(summary(ref), "|"); got != want {
				t.Errorf("cnikit %s, reference %s", got, want)
			}
			a, _ := mine.Marshal(version)
			b, _ := ref.Marshal(version)
			if !bytes.Equal(a, b) {
				t.Errorf("cnikit %s\nreference %s", a, b)
			}
		})
	}
}

// TestStricterThanReference lists the inputs the reference accepts and cnikit
// refuses, so that the difference stays deliberate.
func TestStricterThanReference(t *testing.T) {
	plugintest.RequireReference(t)
	for _, tc := range []struct {
		name string
		r    request
	}{
		{"gateway of the other family", request{conf: map[string]any{"ipam": ipam("10.1.1.5/24 fd00::1")}}},
		{"gateway is the address", request{conf: map[string]any{"ipam": ipam("10.1.1.5/24 10.1.1.5")}}},
		{"address twice", request{conf: map[string]any{"ipam": ipam("10.1.1.5/24", "10.1.1.5/16")}}},
		{"route gw of the other family", request{conf: map[string]any{"ipam": map[string]any{
			"routes": []map[string]string{{"dst": "::/0", "gw": "10.1.1.1"}}}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.r.version = "1.0.0"
			if out, err := runReference(t, tc.r); err != nil {
				t.Errorf("the reference refuses it too now (%v: %s): move the case to TestErrors only", err, out)
			}
			if _, cerr := run(t, tc.r); cerr == nil || cerr.Code != cni.CodeInvalidNetworkConfig {
				t.Errorf("cnikit: %v, want code 7", cerr)
			}
		})
	}
}
