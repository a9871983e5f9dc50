package iptables

import (
	"strings"
	"testing"

	"github.com/cnikit/cnikit/internal/nstest"
)

// rulesToRead are rules of the shapes the firewall plugin writes or finds
// (the reference plugin's among them), plus ones this package does not model.
var rulesToRead = map[Family][]string{
	IPv4: {
		"-N CNI-FORWARD",
		"-N CNI-ADMIN",
		"-I FORWARD 1 -m comment --comment \"CNI firewall plugin rules\" -j CNI-FORWARD",
		"-A CNI-FORWARD -m comment --comment \"CNI firewall plugin admin overrides\" -j CNI-ADMIN",
		"-A CNI-FORWARD -d 10.88.0.2/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
		"-A CNI-FORWARD -s 10.88.0.2/32 -j ACCEPT",
		"-A CNI-FORWARD -s 10.88.0.3/32 -m comment --comment \"abc0123, net: n1, if: eth0, id: c1\" -j ACCEPT",
		"-A CNI-FORWARD -s 10.88.0.0/16 -j RETURN",
		"-A CNI-FORWARD -s 10.89.0.0/20 -j RETURN",
		"-A CNI-FORWARD -i cni0 ! -o cni0 -j DROP",
		"-A CNI-FORWARD -i br+ -j DROP",
		"-A CNI-FORWARD -p tcp --dport 22 -j DROP",
		"-A CNI-FORWARD -j LOG",
		"-P FORWARD DROP",
	},
	IPv6: {
		"-N CNI-FORWARD",
		"-I FORWARD 1 -j CNI-FORWARD",
		"-A CNI-FORWARD -d fd00::2/128 -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment \"k, net: n\" -j ACCEPT",
		"-A CNI-FORWARD -s fd00::/64 -o cni0 -j ACCEPT",
	},
}

func TestReadMatchesSave(t *testing.T) {
	for _, flavour := range []string{"nft", "legacy"} {
		for _, f := range []Family{IPv4, IPv6} {
			t.Run(flavour+"/"+f.String(), func(t *testing.T) {
				ns := nstest.New(t)
				cmd := f.String() + "-" + flavour
				for _, line := range rulesToRead[f] {
					args := splitArgs(t, line)
					ns.MustRun(cmd, args...)
				}
				var table *Table
				var err error
				ns.Do(func() error {
					if flavour == "legacy" {
						table, err = readLegacy(f, "filter", []string{"FORWARD", "CNI-FORWARD"})
					} else {
						table, err = readNFT(f, "filter", []string{"FORWARD", "CNI-FORWARD"})
					}
					return err
				})
				wantPolicy := "ACCEPT"
				if f == IPv4 {
					wantPolicy = "DROP"
				}
				if c := table.Chain("FORWARD"); c == nil || c.Policy != wantPolicy {
					t.Fatalf("FORWARD: %+v, want policy %s", c, wantPolicy)
				}
				if flavour == "nft" {
					ns.Do(func() error {
						got := map[Family]*Chain{}
						err := lookupNFTChains("filter", "FORWARD", []Family{f}, got)
						if c := got[f]; err != nil || c == nil || c.Policy != wantPolicy {
							t.Errorf("lookupNFTChains(FORWARD) = %+v, %v; want policy %s", c, err, wantPolicy)
						}
						err = lookupNFTChains("filter", "NO-SUCH", []Family{f}, got)
						if c, ok := got[f]; c != nil || !ok || err != nil {
							t.Errorf("lookupNFTChains(NO-SUCH) = %+v, %v; want nil, nil", c, err)
						}
						return nil
					})
				}
				if table.Chain("CNI-FORWARD") == nil || (f == IPv4 && table.Chain("CNI-ADMIN") == nil) {
					t.Fatalf("chains: %v", table.Chains)
				}
				// iptables-save is the oracle: every modelled rule's Spec is
				// the line it prints, in order.
				save := ns.MustRun(cmd+"-save", "-t", "filter")
				for _, chain := range []string{"FORWARD", "CNI-FORWARD"} {
					var want []string
					for _, l := range strings.Split(save, "\n") {
						if strings.HasPrefix(l, "-A "+chain+" ") {
							want = append(want, strings.TrimPrefix(l, "-A "+chain+" "))
						}
					}
					got := table.Chain(chain).Rules
					if len(got) != len(want) {
						t.Fatalf("%s: read %d rules, iptables-save lists %d:\n%+v\n%s", chain, len(got), len(want), got, save)
					}
					for i, r := range got {
						opaque := strings.Contains(want[i], "-p tcp") || strings.Contains(want[i], "-j LOG")
						if r.Opaque != opaque {
							t.Errorf("%s rule %d %q: Opaque = %v", chain, i, want[i], r.Opaque)
						}
						if !opaque && r.Spec() != want[i] {
							t.Errorf("%s rule %d:\n got %s\nwant %s", chain, i, r.Spec(), want[i])
						}
					}
				}
			})
		}
	}
}

func TestReadMissingTable(t *testing.T) {
	ns := nstest.New(t)
	for _, f := range []Family{IPv4, IPv6} {
		ns.Do(func() error {
			for name, read := range map[string]func(Family, string, []string) (*Table, error){"nft": readNFT, "legacy": readLegacy} {
				table, err := read(f, "filter", []string{"FORWARD"})
				if err != nil || len(table.Chains) != 0 {
					t.Errorf("%s %s in an empty namespace: %v, %v", name, f, table.Chains, err)
				}
			}
			return nil
		})
		// Reading must not have created the legacy table.
		if out, _ := ns.Run("cat", "/proc/net/ip_tables_names"); strings.Contains(out, "filter") {
			t.Errorf("reading created the legacy filter table")
		}
	}
}

// splitArgs splits a command line, honouring double quotes.
func splitArgs(t *testing.T, line string) []string {
	t.Helper()
	var args []string
	var cur strings.Builder
	quoted, started := false, false
	for _, r := range line {
		switch {
		case r == '"':
			quoted, started = !quoted, true
		case r == ' ' && !quoted:
			if started {
				args = append(args, cur.String())
				cur.Reset()
				started = false
			}
		default:
			cur.WriteRune(r)
			started = true
		}
	}
	if started {
		args = append(args, cur.String())
	}
	return args
}
