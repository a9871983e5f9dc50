package rundir

import "testing"

func TestRoot(t *testing.T) {
	cases := []struct{ env, want string }{
		{"", "/run/cni"},
		{"relative/dir", "/run/cni"},
		{"/tmp/state/", "/tmp/state"},
	}
	for _, tc := range cases {
		t.Run(tc.env, func(t *testing.T) {
			t.Setenv(Env, tc.env)
			if got := Root(); got != tc.want {
				t.Fatalf("Root() = %q, want %q", got, tc.want)
			}
			if got := Plugin("portmap"); got != tc.want+"/portmap" {
				t.Fatalf("Plugin(portmap) = %q", got)
			}
		})
	}
}
