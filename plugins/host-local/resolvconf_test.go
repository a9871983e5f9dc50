package hostlocal

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/cnikit/cnikit/cni"
)

func TestParseResolvConf(t *testing.T) {
	tests := []struct {
		name, content string
		want          cni.DNS
	}{
		{"every keyword", "nameserver 10.0.0.53\nnameserver fd00::53\ndomain example.org\nsearch a.example b.example\noptions ndots:5 edns0\n",
			cni.DNS{Nameservers: []string{"10.0.0.53", "fd00::53"}, Domain: "example.org", Search: []string{"a.example", "b.example"}, Options: []string{"ndots:5", "edns0"}}},
		{"comments, blanks, unknown keywords and bare keywords", "# generated\n; also a comment\n\n  nameserver   10.0.0.1  \nsortlist 10.0.0.0\nsearch\ndomain\n",
			cni.DNS{Nameservers: []string{"10.0.0.1"}}},
		{"later domain wins, search and options add up", "domain a\ndomain b\nsearch x\nsearch y\noptions rotate\noptions timeout:1\n",
			cni.DNS{Domain: "b", Search: []string{"x", "y"}, Options: []string{"rotate", "timeout:1"}}},
		{"empty", "", cni.DNS{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "resolv.conf")
			if err := os.WriteFile(path, []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := parseResolvConf(path)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
	if _, err := parseResolvConf(filepath.Join(t.TempDir(), "missing")); cni.CodeOf(err) != cni.CodeInvalidNetworkConfig {
		t.Errorf("missing file: %v", err)
	}
}
