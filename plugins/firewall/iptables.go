package firewall

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cnikit/cnikit/internal/iptables"
	"github.com/cnikit/cnikit/internal/nft"
)

// The reference plugin's chain names and comments (table filter), kept so
// that rules it created are recognised, and cleaned up on DEL.
const (
	forwardChain    = "CNI-FORWARD"
	isolationStage1 = "CNI-ISOLATION-STAGE-1"
	isolationStage2 = "CNI-ISOLATION-STAGE-2"

	forwardJumpComment   = "CNI firewall plugin rules"
	adminJumpComment     = "CNI firewall plugin admin overrides"
	sameBridgeComment    = "CNI firewall plugin rules (ingressPolicy: same-bridge)"
	isolatedComment      = "CNI firewall plugin rules (ingressPolicy: isolated)"
	replyExemptComment   = "CNI firewall plugin rules (ingressPolicy: replies pass)"
	establishedStates    = "RELATED,ESTABLISHED"
	filterTable          = "filter"
	builtinForwardChain  = "FORWARD"
	bridgeCommentPrefix  = ", bridge: "
	iptablesLockFileName = "iptables.lock"
)

// iptablesBackend adds the reference plugin's rules to iptables' own FORWARD
// chain, for hosts where iptables owns a FORWARD policy of DROP (Docker):
//
//	FORWARD:               -j CNI-ISOLATION-STAGE-1 (isolating policies), -j CNI-FORWARD
//	CNI-FORWARD:           -j <admin chain>
//	                       -d <ip> -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
//	                       -s <ip> -j ACCEPT
//	CNI-ISOLATION-STAGE-1: -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN
//	                       -i <br> -o <br> -j DROP            (isolated)
//	                       -i <br> ! -o <br> -j CNI-ISOLATION-STAGE-2
//	CNI-ISOLATION-STAGE-2: -o <br> -j DROP
//
// cnikit's per-container rules carry the attachment's comment (with the
// bridge under an isolating policy), so DEL and GC find them without
// prevResult. Each operation reads the table from the kernel (no process),
// works out the exact changes and applies them with one iptables-restore
// per family, under a lock so that concurrent operations do not interleave
// their reads and writes.
type iptablesBackend struct {
	adminChain string
	stateDir   string
}

func (iptablesBackend) name() string { return backendIptables }

// lock serialises read-and-restore sequences between cnikit processes.
func (b iptablesBackend) lock() (func(), error) {
	if err := os.MkdirAll(b.stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", b.stateDir, err)
	}
	path := filepath.Join(b.stateDir, iptablesLockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening lock %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// readFilter reads the chains the backend uses.
func (b iptablesBackend) readFilter(f iptables.Family) (*iptables.Table, error) {
	t, err := iptables.Read(f, filterTable, builtinForwardChain, forwardChain, isolationStage1, isolationStage2)
	if err != nil {
		return nil, err
	}
	return t, nil
}

// ruleComment is the attachment's comment, with the bridge after the key
// when it holds the bridge's isolation. Characters an iptables-restore line
// could misread (quotes, backslashes, anything unusual an interface name may
// hold) become '_'.
func ruleComment(a *attachment) string {
	c := a.Comment()
	if a.Isolation != nil {
		key := a.Key()
		c = key + bridgeCommentPrefix + a.Isolation.Bridge + c[len(key):]
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', strings.ContainsRune(" ,:._@-", r):
			return r
		}
		return '_'
	}, c)
}

// bridgeOfComment returns the bridge recorded in a cnikit rule comment.
func bridgeOfComment(comment string) string {
	rest, ok := strings.CutPrefix(comment[min(len(comment), keyLen):], bridgeCommentPrefix)
	if !ok {
		return ""
	}
	bridge, _, _ := strings.Cut(rest, ",")
	return bridge
}

// keyLen is the length of an attachment key ("<16 hex>-<16 hex>").
const keyLen = 33

// isCnikitComment reports whether a comment starts with an attachment key.
func isCnikitComment(c string) bool {
	if len(c) < keyLen || c[16] != '-' {
		return false
	}
	for i, r := range c[:keyLen] {
		if i != 16 && !strings.ContainsRune("0123456789abcdef", r) {
			return false
		}
	}
	return true
}

func containerRules(ip net.IP, comment string) []iptables.Rule {
	host := iptables.HostNet(ip)
	return []iptables.Rule{
		{Destination: host, CtState: establishedStates, Comment: comment, Target: "ACCEPT"},
		{Source: host, Comment: comment, Target: "ACCEPT"},
	}
}

// referenceRules are the rules the reference plugin adds for ip (no comment).
func referenceRules(ip net.IP) []iptables.Rule { return containerRules(ip, "") }

func ruleIndex(c *iptables.Chain, match func(iptables.Rule) bool) int {
	if c == nil {
		return -1
	}
	for i, r := range c.Rules {
		if !r.Opaque && match(r) {
			return i
		}
	}
	return -1
}

func sameRule(want iptables.Rule) func(iptables.Rule) bool {
	return func(r iptables.Rule) bool { return r.Spec() == want.Spec() }
}

func jumpsTo(chain string) func(iptables.Rule) bool {
	return func(r iptables.Rule) bool { return r.Target == chain }
}

// families returns the families of ips, or both when ips is empty.
func families(ips []net.IP) []iptables.Family {
	var has4, has6 bool
	for _, ip := range ips {
		if ip.To4() != nil {
			has4 = true
		} else {
			has6 = true
		}
	}
	if !has4 && !has6 {
		return []iptables.Family{iptables.IPv4, iptables.IPv6}
	}
	var out []iptables.Family
	if has4 {
		out = append(out, iptables.IPv4)
	}
	if has6 {
		out = append(out, iptables.IPv6)
	}
	return out
}

func ipsOf(f iptables.Family, ips []net.IP) []net.IP {
	var out []net.IP
	for _, ip := range ips {
		if iptables.FamilyOf(ip) == f {
			out = append(out, ip)
		}
	}
	return out
}

func (b iptablesBackend) add(ctx context.Context, a *attachment) error {
	unlock, err := b.lock()
	if err != nil {
		return err
	}
	defer unlock()
	for _, f := range families(a.IPs) {
		t, err := b.readFilter(f)
		if err != nil {
			return err
		}
		s := iptables.NewScript(filterTable)
		b.ensureForward(t, s, a.Isolation != nil)
		comment := ruleComment(a)
		fwd := t.Chain(forwardChain)
		want := map[string]bool{}
		for _, ip := range ipsOf(f, a.IPs) {
			for _, r := range containerRules(ip, comment) {
				want[r.Spec()] = true
				if ruleIndex(fwd, sameRule(r)) < 0 {
					s.Append(forwardChain, r)
				}
			}
		}
		// Rules of an earlier ADD of the same attachment that no longer apply.
		if fwd != nil {
			for _, r := range fwd.Rules {
				if strings.HasPrefix(r.Comment, a.Key()) && !want[r.Spec()] && !r.Opaque {
					s.Delete(forwardChain, r)
				}
			}
		}
		if a.Isolation != nil {
			isolateBridge(t, s, a.Isolation)
		}
		if err := iptables.Restore(ctx, f, s); err != nil {
			return fmt.Errorf("adding %s rules of %s: %w", f, a, err)
		}
	}
	return nil
}

// ensureForward queues what is missing of the chains and jumps every
// container needs: CNI-FORWARD and the admin chain, FORWARD's jump to
// CNI-FORWARD (after the isolation jump, which must see traffic first) and
// CNI-FORWARD's jump to the admin chain, first.
func (b iptablesBackend) ensureForward(t *iptables.Table, s *iptables.Script, isolating bool) {
	if t.Chain(forwardChain) == nil {
		s.NewChain(forwardChain)
	}
	if t.Chain(b.adminChain) == nil {
		s.NewChain(b.adminChain)
	}
	fwd := t.Chain(builtinForwardChain)
	if ruleIndex(fwd, jumpsTo(forwardChain)) < 0 {
		pos := 1
		if i := ruleIndex(fwd, jumpsTo(isolationStage1)); i >= 0 {
			pos = i + 2
		}
		s.Insert(builtinForwardChain, pos, iptables.Rule{Comment: forwardJumpComment, Target: forwardChain})
	}
	if ruleIndex(t.Chain(forwardChain), jumpsTo(b.adminChain)) < 0 {
		s.Insert(forwardChain, 1, iptables.Rule{Comment: adminJumpComment, Target: b.adminChain})
	}
	if isolating {
		if t.Chain(isolationStage1) == nil {
			s.NewChain(isolationStage1)
		}
		if t.Chain(isolationStage2) == nil {
			s.NewChain(isolationStage2)
		}
		// Inserted after the CNI-FORWARD jump above, so it ends up first.
		if ruleIndex(fwd, jumpsTo(isolationStage1)) < 0 {
			s.Insert(builtinForwardChain, 1, iptables.Rule{Comment: sameBridgeComment, Target: isolationStage1})
		}
	}
}

// Isolation rules of a bridge.
func stage1Rule(bridge string) iptables.Rule {
	return iptables.Rule{InIface: bridge, OutIface: bridge, NotOutIface: true, Comment: sameBridgeComment, Target: isolationStage2}
}

func stage2Rule(bridge string) iptables.Rule {
	return iptables.Rule{OutIface: bridge, Comment: sameBridgeComment, Target: "DROP"}
}

func isolatedRule(bridge string) iptables.Rule {
	return iptables.Rule{InIface: bridge, OutIface: bridge, Comment: isolatedComment, Target: "DROP"}
}

var replyExemption = iptables.Rule{CtState: establishedStates, Comment: replyExemptComment, Target: "RETURN"}

// isolateBridge queues the bridge's isolation rules that are missing, below
// the reply exemption (which is inserted first when it is missing), and the
// removal of the isolated-only rule under same-bridge: the last ADD decides
// when attachments of one bridge disagree.
func isolateBridge(t *iptables.Table, s *iptables.Script, iso *nft.Isolation) {
	stage1, stage2 := t.Chain(isolationStage1), t.Chain(isolationStage2)
	hasExemption := ruleIndex(stage1, sameRule(replyExemption)) >= 0
	pos := 1
	if hasExemption {
		pos = 2
	}
	if ruleIndex(stage1, sameRule(stage1Rule(iso.Bridge))) < 0 {
		s.Insert(isolationStage1, pos, stage1Rule(iso.Bridge))
	}
	switch has := ruleIndex(stage1, sameRule(isolatedRule(iso.Bridge))) >= 0; {
	case !iso.SameBridge && !has:
		s.Insert(isolationStage1, pos, isolatedRule(iso.Bridge))
	case iso.SameBridge && has:
		s.Delete(isolationStage1, isolatedRule(iso.Bridge))
	}
	if !hasExemption {
		s.Insert(isolationStage1, 1, replyExemption)
	}
	if ruleIndex(stage2, sameRule(stage2Rule(iso.Bridge))) < 0 {
		s.Insert(isolationStage2, 1, stage2Rule(iso.Bridge))
	}
}

// hasForwardChain reports whether CNI-FORWARD exists in either family (or
// cannot be looked up): when it does not, DEL and GC have nothing to do,
// and neither lock nor start anything.
func hasForwardChain() bool {
	chains, err := iptables.LookupChain(filterTable, forwardChain, iptables.IPv4, iptables.IPv6)
	return err != nil || chains[iptables.IPv4] != nil || chains[iptables.IPv6] != nil
}

// del removes the attachment's rules (cnikit's by comment, the reference's
// by the addresses prevResult gives) and reports whether there were any, then the isolation of each bridge
// they held when no container rule that could be on it is left.
func (b iptablesBackend) del(ctx context.Context, a *attachment) (found bool, err error) {
	return b.pruneForward(ctx, func(f iptables.Family) string { return fmt.Sprintf("%s rules of %s", f, a) },
		func(f iptables.Family, t *iptables.Table, fwd *iptables.Chain) (gone map[int]bool, bridges map[string]bool) {
			bridges = map[string]bool{}
			if a.Isolation != nil {
				bridges[a.Isolation.Bridge] = true
			}
			gone = map[int]bool{}
			for i, r := range fwd.Rules {
				if r.Opaque || !strings.HasPrefix(r.Comment, a.Key()) {
					continue
				}
				gone[i] = true
				if br := bridgeOfComment(r.Comment); br != "" {
					bridges[br] = true
				}
			}
			for _, ip := range ipsOf(f, a.IPs) {
				for _, r := range referenceRules(ip) {
					if i := ruleIndex(fwd, sameRule(r)); i >= 0 {
						gone[i] = true
					}
				}
			}
			return gone, bridges
		})
}

// pruneForward is the work of DEL and GC, under the lock, in each family
// whose CNI-FORWARD exists: it deletes the chain's rules that pick marks (by
// index), then the isolation rules of those of pick's candidate bridges that
// no remaining container rule may need, in one restore. It reports whether
// pick marked any rule; an error names the rules with describe.
func (b iptablesBackend) pruneForward(ctx context.Context, describe func(iptables.Family) string,
	pick func(f iptables.Family, t *iptables.Table, fwd *iptables.Chain) (gone map[int]bool, bridges map[string]bool)) (found bool, err error) {
	if !hasForwardChain() {
		return false, nil
	}
	unlock, err := b.lock()
	if err != nil {
		return false, err
	}
	defer unlock()
	var errs []error
	for _, f := range []iptables.Family{iptables.IPv4, iptables.IPv6} {
		t, err := b.readFilter(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		fwd := t.Chain(forwardChain)
		if fwd == nil {
			continue
		}
		gone, bridges := pick(f, t, fwd)
		s := iptables.NewScript(filterTable)
		for i := range fwd.Rules {
			if gone[i] {
				s.Delete(forwardChain, fwd.Rules[i])
				found = true
			}
		}
		releaseBridges(t, s, bridges, gone)
		if err := iptables.Restore(ctx, f, s); err != nil {
			errs = append(errs, fmt.Errorf("removing %s: %w", describe(f), err))
		}
	}
	return found, errors.Join(errs...)
}

// releaseBridges queues the removal of the isolation rules of each bridge
// no remaining container rule may need: none of cnikit's names it, and no
// reference rule (which does not say its bridge) is left.
func releaseBridges(t *iptables.Table, s *iptables.Script, bridges map[string]bool, gone map[int]bool) {
	if len(bridges) == 0 {
		return
	}
	for i, r := range t.Chain(forwardChain).Rules {
		if gone[i] || r.Opaque || r.Target != "ACCEPT" {
			continue
		}
		if !isCnikitComment(r.Comment) {
			return // a reference container rule: its bridge is unknown
		}
		delete(bridges, bridgeOfComment(r.Comment))
	}
	for br := range bridges {
		for _, x := range []struct {
			chain string
			rules []iptables.Rule
		}{
			{isolationStage1, []iptables.Rule{stage1Rule(br), isolatedRule(br)}},
			{isolationStage2, []iptables.Rule{stage2Rule(br)}},
		} {
			for _, r := range x.rules {
				if ruleIndex(t.Chain(x.chain), sameRule(r)) >= 0 {
					s.Delete(x.chain, r)
				}
			}
		}
	}
}

// check verifies the jumps, the attachment's two rules per address and its
// bridge's isolation rules.
func (b iptablesBackend) check(_ context.Context, a *attachment) error {
	for _, f := range families(a.IPs) {
		t, err := b.readFilter(f)
		if err != nil {
			return err
		}
		if ruleIndex(t.Chain(builtinForwardChain), jumpsTo(forwardChain)) < 0 {
			return fmt.Errorf("%s chain FORWARD does not jump to %s", f, forwardChain)
		}
		if ruleIndex(t.Chain(forwardChain), jumpsTo(b.adminChain)) < 0 {
			return fmt.Errorf("%s chain %s does not jump to %s", f, forwardChain, b.adminChain)
		}
		for _, ip := range ipsOf(f, a.IPs) {
			for _, r := range containerRules(ip, ruleComment(a)) {
				if ruleIndex(t.Chain(forwardChain), sameRule(r)) < 0 {
					return fmt.Errorf("%s chain %s lacks rule %s", f, forwardChain, r.Spec())
				}
			}
		}
		if a.Isolation == nil {
			continue
		}
		want := map[string][]iptables.Rule{
			isolationStage1: {stage1Rule(a.Isolation.Bridge)},
			isolationStage2: {stage2Rule(a.Isolation.Bridge)},
		}
		if !a.Isolation.SameBridge {
			want[isolationStage1] = append(want[isolationStage1], isolatedRule(a.Isolation.Bridge))
		}
		if ruleIndex(t.Chain(builtinForwardChain), jumpsTo(isolationStage1)) < 0 {
			return fmt.Errorf("%s chain FORWARD does not jump to %s", f, isolationStage1)
		}
		for chain, rules := range want {
			for _, r := range rules {
				if ruleIndex(t.Chain(chain), sameRule(r)) < 0 {
					return fmt.Errorf("%s chain %s lacks rule %s", f, chain, r.Spec())
				}
			}
		}
	}
	return nil
}

// gc removes the network's cnikit rules whose attachment is not kept, and
// the isolation rules of bridges no container rule names any more.
func (b iptablesBackend) gc(ctx context.Context, network string, keep nft.KeepSet) error {
	prefix := nft.NetworkKey(network) + "-"
	_, err := b.pruneForward(ctx, func(f iptables.Family) string { return fmt.Sprintf("stale %s rules of network %q", f, network) },
		func(f iptables.Family, t *iptables.Table, fwd *iptables.Chain) (gone map[int]bool, bridges map[string]bool) {
			gone = map[int]bool{}
			for i, r := range fwd.Rules {
				if !r.Opaque && strings.HasPrefix(r.Comment, prefix) && isCnikitComment(r.Comment) && !keep[r.Comment[:keyLen]] {
					gone[i] = true
				}
			}
			// Every bridge with isolation rules is a candidate.
			bridges = map[string]bool{}
			if stage2 := t.Chain(isolationStage2); stage2 != nil {
				for _, r := range stage2.Rules {
					if r.OutIface != "" && r.Target == "DROP" && !r.NotOutIface && r.InIface == "" {
						bridges[r.OutIface] = true
					}
				}
			}
			return gone, bridges
		})
	return err
}

// status fails when iptables-restore is missing or the table cannot be read.
func (b iptablesBackend) status(context.Context) error {
	for _, f := range []iptables.Family{iptables.IPv4, iptables.IPv6} {
		if err := iptables.Available(f); err != nil {
			return err
		}
		if _, err := b.readFilter(f); err != nil {
			return err
		}
	}
	return nil
}
