package hostcost

import (
	"path/filepath"
	"strings"
	"testing"
)

// The run itself is tested through the binary it drives:
// TestBenchHostSmoke in cmd/scatter.

func TestValidate(t *testing.T) {
	ok := Config{Dir: "/tmp/x", Binary: "/bin/scatter"}
	if err := ok.Validate(); err != nil {
		t.Errorf("%+v: %v", ok, err)
	}
	for _, c := range []Config{
		{Binary: "b"}, {Dir: "d"}, {Dir: "d", Binary: "b", Size: 1000}, {Dir: "d", Binary: "b", Rounds: -1},
		{Dir: "d", Binary: "b", Rounds: 101}, {Dir: "d", Binary: "b", AppWorkers: -2},
	} {
		if c.Validate() == nil {
			t.Errorf("%+v: valid", c)
		}
	}
}

func TestSpread(t *testing.T) {
	for _, tc := range []struct {
		xs   []float64
		want Spread
	}{
		{[]float64{3}, Spread{3, 3, 3, 1}},
		{[]float64{4, 1, 3, 2}, Spread{2.5, 1, 4, 4}},
		{[]float64{5, 1, 9}, Spread{5, 1, 9, 3}},
	} {
		if got := spread(tc.xs); got != tc.want {
			t.Errorf("spread(%v) = %+v, want %+v", tc.xs, got, tc.want)
		}
	}
}

func TestSummaryTakesWhatRan(t *testing.T) {
	rep := &Report{Rounds: []Round{
		{N: 1, StageOverAnchor: 2, Aria: &Child{CPU: 1}, TransferOverAria: 4},
		{N: 2, StageOverAnchor: 1},
	}}
	rep.summarize()
	if s := rep.Summary["stage_cpu_over_anchor"]; s.N != 2 || s.Median != 1.5 {
		t.Errorf("stage ratio %+v", s)
	}
	if s := rep.Summary["transfer_cpu_over_aria2c"]; s.N != 1 || s.Median != 4 {
		t.Errorf("aria ratio over the one round that ran it: %+v", s)
	}
	if _, ok := rep.Summary["app_share_relative"]; ok {
		t.Error("an app figure without an app part")
	}
}

// A run whose rounds would not fit refuses to start, saying what to change;
// one that fits goes on.
func TestCheckSpace(t *testing.T) {
	cfg := Config{Dir: t.TempDir(), Rounds: 5, Size: 1 << 50}
	err := checkSpace(cfg)
	if err == nil || !strings.Contains(err.Error(), "fewer --rounds") || !strings.Contains(err.Error(), cfg.Dir) {
		t.Fatalf("5 rounds of 1 PiB: %v", err)
	}
	cfg.Size = 1 << 20
	if err := checkSpace(cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Dir = filepath.Join(cfg.Dir, "missing")
	if err := checkSpace(cfg); err == nil {
		t.Fatal("a missing directory passed")
	}
}
