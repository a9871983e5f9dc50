package nft

import (
	"fmt"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
)

// The reference plugins' nftables masquerade (containernetworking/plugins
// v1.6.0 and later with ipMasqBackend "nftables") keeps one rule per address
// in table inet cni_plugins_masquerade, chain masq_checks, commented with the
// same Attachment.Comment. cnikit removes an attachment's rules there on DEL
// and GC so that a host upgraded from the reference leaks nothing. Its
// iptables rules (chains CNI-<hash> in table nat) are left alone: cnikit
// starts no iptables process.
const (
	ReferenceMasqTable = "cni_plugins_masquerade"
	ReferenceMasqChain = "masq_checks"
)

var (
	referenceTable = &nftables.Table{Family: nftables.TableFamilyINet, Name: ReferenceMasqTable}
	referenceChain = &nftables.Chain{Table: referenceTable, Name: ReferenceMasqChain}
)

// referenceRules returns the rules of masq_checks whose comment satisfies
// match; none when the table does not exist (the usual case).
func (c *Conn) referenceRules(match func(comment string) bool) ([]*nftables.Rule, error) {
	rules, err := c.nft.GetRules(referenceTable, referenceChain)
	if IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing nftables chain %s %s: %w", ReferenceMasqTable, ReferenceMasqChain, err)
	}
	var out []*nftables.Rule
	for _, r := range rules {
		comment, _ := userdata.GetString(r.UserData, userdata.TypeComment)
		if match(comment) {
			out = append(out, r)
		}
	}
	return out, nil
}

func (c *Conn) queueRuleDeletes(rules []*nftables.Rule) error {
	for _, r := range rules {
		if err := c.nft.DelRule(r); err != nil {
			return fmt.Errorf("queueing removal of reference masquerade rule: %w", err)
		}
		c.queued++
	}
	return nil
}

// DelReferenceMasquerade queues the deletion of the attachment's rules in the
// reference plugins' nftables masquerade table, and reports how many.
func (c *Conn) DelReferenceMasquerade(a Attachment) (int, error) {
	key := a.Key()
	rules, err := c.referenceRules(func(comment string) bool { return strings.HasPrefix(comment, key) })
	if err != nil {
		return 0, err
	}
	return len(rules), c.queueRuleDeletes(rules)
}

// GCReferenceMasquerade queues the deletion of network's rules in the
// reference table whose attachment is not in keep, and reports how many.
func (c *Conn) GCReferenceMasquerade(network string, keep KeepSet) (int, error) {
	rules, err := c.referenceRules(func(comment string) bool { return keep.stale(network, comment) })
	if err != nil {
		return 0, err
	}
	return len(rules), c.queueRuleDeletes(rules)
}
