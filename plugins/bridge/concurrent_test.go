package bridge

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/cnikit/cnikit/internal/nstest"
	"github.com/cnikit/cnikit/internal/plugintest"
)

// TestConcurrentAttachments: ADD, CHECK, DEL and ADD again of several
// containers at once, in-process, each call on a thread of its own as a
// runtime library runs plugins, on a host without nftables programs yet, so
// that several ADDs create them at the same time. Under -race it catches
// state that calls share and write.
func TestConcurrentAttachments(t *testing.T) {
	e := newEnv(t)
	// The plugin makes the bridge first (without nftables), so that the calls
	// meet in nftables and the bridge's MAC stays as CHECK expects it.
	l2 := e.conf("l2net", nil, map[string]any{})
	warmup := nstest.New(t)
	e.host.MustAdd(plugintest.Call{Conf: l2, Netns: warmup.Path(), ContainerID: "warmup"})
	e.host.MustInvoke(plugintest.Call{Verb: "DEL", Conf: l2, Netns: warmup.Path(), ContainerID: "warmup"})
	conf := e.conf("concnet", []string{"10.20.0.0/24", "fd20::/64"}, map[string]any{"ipMasq": true, "macspoofchk": true})
	const n = 6
	conts := make([]*nstest.NS, n)
	for i := range conts {
		conts[i] = nstest.New(t)
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := plugintest.Call{Conf: conf, Netns: conts[i].Path(), ContainerID: fmt.Sprint("c", i)}
			for _, verb := range []string{"ADD", "CHECK", "DEL", "ADD", "CHECK"} {
				c.Verb = verb
				if verb == "ADD" {
					c.Conf = conf
				}
				out, cerr := e.host.Invoke(c)
				if cerr != nil {
					errs[i] = fmt.Errorf("%s of %s: %v", verb, c.ContainerID, cerr)
					return
				}
				if verb == "ADD" {
					c.Conf = plugintest.WithPrevResult(t, conf, out)
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	masq, spoof := e.nftElements()
	if len(masq) != 2*n || len(spoof) != n {
		t.Errorf("%d masquerade and %d MAC spoof elements, want %d and %d", len(masq), len(spoof), 2*n, n)
	}
}
