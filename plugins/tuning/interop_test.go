package tuning

import (
	"path/filepath"
	"testing"

	"github.com/cnikit/cnikit/internal/plugintest"
)

// TestReferenceInterop: each plugin's DEL restores what the other's ADD
// saved, through the shared backup file (/usr/lib/cni/tuning is v1.1.1: it
// knows mac, mtu, promisc and allmulti). cnikit runs as its built binary.
func TestReferenceInterop(t *testing.T) {
	plugintest.RequireReference(t)
	reference := filepath.Join(plugintest.ReferenceDir, "tuning")
	cnikit := filepath.Join(plugintest.BinDir(t), "tuning")
	cases := []struct{ name, adder, deleter string }{
		{"reference ADD, cnikit DEL", reference, cnikit},
		{"cnikit ADD, reference DEL", cnikit, reference},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			before := describeState(e.attrs("eth0"))
			conf := e.conf(map[string]any{"cniVersion": "1.0.0", "mac": "02:00:00:00:00:31", "mtu": 1400, "promisc": true, "allmulti": true})
			if _, err := e.host.Exec(tc.adder, plugintest.Call{Verb: "ADD", Conf: conf, Netns: e.cont.Path()}); err != nil {
				t.Fatalf("ADD: %v", err)
			}
			changed := `mac=02:00:00:00:00:31 mtu=1400 txqlen=1000 promisc=true allmulti=true alias=""`
			if got := describeState(e.attrs("eth0")); got != changed {
				t.Fatalf("after ADD: %s, want %s", got, changed)
			}
			if len(e.backupFiles()) != 1 {
				t.Fatalf("backup files after ADD: %v", e.backupFiles())
			}
			if _, err := e.host.Exec(tc.deleter, plugintest.Call{Verb: "DEL", Conf: conf, Netns: e.cont.Path()}); err != nil {
				t.Fatalf("DEL: %v", err)
			}
			if got := describeState(e.attrs("eth0")); got != before {
				t.Errorf("after DEL: %s, want %s", got, before)
			}
			if files := e.backupFiles(); len(files) != 0 {
				t.Errorf("backup files left: %v", files)
			}
		})
	}
}
