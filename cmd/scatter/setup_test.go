package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMain keeps the tests from reading this machine's scatter settings:
// no SCATTER_* variable from the environment, and SCATTER_CONFIG set empty
// so that `scatter seed`, here and in the daemons the tests start, never
// loads /etc/scatter/seed.yaml. With hostileEnv set, the binary is
// TestE2EHostile's hostile daemon instead.
func TestMain(m *testing.M) {
	if os.Getenv(hostileEnv) != "" {
		os.Exit(hostileMain(os.Args[1:]))
	}
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "SCATTER_") {
			os.Unsetenv(k)
		}
	}
	os.Setenv("SCATTER_CONFIG", "")
	code := m.Run()
	// scatterBinary builds once per test process, into a directory of
	// its own; every run used to leave a 37 MB binary in $TMPDIR.
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}
