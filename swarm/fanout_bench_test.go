package swarm

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"testing"
	"time"
)

var (
	fanoutHosts = flag.Int("fanout.hosts", 32, "hosts in BenchmarkFanOut")
	fanoutSize  = flag.Int64("fanout.size", 160<<20, "generated tree size for BenchmarkFanOut (about 0.4 of it travels)")
	fanoutSU    = flag.Float64("fanout.su", 20, "S/U in seconds: the per-host upload cap is set from it")
	fanoutJSON  = flag.String("fanout.json", "", "write each host's completion time (as a ratio to S/U) to this JSON file, for bench/sim to validate against")
)

// fanoutResult is what -fanout.json writes; bench/sim reads it.
type fanoutResult struct {
	Hosts     int                `json:"hosts"`
	Size      int64              `json:"size"`       // S: bytes of the torrent
	PieceLen  int64              `json:"piece_len"`  // bytes
	Upload    int64              `json:"upload"`     // U: bytes per second, every host and the origin
	SU        float64            `json:"su_seconds"` // S/U
	OriginUp  float64            `json:"origin_up"`  // origin upload / S
	Ratios    []float64          `json:"ratios"`     // completion / (S/U), sorted
	ByHost    map[string]float64 `json:"by_host"`    // completion / (S/U)
	FromPeers map[string]int64   `json:"from_peers"` // bytes each host received over the peer wire
}

// BenchmarkFanOut publishes one release to many in-process hosts, every
// host and the origin capped at the same upload rate U, and reports each
// host's time to hold every chunk as a ratio to S/U (S: the bytes of the
// release's torrent), measured in the same run, with the origin's upload.
// Hosts do not materialize (SkipStage): this measures distribution.
//
//	go test ./swarm -run XXX -bench FanOut -benchtime 1x [-fanout.hosts 32 -fanout.size 167772160 -fanout.su 20]
func BenchmarkFanOut(b *testing.B) {
	src := genTree(b, *fanoutSize, false)
	for b.Loop() {
		fanOut(b, src, *fanoutHosts, *fanoutSU)
	}
}

func fanOut(b *testing.B, src string, n int, su float64) {
	b.StopTimer()
	c := newCluster(b)
	c.skipStage = true
	c.stallAfter = 0 // the daemon's default
	// S is known only after the build; start capped hosts at a provisional
	// rate and set S/U from the measured S below.
	est := int64(float64(*fanoutSize) * 0.4)
	U := int64(float64(est) / su)
	c.start("origin", 180, true, U)
	var names []string
	for i := range n {
		name := fmt.Sprintf("h%03d", i)
		names = append(names, name)
		c.start(name, 181+i, false, U)
	}
	sm, ann := c.prepare(src, "1")
	b.StartTimer()
	start := time.Now()
	c.announce(ann)
	c.waitStaged(sm, names, time.Duration(10*su)*time.Second)
	elapsed := time.Since(start)
	b.StopTimer()

	S := c.origin.Status().Repos[0].Releases[0].Total
	unit := float64(S) / float64(U)
	var ratios []float64
	var fromPeers int64
	res := fanoutResult{Hosts: n, Size: S, PieceLen: PieceLenFor(S), Upload: U, SU: unit,
		ByHost: map[string]float64{}, FromPeers: map[string]int64{}}
	for _, name := range names {
		st := c.nodes[name].Status()
		r := st.Repos[0].Releases[0].HeldAt.Sub(start).Seconds() / unit
		ratios = append(ratios, r)
		fromPeers += st.ReceivedFromPeers
		res.ByHost[name], res.FromPeers[name] = r, st.ReceivedFromPeers
	}
	sort.Float64s(ratios)
	pct := func(p float64) float64 { return ratios[min(len(ratios)-1, int(p*float64(len(ratios))))] }
	up := float64(c.origin.Engine().Uploaded()) / float64(S)
	b.ReportMetric(pct(0.5), "median/SU")
	b.ReportMetric(pct(0.9), "p90/SU")
	b.ReportMetric(ratios[len(ratios)-1], "last/SU")
	b.ReportMetric(up, "originUp/S")
	b.ReportMetric(float64(S)/(1<<20), "S-MiB")
	if *fanoutJSON != "" {
		res.Ratios, res.OriginUp = ratios, up
		out, err := json.MarshalIndent(res, "", "  ")
		if err == nil {
			err = os.WriteFile(*fanoutJSON, append(out, '\n'), 0o644)
		}
		if err != nil {
			b.Fatalf("fanout.json: %v", err)
		}
	}
	b.Logf("%d hosts, S=%.1f MiB, U=%.2f MiB/s, S/U=%.1fs: median %.2f, p90 %.2f, last %.2f S/U; origin uploaded %.2f S; peers supplied %.1f%% (%.1fs wall)",
		n, float64(S)/(1<<20), float64(U)/(1<<20), unit, pct(0.5), pct(0.9), ratios[len(ratios)-1], up,
		100*float64(fromPeers)/float64(int64(n)*S), elapsed.Seconds())
	for _, name := range append(names, "origin") {
		c.stop(name)
	}
	b.StartTimer()
}
