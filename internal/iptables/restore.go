package iptables

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
)

// Script is a batch of changes to one table, in iptables-restore syntax.
type Script struct {
	table string
	lines []string
}

// NewScript starts a batch of changes to table.
func NewScript(table string) *Script { return &Script{table: table} }

// NewChain creates a user chain. With --noflush, iptables-restore empties a
// chain declared this way when it exists: declare only missing chains.
func (s *Script) NewChain(name string) { s.lines = append(s.lines, ":"+name+" - [0:0]") }

// Append adds r at the end of chain.
func (s *Script) Append(chain string, r Rule) { s.lines = append(s.lines, "-A "+chain+" "+r.Spec()) }

// Insert adds r at position pos (1 is the first) of chain.
func (s *Script) Insert(chain string, pos int, r Rule) {
	s.lines = append(s.lines, fmt.Sprintf("-I %s %d %s", chain, pos, r.Spec()))
}

// Delete removes the first rule of chain that is r. iptables-restore fails
// (and changes nothing) when there is none: delete only rules that were read.
func (s *Script) Delete(chain string, r Rule) { s.lines = append(s.lines, "-D "+chain+" "+r.Spec()) }

// Empty reports whether the script changes nothing.
func (s *Script) Empty() bool { return len(s.lines) == 0 }

// String is the script as iptables-restore reads it.
func (s *Script) String() string {
	return "*" + s.table + "\n" + strings.Join(s.lines, "\n") + "\nCOMMIT\n"
}

// Restore applies the script atomically with one `iptables-restore
// --noflush --wait` (ip6tables-restore for IPv6) found in PATH. The process
// is started from the calling thread, so it works in that thread's network
// namespace. An empty script starts nothing.
func Restore(ctx context.Context, f Family, s *Script) error {
	if s.Empty() {
		return nil
	}
	cmd := exec.CommandContext(ctx, f.RestoreCommand(), "--noflush", "--wait")
	cmd.Stdin = strings.NewReader(s.String())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w: %s", f.RestoreCommand(), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// Legacy reports whether the family's iptables-restore in PATH is the legacy
// (x_tables) flavour; anything else is taken as iptables-nft, the default of
// current distributions.
func Legacy(f Family) bool {
	path, err := exec.LookPath(f.RestoreCommand())
	if err != nil {
		return false
	}
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	return strings.Contains(filepath.Base(path), "legacy")
}

// Available reports whether the family's iptables-restore is in PATH.
func Available(f Family) error {
	if _, err := exec.LookPath(f.RestoreCommand()); err != nil {
		return fmt.Errorf("%s not found: %w", f.RestoreCommand(), err)
	}
	return nil
}

// Read returns table's chains (with their policies) and the rules of the
// chains named in rulesOf, from the kernel, in the flavour of the family's
// iptables-restore. A table that does not exist yet reads as empty.
func Read(f Family, table string, rulesOf ...string) (*Table, error) {
	if Legacy(f) {
		return readLegacy(f, table, rulesOf)
	}
	return readNFT(f, table, rulesOf)
}

// LookupChain returns, per family, the named chain of table with its policy
// but without its rules, or nil when it does not exist: one request per
// family over one connection for the nft flavour, where Read lists every
// chain.
func LookupChain(table, name string, families ...Family) (map[Family]*Chain, error) {
	out := map[Family]*Chain{}
	var nftFamilies []Family
	for _, f := range families {
		if !Legacy(f) {
			nftFamilies = append(nftFamilies, f)
			continue
		}
		t, err := readLegacy(f, table, nil)
		if err != nil {
			return nil, err
		}
		out[f] = t.Chain(name)
	}
	if len(nftFamilies) > 0 {
		if err := lookupNFTChains(table, name, nftFamilies, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}
