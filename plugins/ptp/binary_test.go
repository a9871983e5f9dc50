package ptp

import (
	"bytes"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/nstest"
	"github.com/cnikit/cnikit/internal/plugintest"
)

// TestBinary runs the cnikit binary as ptp, as a runtime does, with its IPAM
// plugins (which it then runs in-process) on CNI_PATH.
func TestBinary(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name string
		ipam map[string]any
	}{
		{"host-local", e.hostLocal("10.33.0.0/24", "fd33::/64")},
		{"static", staticIPAM([2]string{"10.33.1.5/24", "10.33.1.1"})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cont := nstest.New(t)
			c := netConf(t, "binnet", tc.ipam, map[string]any{"ipMasq": true})
			bin := filepath.Join(e.host.Defaults.Path, "ptp")
			exec := func(verb string, conf []byte) []byte {
				return e.host.MustExec(bin, plugintest.Call{Verb: verb, Conf: conf, Netns: cont.Path()})
			}
			out := exec("ADD", c)
			res, err := cni.ParseResult(out, "1.1.0")
			if err != nil {
				t.Fatalf("result %s: %v", out, err)
			}
			verifyAttachment(t, e, res, cont)
			withPrev := plugintest.WithPrevResult(t, c, out)
			exec("CHECK", withPrev)
			exec("DEL", withPrev)
			exec("DEL", withPrev)
			mustf(t, !slices.Contains(e.host.LinkNames(), res.Interfaces[0].Name), "host end left")
			mustf(t, len(e.masqueraded()) == 0, "masquerade left: %v", e.masqueraded())
		})
	}
}

// TestReferencePtpWithCnikitIPAM: the reference ptp plugin works with
// cnikit's static and host-local plugins as its IPAM (the drop-in direction
// of the IPAM plugins).
func TestReferencePtpWithCnikitIPAM(t *testing.T) {
	e := newEnv(t)
	requireReference(t)
	for _, tc := range []struct {
		name string
		ipam map[string]any
	}{
		{"host-local", e.hostLocal("10.34.0.0/24")},
		{"static", staticIPAM([2]string{"10.34.1.5/24", "10.34.1.1"})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cont := nstest.New(t)
			c := bytes.Replace(netConf(t, "refipam", tc.ipam, nil), []byte(`"1.1.0"`), []byte(`"1.0.0"`), 1)
			bin := filepath.Join(plugintest.ReferenceDir, "ptp")
			exec := func(verb string, conf []byte) []byte {
				return e.host.MustExec(bin, plugintest.Call{Verb: verb, Conf: conf, Netns: cont.Path(), Path: e.host.Defaults.Path})
			}
			out := exec("ADD", c)
			res, err := cni.ParseResult(out, "1.0.0")
			if err != nil || len(res.IPs) != 1 {
				t.Fatalf("result %s: %v", out, err)
			}
			mustf(t, e.host.Ping(res.IPs[0].Address.IP.String()) == nil, "container unreachable")
			withPrev := plugintest.WithPrevResult(t, c, out)
			exec("CHECK", withPrev)
			exec("DEL", withPrev)
			_, err = cont.Handle().LinkByName("eth0")
			mustf(t, err != nil, "container interface left")
		})
	}
}
