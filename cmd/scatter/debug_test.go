package main

import (
	"os"
	"runtime/debug"
	"testing"
)

// The daemon collects at daemonGCPercent unless GOGC is set, which wins.
func TestTuneGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	t.Setenv("GOGC", "")
	os.Unsetenv("GOGC")
	if got := tuneGC(); got != daemonGCPercent {
		t.Fatalf("GOGC unset: %d, want %d", got, daemonGCPercent)
	}
	if p := debug.SetGCPercent(daemonGCPercent); p != daemonGCPercent {
		t.Fatalf("runtime collects at %d, want %d", p, daemonGCPercent)
	}
	t.Setenv("GOGC", "200")
	debug.SetGCPercent(200) // as the runtime read it at start
	if got := tuneGC(); got != 200 {
		t.Fatalf("GOGC=200: %d, want 200", got)
	}
}
