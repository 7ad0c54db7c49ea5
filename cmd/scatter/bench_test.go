package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"scatter/bench/fanout"
)

// TestBenchSmoke runs `scatter bench` small with a generous U and checks
// the run's correctness and its files, not its speed.
func TestBenchSmoke(t *testing.T) {
	dir := t.TempDir()
	js, svg := filepath.Join(dir, "bench.json"), filepath.Join(dir, "bench.svg")
	hosts, size, su := "4", "2MiB", "2s"
	if testing.Short() {
		hosts, size, su = "3", "1MiB", "1s"
	}
	out := mustRun(t, "bench", "--hosts", hosts, "--size", size, "--su", su, "--json", js, "--plot", svg)
	for _, want := range []string{"fan-out", "central / P2P", "command to last ack", "peak RSS", "identical to its source: true"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	b, err := os.ReadFile(js)
	if err != nil {
		t.Fatal(err)
	}
	var rep fanout.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("--json: %v", err)
	}
	for _, p := range rep.Problems(rep.Params.Hosts) {
		t.Error(p)
	}
	if rep.Machine.CPU == "" && rep.Machine.OS == "linux/amd64" {
		t.Error("no CPU model")
	}
	b, err = os.ReadFile(svg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), "<svg") || !strings.Contains(string(b), "S/U limit") || !strings.Contains(string(b), "central") {
		t.Errorf("--plot: %.200s", b)
	}
}

func TestBenchUsage(t *testing.T) {
	for _, args := range [][]string{{"bench", "--scenario", "3dc"}, {"bench", "--upload", "fast"}, {"bench", "--hosts", "2", "--central-hosts", "3"}} {
		if _, _, code := run(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}
