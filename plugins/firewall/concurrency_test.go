package firewall

import (
	"fmt"
	"sync"
	"testing"
)

// TestConcurrentOperations: ADDs and DELs of many containers at once leave
// exactly every container's entries, then none (the iptables backend's
// read-and-restore sequences are serialised by its lock; nftables batches
// are atomic).
func TestConcurrentOperations(t *testing.T) {
	for _, backend := range []string{backendNftables, backendIptables} {
		t.Run(backend, func(t *testing.T) {
			e := newEnv(t)
			n := dualStack("conc", "br-conc", 9, map[string]any{"backend": backend, "ingressPolicy": policySameBridge})
			var cs []*container
			for i := range 8 {
				cs = append(cs, e.attach(n, fmt.Sprintf("c%d", i)))
			}
			all := func(verb string) {
				var wg sync.WaitGroup
				errs := make(chan error, len(cs))
				for _, c := range cs {
					wg.Add(1)
					go func() {
						defer wg.Done()
						if cerr := e.fw(verb, n, c, true); cerr != nil {
							errs <- fmt.Errorf("%s %s: %v", verb, c.cid, cerr)
						}
					}()
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					t.Error(err)
				}
			}
			all("ADD")
			for _, c := range cs {
				if !e.entries(backend, c) {
					t.Errorf("%s has no entries after the concurrent ADDs", c.cid)
				}
			}
			all("DEL")
			for _, c := range cs {
				if e.entries(backend, c) {
					t.Errorf("%s has entries after the concurrent DELs", c.cid)
				}
			}
			if e.isolated(backend, n.bridge) {
				t.Error("the bridge is still isolated after every container's DEL")
			}
		})
	}
}
