package iptables

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/cnikit/cnikit/internal/nstest"
)

func TestScriptSyntax(t *testing.T) {
	s := NewScript("filter")
	if !s.Empty() {
		t.Fatal("a new script is not empty")
	}
	r := Rule{Source: HostNet(net.ParseIP("10.0.0.2")), Comment: `k, net: n`, Target: "ACCEPT"}
	s.NewChain("CNI-FORWARD")
	s.Insert("FORWARD", 1, Rule{Target: "CNI-FORWARD"})
	s.Append("CNI-FORWARD", r)
	s.Delete("CNI-FORWARD", r)
	want := "*filter\n:CNI-FORWARD - [0:0]\n-I FORWARD 1 -j CNI-FORWARD\n" +
		"-A CNI-FORWARD -s 10.0.0.2/32 -m comment --comment \"k, net: n\" -j ACCEPT\n" +
		"-D CNI-FORWARD -s 10.0.0.2/32 -m comment --comment \"k, net: n\" -j ACCEPT\nCOMMIT\n"
	if s.String() != want {
		t.Errorf("script:\n%s\nwant:\n%s", s, want)
	}
}

func TestValidName(t *testing.T) {
	for name, want := range map[string]bool{
		"CNI-ADMIN": true, "cni0": true, "br_1.2@x": true, "": false, "-X": false, "!a": false,
		"a b": false, `a"b`: false, "br+": false, strings.Repeat("a", 29): false, strings.Repeat("a", 28): true,
	} {
		if got := ValidName(name, MaxChainName); got != want {
			t.Errorf("ValidName(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestRestoreAppliesAtomically(t *testing.T) {
	ns := nstest.New(t)
	good := NewScript("filter")
	good.NewChain("T1")
	good.Append("T1", Rule{Destination: HostNet(net.ParseIP("fd00::1")), CtState: "RELATED,ESTABLISHED", Target: "ACCEPT"})
	bad := NewScript("filter")
	bad.NewChain("T2")
	bad.Delete("T1", Rule{Target: "DROP"}) // no such rule: the whole script fails
	ns.Do(func() error {
		if err := Restore(context.Background(), IPv6, good); err != nil {
			t.Fatal(err)
		}
		if err := Restore(context.Background(), IPv6, bad); err == nil {
			t.Error("a script deleting a missing rule succeeded")
		}
		if err := Restore(context.Background(), IPv6, NewScript("filter")); err != nil {
			t.Errorf("empty script: %v", err)
		}
		table, err := Read(IPv6, "filter", "T1")
		if err != nil {
			return err
		}
		if table.Chain("T2") != nil || table.Chain("T1") == nil || len(table.Chain("T1").Rules) != 1 {
			t.Errorf("after the good and the failed script: %+v", table.Chains)
		}
		return nil
	})
}
