package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"scatter/bench/fanout"
	"scatter/bench/hostcost"
	"scatter/bench/netns"
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
	out := mustRun(t, "bench", "--hosts", hosts, "--size", size, "--su", su, "--json-out", js, "--plot", svg)
	for _, want := range []string{"fan-out", "central / P2P", "command to last ack", "peak RSS", "identical to its source: true"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	rep := readReport(t, js)
	for _, p := range rep.Problems(rep.Params.Hosts) {
		t.Error(p)
	}
	if rep.Machine.CPU == "" && rep.Machine.OS == "linux/amd64" {
		t.Error("no CPU model")
	}
	b, err := os.ReadFile(svg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), "<svg") || !strings.Contains(string(b), "S/U limit") || !strings.Contains(string(b), "central") {
		t.Errorf("--plot: %.200s", b)
	}
}

// TestBenchHostSmoke runs `scatter bench --scenario host` small, one round
// with the stand-in application, and checks the run's correctness, not its
// speed: the staged and materialized trees equal the source, every figure
// is positive and the host's phases fit in its process's CPU, and the
// aria2c part ran, or was skipped with a message if aria2c is absent
// (.ci/run installs it).
func TestBenchHostSmoke(t *testing.T) {
	bin := scatterBinary(t)
	js := filepath.Join(t.TempDir(), "host.json")
	cmd := exec.Command(bin, "bench", "--scenario", "host", "--size", "4MiB", "--rounds", "1", "--app-load", "--json-out", js)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("scatter bench --scenario host: %v\n%s\n%s", err, out, stderr.String())
	}
	for _, want := range []string{"staging CPU ÷ anchor", "staging system CPU ÷ anchor's", "scatter fetch+stage wall", "app throughput during fetch", "identical to the source: true"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	b, err := os.ReadFile(js)
	if err != nil {
		t.Fatal(err)
	}
	var rep hostcost.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	for _, p := range rep.Problems(1) {
		t.Error(p)
	}
	_, lookErr := exec.LookPath("aria2c")
	switch {
	case lookErr != nil && (rep.AriaSkipped == "" || !strings.Contains(stderr.String(), "aria2c is not installed")):
		t.Errorf("aria2c absent, but no message says it was skipped: %q\n%s", rep.AriaSkipped, stderr.String())
	case lookErr == nil && rep.Summary["transfer_cpu_over_aria2c"].N != 1:
		t.Errorf("aria2c installed, but no transfer ratio: %+v", rep.Summary)
	}
}

func TestBenchUsage(t *testing.T) {
	for _, args := range [][]string{{"bench", "--scenario", "3dc"}, {"bench", "--upload", "fast"}, {"bench", "--hosts", "2", "--central-hosts", "3"},
		{"bench", "--scenario", "2dc", "--dc-link", "2U"}, {"bench", "--netns", "--dc-link", "2U"}, {"bench", "--dc-blind"},
		{"bench", "--netns", "--scenario", "2dc", "--dc-link", "fastU"}, {"bench", "--bridges", "2"},
		{"bench", "--scenario", "2dc", "--bridges", "-1"}, {"bench", "--netns-uncapped"},
		{"bench", "--rounds", "3"}, {"bench", "--app-load"}, {"bench", "--scenario", "host", "--share", "--nice 5"},
		{"bench", "--scenario", "host", "--netns"}, {"bench", "--scenario", "host", "--rounds", "-1"}} {
		if _, _, code := run(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

// TestBenchNetnsSmoke runs `scatter bench --netns` small: each host a real
// `scatter seed` process in its own network namespace, shaped by tc. It
// checks the harness (every tree identical, figures consistent, mode
// recorded, namespaces removed), not the speed.
func TestBenchNetnsSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("about 20 s of real processes; runs without -short")
	}
	if err := netns.Check(); err != nil {
		t.Skip(err)
	}
	// --daemon-procs: every daemon runs with seed --procs, as the report says.
	out, rep, stderr := runNetnsBench(t, "--hosts", "4", "--size", "4MiB", "--su", "3s", "--central-hosts", "2", "--daemon-procs", "1")
	for _, want := range []string{"mode netns", "fan-out", "central / P2P", "daemon processes", "identical to its source: true",
		"each daemon with --procs 1"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if rep.Params.Mode != fanout.Netns || rep.Params.Hosts != 4 || rep.Params.DaemonProcs != 1 {
		t.Errorf("params %+v", rep.Params)
	}
	for _, p := range rep.Problems(4) {
		t.Error(p)
	}
	// The daemons' counters reach the report: the hosts received S from
	// the origin and each other, and the origin sent at least a copy.
	if f := rep.FanOut; f.OriginUpS < 0.9 || f.FromPeers <= 0 || rep.Resources.PeakRSSPerHost <= 0 {
		t.Errorf("origin sent %.2f S, from peers %.0f per host, peak RSS per daemon %d", f.OriginUpS, f.FromPeers, rep.Resources.PeakRSSPerHost)
	}
	// Each daemon reports its own CPU per phase: a fetch costs some, and
	// staging a cold release writes every file.
	for _, h := range rep.FanOut.Hosts {
		if h.TransferCPU <= 0 || h.StageCPU <= 0 {
			t.Errorf("%s: transfer CPU %.3f s, staging CPU %.3f s: want both reported", h.Name, h.TransferCPU, h.StageCPU)
		}
	}
	if !strings.Contains(out, "CPU per host (median, as each daemon reports it)") {
		t.Errorf("report lacks the per-phase CPU line:\n%s", out)
	}
	if t.Failed() {
		t.Logf("stderr:\n%s", stderr)
	}
}

// TestBenchNetnsTwoDCSmoke runs `scatter bench --netns --scenario 2dc`
// small: the two datacenters on two switches joined by a shaped link. At
// least a copy of the release must cross to dc2 (it has hosts, and no
// stripe of its own), and with one bridge per side not much more; the
// count is every byte on the link, gossip and control too.
func TestBenchNetnsTwoDCSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("about 25 s of real processes; runs without -short")
	}
	if err := netns.Check(); err != nil {
		t.Skip(err)
	}
	out, rep, stderr := runNetnsBench(t, "--scenario", "2dc", "--hosts", "5", "--size", "4MiB", "--su", "3s", "--dc-link", "2U")
	for _, want := range []string{"mode netns", "every byte on the link between the DCs", "dc1→dc2", "identical to its source: true"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if p := rep.Params; p.Mode != fanout.Netns || p.Scenario != fanout.TwoDC || p.DCLinkU != 2 || p.DCLink != 2*p.Upload {
		t.Errorf("params %+v", p)
	}
	for _, p := range rep.Problems(5) {
		t.Error(p)
	}
	f := rep.FanOut
	S := float64(f.S)
	if f.CrossDC != f.CrossDC1To2+f.CrossDC2To1 || float64(f.CrossDC1To2) < 0.95*S || float64(f.CrossDC) > 4*S {
		t.Errorf("cold: %d bytes crossed (%d to dc2, %d back), S = %d: want at least a copy to dc2, at most 4 in all",
			f.CrossDC, f.CrossDC1To2, f.CrossDC2To1, f.S)
	}
	if t.Failed() {
		t.Logf("stderr:\n%s", stderr)
	}
}

// runNetnsBench runs the built binary's `scatter bench --netns` with args,
// checks that it left no namespace behind, and returns its report as
// printed and as written by --json, and its stderr. It skips where
// namespaces cannot be made.
func runNetnsBench(t *testing.T, args ...string) (string, fanout.Report, string) {
	t.Helper()
	bin := scatterBinary(t)
	dir := t.TempDir()
	js := filepath.Join(dir, "bench.json")
	cmd := exec.Command(bin, append(append([]string{"bench", "--netns"}, args...), "--json-out", js, "--dir", dir)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if left := namespacesOf(t, cmd.Process.Pid); len(left) > 0 {
		t.Errorf("namespaces left behind: %v", left)
	}
	if err != nil {
		if strings.Contains(errOut.String(), netns.ErrUnavailable.Error()) {
			t.Skipf("namespaces unavailable: %s", errOut.String())
		}
		t.Fatalf("scatter bench --netns %v: %v\n%s\n%s", args, err, out.String(), errOut.String())
	}
	rep := readReport(t, js)
	return out.String(), rep, errOut.String()
}

// readReport reads what `scatter bench --json` wrote.
func readReport(t *testing.T, path string) fanout.Report {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rep fanout.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("--json: %v", err)
	}
	return rep
}

// namespacesOf lists the network namespaces bench/netns made in process pid.
func namespacesOf(t *testing.T, pid int) []string {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], fmt.Sprintf("scb%d-", pid)) {
			left = append(left, f[0])
		}
	}
	return left
}
