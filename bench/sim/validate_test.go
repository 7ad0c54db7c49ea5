package sim

import (
	"bytes"
	"encoding/json"
	"flag"
	"math"
	"os"
	"path/filepath"
	"testing"

	"scatter/bench/plot"
)

var update = flag.Bool("update", false, "rewrite testdata/validate32.svg")

// harnessRun is what swarm's BenchmarkFanOut writes with -fanout.json.
type harnessRun struct {
	Hosts    int       `json:"hosts"`
	Size     int64     `json:"size"`
	PieceLen int64     `json:"piece_len"`
	Upload   int64     `json:"upload"`
	SU       float64   `json:"su_seconds"`
	OriginUp float64   `json:"origin_up"`
	Ratios   []float64 `json:"ratios"`
}

// validateTolerance is how far, relatively, each of the simulator's host
// quantiles may sit from the real harness's.
const validateTolerance = 0.15

// TestValidate32 runs the simulator with the parameters of a real 32-host
// BenchmarkFanOut run (testdata/real32.json, made by
//
//	CGO_ENABLED=0 go test ./swarm -run XXX -bench FanOut -benchtime 1x -fanout.hosts 32 \
//	  -fanout.size 167772160 -fanout.su 120 -fanout.json bench/sim/testdata/real32.json
//
// ) and checks that the completion curves agree: the k-th host to complete
// does so within 15% of the same time in both. With -update it redraws
// testdata/validate32.svg.
func TestValidate32(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "real32.json"))
	if err != nil {
		t.Fatal(err)
	}
	var real harnessRun
	if err := json.Unmarshal(b, &real); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Hosts: real.Hosts, Size: real.Size, PieceLen: real.PieceLen, Upload: float64(real.Upload), Seed: 1}
	r := run(t, cfg)
	sim := r.Ratios()
	if len(sim) != len(real.Ratios) {
		t.Fatalf("sim has %d hosts, the harness %d", len(sim), len(real.Ratios))
	}
	worst := 0.0
	for k := range sim {
		d := math.Abs(sim[k]-real.Ratios[k]) / real.Ratios[k]
		worst = max(worst, d)
		if d > validateTolerance {
			t.Errorf("host %d of %d: sim %.3f S/U, harness %.3f S/U (%.0f%% apart)", k+1, len(sim), sim[k], real.Ratios[k], 100*d)
		}
	}
	t.Logf("median sim %.3f harness %.3f; last sim %.3f harness %.3f S/U; origin sim %.2f harness %.2f S; worst quantile %.1f%% apart",
		r.Ratio(r.Median()), real.Ratios[len(real.Ratios)/2], r.Ratio(r.Last()), real.Ratios[len(real.Ratios)-1],
		float64(r.OriginUp)/float64(cfg.Size), real.OriginUp, 100*worst)
	if !*update {
		return
	}
	var svg bytes.Buffer
	err = plot.WriteSVG(&svg, "32 hosts, S = 64.8 MiB, S/U = 121.6 s: harness vs simulator", plot.Linear,
		plot.Curve{Name: "swarm harness (BenchmarkFanOut)", Ratios: real.Ratios},
		plot.Curve{Name: "bench/sim", Ratios: sim})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join("testdata", "validate32.svg"), svg.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}
