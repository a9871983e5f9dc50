package interop

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	// The same binary is the init of every sandbox (sandbox_test.go).
	if spec, ok := os.LookupEnv(sandboxInitEnv); ok {
		os.Exit(runSandboxInit(spec))
	}
	code := m.Run()
	removeBusyboxImage()
	os.Exit(code)
}
