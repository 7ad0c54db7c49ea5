package fanout

import (
	"math"
	"scatter/bench"
	"slices"
	"syscall"
	"time"
)

// Report is everything one run measured, with its parameters and the
// machine. Times are seconds; ratios are to S/U of the release's full
// torrent unless named otherwise.
type Report struct {
	Params  Params  `json:"params"`
	Machine Machine `json:"machine"`
	Release Release `json:"release"`
	// FanOut is the first release reaching every host, no host holding
	// anything before.
	FanOut FanOut `json:"fanout"`
	// Deltas are the next releases: a code change, then a localisation
	// update, each reaching hosts that hold its parent.
	Deltas []FanOut `json:"deltas"`
	// Central is the baseline: hosts fetching the release from the origin
	// alone over HTTP, at the origin's cap.
	Central Central `json:"central"`
	// CentralOverP2P is the central time at Params.Hosts hosts over the
	// P2P time of the last host.
	CentralOverP2P float64 `json:"central_over_p2p"`
	// Deploys are the rollouts of each release, in order.
	Deploys []Deploy `json:"deploys"`
	// Identical: every host's current tree equals its source after every
	// deploy.
	Identical bool      `json:"identical"`
	Resources Resources `json:"resources"`
	Seconds   float64   `json:"seconds"` // the whole run
}

// Modes of Params.Mode.
const (
	Inproc = "inproc"
	Netns  = "netns"
)

// Params are the run's parameters after defaults.
type Params struct {
	// Mode is how hosts ran: Inproc (every host in the bench process,
	// capped by rate limiters) or Netns (scatter seed processes in network
	// namespaces, capped by tc).
	Mode string `json:"mode"`
	// LinkHeadroom, in netns mode with the daemons capped at U: tc shapes
	// each link to LinkHeadroom·U. Absent: the link is U and the daemons
	// are uncapped (or in-process).
	LinkHeadroom float64 `json:"link_headroom,omitempty"`
	// DaemonProcs, in netns mode, is each daemon's --procs (absent: none
	// given, Go's default of every core).
	DaemonProcs  int     `json:"daemon_procs,omitempty"`
	Hosts        int     `json:"hosts"`
	Size         int64   `json:"size"` // generated tree bytes (uncompressed)
	Upload       int64   `json:"upload"`
	OriginUpload int64   `json:"origin_upload"`
	TargetSU     float64 `json:"target_su_seconds,omitempty"` // when Upload was derived
	Scenario     string  `json:"scenario"`
	// DCLink is the 2dc link's rate each way in netns mode (bytes per
	// second), DCLinkU the same over U; absent in-process, where the link
	// is not shaped.
	DCLink  int64   `json:"dc_link,omitempty"`
	DCLinkU float64 `json:"dc_link_u,omitempty"`
	// DCBlind: 2dc without DC labels, peers chosen blind.
	DCBlind bool `json:"dc_blind,omitempty"`
	// Bridges: hosts per datacenter that fetch across (0: the default).
	Bridges      int    `json:"bridges,omitempty"`
	Seed         uint64 `json:"seed"`
	CentralHosts int    `json:"central_hosts"`
	Canary       int    `json:"canary"`
	Batch        string `json:"batch"`
}

// Machine describes where the run ran.
type Machine = bench.Machine

// Release describes the first release.
type Release struct {
	ID     string `json:"id"`
	Files  int    `json:"files"`
	Bytes  int64  `json:"bytes"`  // uncompressed
	S      int64  `json:"s"`      // full torrent bytes
	Chunks int    `json:"chunks"` // distinct chunks
}

// HostResult is one host's part of one fan-out.
type HostResult struct {
	Name       string  `json:"name"`
	Seconds    float64 `json:"seconds"` // from the announcement until it held every chunk; +Inf never
	Ratio      float64 `json:"ratio"`   // Seconds / (S/U)
	FromOrigin int64   `json:"from_origin"`
	FromPeers  int64   `json:"from_peers"`
	Uploaded   int64   `json:"uploaded"`
	CrossDC    int64   `json:"cross_dc,omitempty"` // received from the other datacenter (2dc)
	Note       string  `json:"note,omitempty"`     // churned, late, slow (U/4), dc2
	// TransferCPU and StageCPU are the host's CPU seconds for the fetch
	// until every chunk was stored, and for staging the tree after it, as
	// its daemon reports them (netns mode: one process per host; in
	// process they would be the whole process's, and are left out).
	TransferCPU float64 `json:"transfer_cpu_seconds,omitempty"`
	StageCPU    float64 `json:"stage_cpu_seconds,omitempty"`
}

// FanOut is one release's distribution to every host.
type FanOut struct {
	Name    string `json:"name"` // cold, code change, l10n update
	Release string `json:"release"`
	Kind    string `json:"kind"`  // the torrent hosts fetched: full or delta
	Bytes   int64  `json:"bytes"` // that torrent's bytes
	// S and SU are of the full release the ratios refer to: for deltas,
	// the full torrent of the new release.
	S        int64   `json:"s"`
	U        int64   `json:"u"`
	UOrigin  int64   `json:"u_origin"`
	SU       float64 `json:"su_seconds"`
	Median   float64 `json:"median_seconds"`
	P90      float64 `json:"p90_seconds"`
	P99      float64 `json:"p99_seconds"`
	Last     float64 `json:"last_seconds"`
	MedianSU float64 `json:"median_su"`
	P90SU    float64 `json:"p90_su"`
	P99SU    float64 `json:"p99_su"`
	LastSU   float64 `json:"last_su"`
	// OriginUploaded is what the origin sent (stripes and peer wire);
	// OriginUpS is that over S.
	OriginUploaded int64   `json:"origin_uploaded"`
	OriginUpS      float64 `json:"origin_up_s"`
	// Per host means of the bytes received from the origin and from peers;
	// PerHostOverS is their sum over S (deltas: the delta's share).
	FromOrigin   float64 `json:"from_origin_per_host"`
	FromPeers    float64 `json:"from_peers_per_host"`
	PerHostOverS float64 `json:"per_host_over_s"`
	// CrossDC is what crossed between the datacenters (2dc only):
	// in-process the sum of HostResult.CrossDC, the payload hosts received
	// from the other datacenter; in netns mode every byte the link carried
	// (payload, gossip, metadata, control, headers), CrossDC1To2 one way
	// and CrossDC2To1 the other, and HostResult.CrossDC is absent.
	CrossDC     int64 `json:"cross_dc,omitempty"`
	CrossDC1To2 int64 `json:"cross_dc_1to2,omitempty"`
	CrossDC2To1 int64 `json:"cross_dc_2to1,omitempty"`
	// TransferCPU and StageCPU are the medians of the hosts' (netns mode).
	TransferCPU float64      `json:"transfer_cpu_seconds_median,omitempty"`
	StageCPU    float64      `json:"stage_cpu_seconds_median,omitempty"`
	Wall        float64      `json:"wall_seconds"` // until the last host staged (materialized)
	CPUSeconds  float64      `json:"cpu_seconds"`  // process CPU over Wall
	CPUPercent  float64      `json:"cpu_percent"`
	Hosts       []HostResult `json:"hosts"`
}

// Central is the central baseline.
type Central struct {
	Hosts    int     `json:"hosts"` // measured with this many hosts
	Release  string  `json:"release"`
	S        int64   `json:"s"`
	UOrigin  int64   `json:"u_origin"`
	Measured float64 `json:"measured_seconds"` // until the last of Hosts had S
	// Formula is Hosts·S/U_origin; MeasuredOverFormula checks it.
	Formula             float64   `json:"formula_seconds"`
	MeasuredOverFormula float64   `json:"measured_over_formula"`
	Each                []float64 `json:"each_seconds"`
	// AtN is the central time at Params.Hosts hosts: measured if Hosts is
	// that many, else N·S/U_origin scaled by MeasuredOverFormula.
	AtN   float64 `json:"at_n_seconds"`
	AtNSU float64 `json:"at_n_su"`
}

// Deploy is one rollout, from the deploy command to the last ack.
type Deploy struct {
	Release string  `json:"release"`
	Outcome string  `json:"outcome"`
	Reason  string  `json:"reason,omitempty"`
	Seconds float64 `json:"seconds"` // deploy.Run's start to its end
	// LastAck is from the start to the last ack received.
	LastAck  float64   `json:"last_ack_seconds"`
	Acks     int       `json:"acks"`
	Phases   []Phase   `json:"phases"`
	Failures []string  `json:"failures,omitempty"`
	Current  int       `json:"hosts_current"` // hosts whose current is the release afterwards
	Compared bool      `json:"compared"`      // trees compared with the source
	Same     bool      `json:"identical"`
	Started  time.Time `json:"started"`
}

// Phase is one rollout phase's span, in seconds from the deploy's start.
type Phase struct {
	Name    string  `json:"name"`
	Start   float64 `json:"start"`
	Seconds float64 `json:"seconds"`
}

// Resources are the process's, since every host runs in it.
type Resources struct {
	CPUSeconds        float64 `json:"cpu_seconds"` // user+system, whole run
	CPUSecondsPerHost float64 `json:"cpu_seconds_per_host_equivalent"`
	// DaemonCPUSeconds is the scatter seed processes' alone (netns mode):
	// what the hosts and the origin paid, without the harness's generation,
	// builds, polling and tree comparisons.
	DaemonCPUSeconds        float64 `json:"daemon_cpu_seconds,omitempty"`
	DaemonCPUSecondsPerHost float64 `json:"daemon_cpu_seconds_per_host_equivalent,omitempty"`
	PeakRSS                 int64   `json:"peak_rss_bytes"` // the process's, all hosts together
	PeakRSSPerHost          int64   `json:"peak_rss_per_host_equivalent"`
	Note                    string  `json:"note"`
}

// quantile is the sorted time at index min(n-1, floor(q·n)), the rule
// swarm's BenchmarkFanOut and bench/sim use.
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	return sorted[min(len(sorted)-1, max(0, int(q*float64(len(sorted)))))]
}

func (f *FanOut) summarize() {
	var ts []float64
	var fo, fp int64
	for _, h := range f.Hosts {
		ts = append(ts, h.Seconds)
		fo += h.FromOrigin
		fp += h.FromPeers
		f.CrossDC += h.CrossDC
	}
	var tc, sc []float64
	for _, h := range f.Hosts {
		if h.TransferCPU > 0 || h.StageCPU > 0 {
			tc, sc = append(tc, h.TransferCPU), append(sc, h.StageCPU)
		}
	}
	if len(tc) > 0 {
		slices.Sort(tc)
		slices.Sort(sc)
		f.TransferCPU, f.StageCPU = quantile(tc, 0.5), quantile(sc, 0.5)
	}
	slices.Sort(ts)
	f.Median, f.P90, f.P99, f.Last = quantile(ts, 0.5), quantile(ts, 0.9), quantile(ts, 0.99), quantile(ts, 1)
	f.MedianSU, f.P90SU, f.P99SU, f.LastSU = f.Median/f.SU, f.P90/f.SU, f.P99/f.SU, f.Last/f.SU
	if n := float64(len(f.Hosts)); n > 0 {
		f.FromOrigin, f.FromPeers = float64(fo)/n, float64(fp)/n
		f.PerHostOverS = (f.FromOrigin + f.FromPeers) / float64(f.S)
	}
	f.OriginUpS = float64(f.OriginUploaded) / float64(f.S)
	if f.Wall > 0 {
		f.CPUPercent = 100 * f.CPUSeconds / f.Wall
	}
}

// Ratios returns the hosts' completion ratios, sorted.
func (f *FanOut) Ratios() []float64 {
	var out []float64
	for _, h := range f.Hosts {
		out = append(out, h.Ratio)
	}
	slices.Sort(out)
	return out
}

// cpuSeconds is the process's user+system CPU time so far.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

// peakRSS is the process's peak resident set size in bytes.
func peakRSS() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Maxrss << 10 // KiB on Linux
}
