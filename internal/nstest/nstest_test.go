package nstest

import (
	"strings"
	"testing"
)

func TestNewIsolatedAndRemoved(t *testing.T) {
	var path string
	t.Run("inner", func(t *testing.T) {
		ns := New(t)
		path = ns.Path()
		out := ns.MustRun("ip", "-o", "link", "show")
		if strings.Contains(out, "eth0") || !strings.Contains(out, "lo:") {
			t.Fatalf("namespace is not fresh:\n%s", out)
		}
	})
	if _, err := New(t).Run("true"); err != nil {
		t.Fatal(err)
	}
	if path == "" {
		t.Fatal("no namespace was made")
	}
}
