package hostcost

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"

	"scatter/bench"
)

// Report is everything one Run measured.
type Report struct {
	Params  Params        `json:"params"`
	Machine bench.Machine `json:"machine"`
	Release Release       `json:"release"`
	Rounds  []Round       `json:"rounds"`
	// Summary is the median and min–max of each figure over the rounds,
	// by name (SummaryRows gives the names, in the report's order).
	Summary map[string]Spread `json:"summary"`
	// AriaSkipped says why the aria2c part did not run, if it did not.
	AriaSkipped string `json:"aria2c_skipped,omitempty"`
	// Identical: every staged and materialized tree equals the source.
	Identical bool `json:"identical"`
}

// Params are the run's settings, defaults filled in.
type Params struct {
	Size       int64    `json:"size"`
	Rounds     int      `json:"rounds"`
	Seed       uint64   `json:"seed"`
	AppLoad    bool     `json:"app_load,omitempty"`
	AppWorkers int      `json:"app_workers,omitempty"`
	Share      []string `json:"share,omitempty"`
}

// Release is the one release every round fetches.
type Release struct {
	ID    string `json:"id"`
	Files int    `json:"files"`
	Bytes int64  `json:"bytes"` // uncompressed
	S     int64  `json:"s"`     // bytes of its full torrent: the compressed chunks
}

// Round is one round's figures. Seconds throughout.
type Round struct {
	N     int      `json:"round"`
	Order []string `json:"order"` // the steps, in the order they ran
	// Scatter is the host's fetch and stage.
	Scatter     Fetch  `json:"scatter"`
	Aria        *Child `json:"aria2c,omitempty"`
	Materialize Child  `json:"materialize"`
	Copy        Child  `json:"cp"`   // cp -a of the staged tree
	Sync        Child  `json:"sync"` // sync -f on the copy
	// StageOverAnchor is materialize's CPU over cp -a's and sync's;
	// DaemonStageOverAnchor the host daemon's staging CPU over the same;
	// TransferOverAria the host's transfer CPU over aria2c's (0 without it).
	StageOverAnchor       float64   `json:"stage_cpu_over_anchor"`
	DaemonStageOverAnchor float64   `json:"daemon_stage_cpu_over_anchor"`
	TransferOverAria      float64   `json:"transfer_cpu_over_aria2c,omitempty"`
	App                   *AppRound `json:"app,omitempty"`
}

// Fetch is one host's fetch and stage of the release.
type Fetch struct {
	// Wall is from the start of the fetch to staged, TransferWall to every
	// chunk in the store; both the host's own (its status).
	Wall         float64 `json:"wall_seconds"`
	TransferWall float64 `json:"transfer_wall_seconds"`
	// TransferCPU and StageCPU are the host daemon's CPU over those two
	// phases (swarm.ReleaseStatus: its process CPU at the start of the
	// fetch, when every chunk was in the store, and when staged).
	TransferCPU float64 `json:"transfer_cpu_seconds"`
	StageCPU    float64 `json:"stage_cpu_seconds"`
	// HostCPU is the host process's whole CPU from its start (join,
	// announcement, fetch, stage) until it was seen staged, from /proc;
	// StartToStaged the wall of the same.
	HostCPU       float64 `json:"host_cpu_seconds"`
	StartToStaged float64 `json:"start_to_staged_seconds"`
	OriginCPU     float64 `json:"origin_cpu_seconds"` // the origin's CPU meanwhile (serving)
	Bytes         int64   `json:"bytes"`              // the torrent's bytes the host fetched
	// PeakRSS is the host process's peak resident set size (VmHWM) when it
	// was seen staged: what fetching and staging this release took.
	PeakRSS int64 `json:"peak_rss_bytes"`
	// Failures counts the fetch attempts the harness saw fail before the
	// one measured (the daemon retries a failed fetch after 5 s).
	Failures int `json:"failures,omitempty"`
}

// Child is one child process's wall and CPU (its rusage).
type Child struct {
	Wall float64 `json:"wall_seconds"`
	CPU  float64 `json:"cpu_seconds"` // User + Sys
	User float64 `json:"user_seconds"`
	Sys  float64 `json:"sys_seconds"`
	// OriginCPU is the origin's CPU meanwhile (aria2c: serving it).
	OriginCPU float64 `json:"origin_cpu_seconds,omitempty"`
}

// AppRound is the stand-in application's part of a round.
type AppRound struct {
	// Alone is the application's throughput alone, in work units per
	// second: the mean of a window before and one after the fetches.
	Alone float64 `json:"alone_per_second"`
	// Default is a fetch by a host with the daemon's defaults, Share one
	// by a host run with Config.Share, each with the application running.
	Default AppFetch `json:"default"`
	Share   AppFetch `json:"share"`
}

// AppFetch is a fetch with the application running.
type AppFetch struct {
	Fetch
	// App is the application's throughput from the start of the fetch to
	// staged;
	// Relative that over Alone.
	App      float64 `json:"app_per_second"`
	Relative float64 `json:"app_relative"`
}

// Spread is a figure over the rounds.
type Spread struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	N      int     `json:"n"`
}

// SummaryRow names a figure of the summary.
type SummaryRow struct {
	Name, Label string
	get         func(Round) (float64, bool)
}

// SummaryRows are the summary's figures, in the report's order.
var SummaryRows = []SummaryRow{
	{"stage_cpu_over_anchor", "staging CPU ÷ anchor (materialize ÷ cp -a + sync -f)", func(r Round) (float64, bool) { return r.StageOverAnchor, true }},
	{"daemon_stage_cpu_over_anchor", "daemon staging CPU ÷ anchor", func(r Round) (float64, bool) { return r.DaemonStageOverAnchor, true }},
	// Staging's system time against the anchor's, and its user time
	// (decoding and hashing every chunk; cp -a's is near 0): which part of
	// the ratio above is the kernel's work of writing the tree.
	{"stage_sys_over_anchor", "staging system CPU ÷ anchor's", func(r Round) (float64, bool) {
		return ratio(r.Materialize.Sys, r.Copy.Sys+r.Sync.Sys), r.Copy.Sys+r.Sync.Sys > 0
	}},
	{"materialize_user_cpu", "materialize user CPU, s", func(r Round) (float64, bool) { return r.Materialize.User, true }},
	{"transfer_cpu_over_aria2c", "transfer CPU ÷ aria2c CPU", func(r Round) (float64, bool) { return r.TransferOverAria, r.Aria != nil }},
	{"scatter_wall", "scatter fetch+stage wall, s", func(r Round) (float64, bool) { return r.Scatter.Wall, true }},
	{"scatter_transfer_wall", "scatter transfer wall, s", func(r Round) (float64, bool) { return r.Scatter.TransferWall, true }},
	{"aria2c_wall", "aria2c wall, s", func(r Round) (float64, bool) { return ariaField(r, func(c *Child) float64 { return c.Wall }) }},
	{"materialize_wall", "materialize wall, s", func(r Round) (float64, bool) { return r.Materialize.Wall, true }},
	{"anchor_wall", "cp -a + sync -f wall, s", func(r Round) (float64, bool) { return r.Copy.Wall + r.Sync.Wall, true }},
	{"transfer_cpu", "scatter transfer CPU, s", func(r Round) (float64, bool) { return r.Scatter.TransferCPU, true }},
	{"stage_cpu", "scatter staging CPU, s", func(r Round) (float64, bool) { return r.Scatter.StageCPU, true }},
	{"host_cpu", "host process CPU, start to staged, s", func(r Round) (float64, bool) { return r.Scatter.HostCPU, true }},
	{"host_peak_rss_mib", "host process peak RSS, MiB", func(r Round) (float64, bool) { return mib(r.Scatter.PeakRSS), r.Scatter.PeakRSS > 0 }},
	{"aria2c_cpu", "aria2c CPU, s", func(r Round) (float64, bool) { return ariaField(r, func(c *Child) float64 { return c.CPU }) }},
	{"materialize_cpu", "materialize CPU, s", func(r Round) (float64, bool) { return r.Materialize.CPU, true }},
	{"anchor_cpu", "cp -a + sync -f CPU, s", func(r Round) (float64, bool) { return r.Copy.CPU + r.Sync.CPU, true }},
	{"app_default_relative", "app throughput during fetch ÷ alone, default daemon", func(r Round) (float64, bool) {
		return appField(r, func(a *AppRound) float64 { return a.Default.Relative })
	}},
	{"app_share_relative", "app throughput during fetch ÷ alone, with the share setting", func(r Round) (float64, bool) {
		return appField(r, func(a *AppRound) float64 { return a.Share.Relative })
	}},
	{"app_default_wall", "fetch+stage wall under app load, default daemon, s", func(r Round) (float64, bool) { return appField(r, func(a *AppRound) float64 { return a.Default.Wall }) }},
	{"app_share_wall", "fetch+stage wall under app load, with the share setting, s", func(r Round) (float64, bool) { return appField(r, func(a *AppRound) float64 { return a.Share.Wall }) }},
}

func ariaField(r Round, f func(*Child) float64) (float64, bool) {
	if r.Aria == nil {
		return 0, false
	}
	return f(r.Aria), true
}

func appField(r Round, f func(*AppRound) float64) (float64, bool) {
	if r.App == nil {
		return 0, false
	}
	return f(r.App), true
}

// ratio is a/b, or 0 when b is not positive.
func ratio(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return a / b
}

func (r *Round) ratios() {
	anchor := r.Copy.CPU + r.Sync.CPU
	r.StageOverAnchor = ratio(r.Materialize.CPU, anchor)
	r.DaemonStageOverAnchor = ratio(r.Scatter.StageCPU, anchor)
	if r.Aria != nil {
		r.TransferOverAria = ratio(r.Scatter.TransferCPU, r.Aria.CPU)
	}
}

// line is the round in one line, for progress.
func (r Round) line() string {
	s := fmt.Sprintf("scatter %.2fs (transfer %.2f CPU-s, stage %.2f), materialize %.2f CPU-s, cp+sync %.2f CPU-s",
		r.Scatter.Wall, r.Scatter.TransferCPU, r.Scatter.StageCPU, r.Materialize.CPU, r.Copy.CPU+r.Sync.CPU)
	if r.Aria != nil {
		s += fmt.Sprintf(", aria2c %.2fs %.2f CPU-s", r.Aria.Wall, r.Aria.CPU)
	}
	if n := r.Scatter.Failures; n > 0 {
		s += fmt.Sprintf(" (the host's fetch failed %d time(s) first and was retried: %.1fs from its start)", n, r.Scatter.StartToStaged)
	}
	return s
}

func (rep *Report) summarize() {
	rep.Summary = map[string]Spread{}
	for _, row := range SummaryRows {
		var xs []float64
		for _, r := range rep.Rounds {
			if v, ok := row.get(r); ok {
				xs = append(xs, v)
			}
		}
		if len(xs) > 0 {
			rep.Summary[row.Name] = spread(xs)
		}
	}
}

func spread(xs []float64) Spread {
	xs = slices.Clone(xs)
	slices.Sort(xs)
	n := len(xs)
	med := xs[n/2]
	if n%2 == 0 {
		med = (xs[n/2-1] + xs[n/2]) / 2
	}
	return Spread{Median: med, Min: xs[0], Max: xs[n-1], N: n}
}

// Print writes the report as text: the release, every round, the summary.
func (rep *Report) Print(w io.Writer) {
	rl := rep.Release
	fmt.Fprintf(w, "host cost: release %.12s, %d files, %.1f MiB (torrent S = %.1f MiB), %d rounds, %d cores (%s)\n",
		rl.ID, rl.Files, mib(rl.Bytes), mib(rl.S), len(rep.Rounds), rep.Machine.Cores, rep.Machine.CPU)
	if rep.AriaSkipped != "" {
		fmt.Fprintf(w, "aria2c skipped: %s\n", rep.AriaSkipped)
	}
	fmt.Fprintln(w, "round  order                                  scatter wall  transfer CPU  stage CPU  host CPU │ aria2c wall  CPU │ materialize wall  CPU │ cp+sync wall  CPU")
	for _, r := range rep.Rounds {
		aw, ac := "-", "-"
		if r.Aria != nil {
			aw, ac = fmt.Sprintf("%.2f", r.Aria.Wall), fmt.Sprintf("%.2f", r.Aria.CPU)
		}
		fmt.Fprintf(w, "%5d  %-38s %12.2f %13.2f %10.2f %9.2f │ %11s %4s │ %16.2f %4.2f │ %12.2f %4.2f\n",
			r.N, strings.Join(r.Order, ", "), r.Scatter.Wall, r.Scatter.TransferCPU, r.Scatter.StageCPU, r.Scatter.HostCPU,
			aw, ac, r.Materialize.Wall, r.Materialize.CPU, r.Copy.Wall+r.Sync.Wall, r.Copy.CPU+r.Sync.CPU)
	}
	if rep.Params.AppLoad {
		share := strings.Join(rep.Params.Share, " ")
		if share == "" {
			share = "none (both hosts run with the defaults)"
		}
		fmt.Fprintf(w, "stand-in application (%d CPU workers), share setting: %s\n", rep.Params.AppWorkers, share)
		for _, r := range rep.Rounds {
			if a := r.App; a != nil {
				fmt.Fprintf(w, "%5d  alone %.0f/s; default daemon: app %.0f%% of alone, fetch+stage %.2fs, host CPU %.2f; share: app %.0f%%, fetch+stage %.2fs, host CPU %.2f\n",
					r.N, a.Alone, 100*a.Default.Relative, a.Default.Wall, a.Default.HostCPU, 100*a.Share.Relative, a.Share.Wall, a.Share.HostCPU)
			}
		}
	}
	fmt.Fprintln(w, "summary (median, min–max over rounds):")
	for _, row := range SummaryRows {
		if s, ok := rep.Summary[row.Name]; ok {
			fmt.Fprintf(w, "  %-62s %7.2f  %7.2f–%.2f\n", row.Label, s.Median, s.Min, s.Max)
		}
	}
	fmt.Fprintf(w, "trees identical to the source: %v\n", rep.Identical)
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// Problems lists what is wrong with rep, if anything, unless it is a
// complete, consistent report of rounds rounds: trees identical, every
// figure positive, the host's phases within its process's CPU. The smoke
// test and `scatter bench` use it.
func (rep *Report) Problems(rounds int) []string {
	var out []string
	bad := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	if !rep.Identical {
		bad("trees differ from the source")
	}
	if len(rep.Rounds) != rounds || rep.Release.S <= 0 || rep.Release.Files <= 0 {
		bad("%d rounds of %d, release %+v", len(rep.Rounds), rounds, rep.Release)
	}
	// /proc counts in ticks of 10 ms, rusage finer. Staging's own CPU may
	// come to nothing if it overlaps the transfer; the transfer's cannot.
	const tick = 0.02
	checkFetch := func(n int, what string, f Fetch) {
		if f.Wall <= 0 || f.TransferWall <= 0 || f.TransferWall > f.Wall || f.StartToStaged < f.Wall-tick ||
			f.TransferCPU <= 0 || f.StageCPU < 0 || f.HostCPU < f.TransferCPU+f.StageCPU-tick ||
			f.Bytes != rep.Release.S || f.OriginCPU <= 0 || f.PeakRSS <= 0 {
			bad("round %d %s: %+v", n, what, f)
		}
	}
	for _, r := range rep.Rounds {
		checkFetch(r.N, "scatter", r.Scatter)
		for _, c := range []struct {
			name string
			c    Child
		}{{"materialize", r.Materialize}, {"cp", r.Copy}, {"sync", r.Sync}} {
			if c.c.Wall <= 0 || c.c.CPU < 0 || math.Abs(c.c.CPU-c.c.User-c.c.Sys) > 1e-9 {
				bad("round %d %s: %+v", r.N, c.name, c.c)
			}
		}
		if r.Materialize.CPU <= 0 || r.Copy.CPU+r.Sync.CPU <= 0 || r.StageOverAnchor <= 0 {
			bad("round %d: staging CPU %.3f over anchor %.3f", r.N, r.Materialize.CPU, r.Copy.CPU+r.Sync.CPU)
		}
		switch {
		case rep.AriaSkipped == "" && (r.Aria == nil || r.Aria.Wall <= 0 || r.TransferOverAria <= 0):
			bad("round %d aria2c: %+v", r.N, r.Aria)
		case rep.AriaSkipped != "" && r.Aria != nil:
			bad("round %d: aria2c ran although skipped", r.N)
		}
		if rep.Params.AppLoad {
			if a := r.App; a == nil || a.Alone <= 0 || a.Default.Relative <= 0 || a.Share.Relative <= 0 {
				bad("round %d app: %+v", r.N, a)
			} else {
				checkFetch(r.N, "app default", a.Default.Fetch)
				checkFetch(r.N, "app share", a.Share.Fetch)
			}
		}
	}
	for _, name := range []string{"stage_cpu_over_anchor", "scatter_wall", "materialize_cpu"} {
		if s, ok := rep.Summary[name]; !ok || s.N != len(rep.Rounds) || !(s.Min <= s.Median && s.Median <= s.Max) {
			bad("summary %s: %+v", name, s)
		}
	}
	return out
}
