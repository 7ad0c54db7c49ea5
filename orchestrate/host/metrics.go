package host

import (
	"os"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"scatter/orchestrate/command"
	"scatter/orchestrate/version"
	"scatter/swarm"
)

// A host's metrics are read at scrape time from what it already keeps: the
// swarm node's status (byte counters, releases, stalls, bans), membership,
// and the few counters below, which exist only because nothing else
// counts acks, actions and deploy reports. Labels are repo, and a small
// fixed set of states, results and reasons; never a host name or a release
// ID, which would make a series per host or per release.

// counters are the host's own event counts since it started.
type counters struct {
	mu sync.Mutex
	// actions run on this host by a command, by repo and result.
	actions map[[2]string]float64
	// acks this host received as a deploy's controller, by repo and result.
	acks map[[2]string]float64
	// commands refused before running anything.
	refused float64
	// deploys reported by `scatter deploy` through the control socket.
	deploys      map[[2]string]float64 // repo, outcome
	phases       map[[2]string]float64 // repo, phase: phases begun
	phaseSeconds map[[2]string]float64 // repo, phase
	running      map[string]string     // repo → phase of the deploy in progress
}

func newCounters() *counters {
	return &counters{
		actions: map[[2]string]float64{}, acks: map[[2]string]float64{},
		deploys: map[[2]string]float64{}, phases: map[[2]string]float64{},
		phaseSeconds: map[[2]string]float64{}, running: map[string]string{},
	}
}

func (c *counters) ranActions(a *command.Ack) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if a.Refused {
		c.refused++
		return
	}
	for _, r := range a.Results {
		c.actions[[2]string{a.Repo, okOrFailed(r.OK)}]++
	}
}

func (c *counters) refusedCommand() {
	c.mu.Lock()
	c.refused++
	c.mu.Unlock()
}

func (c *counters) receivedAck(a *command.Ack) {
	result := okOrFailed(a.OK)
	if a.Refused {
		result = "refused"
	}
	c.mu.Lock()
	c.acks[[2]string{a.Repo, result}]++
	c.mu.Unlock()
}

func okOrFailed(ok bool) string {
	if ok {
		return "ok"
	}
	return "failed"
}

// DeployReport is what `scatter deploy` tells its daemon as the deploy goes,
// through the control socket, so the deploy host's metrics show deploys
// although each runs in a process of its own.
type DeployReport struct {
	Repo string `json:"repo"`
	// Phase, when set, is the phase that began ("stage", "canary",
	// "batch 3", "rollback"…).
	Phase string `json:"phase,omitempty"`
	// Outcome, when set, ends the deploy: success, failed, rolled back…
	Outcome string `json:"outcome,omitempty"`
	// Phases are the spans of the ended deploy's phases, in seconds.
	Phases []PhaseSpan `json:"phases,omitempty"`
}

// PhaseSpan is one phase's name and length.
type PhaseSpan struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
}

// phaseKind folds "batch 3" into "batch": a label takes few values.
func phaseKind(p string) string {
	p = strings.TrimSpace(p)
	if i := strings.IndexByte(p, ' '); i > 0 && strings.Trim(p[i+1:], "0123456789") == "" {
		p = p[:i]
	}
	return p
}

func (c *counters) deployReport(r DeployReport) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r.Phase != "" {
		ph := phaseKind(r.Phase)
		c.phases[[2]string{r.Repo, ph}]++
		c.running[r.Repo] = ph
	}
	if r.Outcome != "" {
		c.deploys[[2]string{r.Repo, strings.ReplaceAll(r.Outcome, " ", "_")}]++
		delete(c.running, r.Repo)
		for _, p := range r.Phases {
			c.phaseSeconds[[2]string{r.Repo, phaseKind(p.Name)}] += p.Seconds
		}
	}
}

// ReportDeploy records a deploy's progress (see DeployReport).
func (h *Host) ReportDeploy(r DeployReport) { h.count.deployReport(r) }

var (
	descBuild = prometheus.NewDesc("scatter_build_info",
		"The scatter build this daemon runs (always 1).", []string{"version", "revision", "goversion"}, nil)
	descReady = prometheus.NewDesc("scatter_ready",
		"1 when the daemon is ready (/readyz): joined, store readable, no fetch stalled.", nil, nil)
	descReleases = prometheus.NewDesc("scatter_releases",
		"Releases this host knows, by repo and state (queued, fetching, staged, failed).", []string{"repo", "state"}, nil)
	descStalled = prometheus.NewDesc("scatter_fetches_stalled",
		"Fetches making no progress now, by repo and reason.", []string{"repo", "reason"}, nil)
	descFromOrigin = prometheus.NewDesc("scatter_received_from_origin_bytes_total",
		"Useful piece bytes received from the origin.", nil, nil)
	descFromPeers = prometheus.NewDesc("scatter_received_from_peers_bytes_total",
		"Useful piece bytes received from other hosts.", nil, nil)
	descSent = prometheus.NewDesc("scatter_sent_bytes_total",
		"Piece bytes sent to peers, over the peer wire and as stripes.", nil, nil)
	descMetaSent = prometheus.NewDesc("scatter_metadata_sent_bytes_total",
		"Manifest and torrent info bytes served to peers.", nil, nil)
	descPeers = prometheus.NewDesc("scatter_peers_connected",
		"Open peer-wire connections, over all torrents.", nil, nil)
	descBanned = prometheus.NewDesc("scatter_peers_banned",
		"Peers banned for sending data that failed verification.", nil, nil)
	descStalls = prometheus.NewDesc("scatter_stalls_total",
		"Fetch stalls begun, by reason.", []string{"reason"}, nil)
	descWriteFails = prometheus.NewDesc("scatter_write_failures_total",
		"Received blocks that could not be written (disk full, I/O error).", nil, nil)
	descStaging = prometheus.NewDesc("scatter_staging_seconds",
		"Fetch and stage time of the newest staged release, by repo.", []string{"repo"}, nil)
	descActions = prometheus.NewDesc("scatter_actions_total",
		"Named actions (restart, checks, hooks) run on this host, by repo and result.", []string{"repo", "result"}, nil)
	descRefused = prometheus.NewDesc("scatter_commands_refused_total",
		"Deploy commands refused before anything ran (bad signature, replay, undefined action…).", nil, nil)
	descAcks = prometheus.NewDesc("scatter_acks_received_total",
		"Acks received as a deploy's controller, by repo and result (ok, failed, refused).", []string{"repo", "result"}, nil)
	descMembers = prometheus.NewDesc("scatter_gossip_members",
		"Members as gossip sees them: alive, or gone (known, not alive now).", []string{"state"}, nil)
	descFormat = prometheus.NewDesc("scatter_gossip_format_refused_total",
		"Gossip messages refused because their format version is one this build cannot read (a newer scatter).", nil, nil)
	descRefusedStmt = prometheus.NewDesc("scatter_statements_refused_total",
		"Host statements (acks, holds, state, meta) refused, by what and reason (not-enrolled, bad-signature, unknown-version…).", []string{"reason"}, nil)
	descDeploys = prometheus.NewDesc("scatter_deploys_total",
		"Deploys and rollbacks run from this host, by repo and outcome.", []string{"repo", "outcome"}, nil)
	descPhases = prometheus.NewDesc("scatter_deploy_phases_total",
		"Deploy phases begun on this host, by repo and phase (stage, canary, observe, batch, rollback).", []string{"repo", "phase"}, nil)
	descPhaseSeconds = prometheus.NewDesc("scatter_deploy_phase_seconds_total",
		"Time spent in each deploy phase, by repo and phase.", []string{"repo", "phase"}, nil)
	descRunning = prometheus.NewDesc("scatter_deploy_running",
		"1 while a deploy of the repo runs from this host.", []string{"repo"}, nil)
)

// collector reads a host's metrics at scrape time.
type collector struct{ h *Host }

var _ prometheus.Collector = collector{}

// Collector returns the host's metrics as a prometheus.Collector, read at
// each scrape. Register it in a registry of the caller's (Config.Metrics
// does it at Start).
func (h *Host) Collector() prometheus.Collector { return collector{h} }

func (collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descBuild, descReady, descReleases, descStalled, descFromOrigin, descFromPeers,
		descSent, descMetaSent, descPeers, descBanned, descStalls, descWriteFails, descStaging, descActions, descRefused,
		descAcks, descMembers, descFormat, descRefusedStmt, descDeploys, descPhases, descPhaseSeconds, descRunning} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	h := c.h
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	in := version.Get()
	gauge(descBuild, 1, h.cfg.Build, in.Revision, in.Go)

	st := h.sw.Status()
	health := h.health(st)
	gauge(descReady, b2f(health.Ready))
	counter(descFromOrigin, float64(st.ReceivedFromOrigin))
	counter(descFromPeers, float64(st.ReceivedFromPeers))
	counter(descSent, float64(st.Uploaded))
	counter(descMetaSent, float64(st.UploadedMeta))
	gauge(descPeers, float64(st.PeersConnected))
	gauge(descBanned, float64(len(st.BadPeers)))
	counter(descWriteFails, float64(st.WriteFailures))
	for _, r := range swarm.StallReasons {
		counter(descStalls, float64(st.Stalls[r]), string(r))
	}
	for _, r := range st.Repos {
		states := map[swarm.State]int{}
		stalled := map[swarm.StallReason]int{}
		staged := false
		for _, rel := range r.Releases { // newest first
			states[rel.State]++
			if rel.Stuck != "" {
				stalled[rel.StuckReason]++
			}
			if !staged && rel.State == swarm.Staged && rel.Seconds > 0 {
				gauge(descStaging, rel.Seconds, r.Repo)
				staged = true
			}
		}
		for _, s := range []swarm.State{swarm.Queued, swarm.Fetching, swarm.Staged, swarm.Failed} {
			gauge(descReleases, float64(states[s]), r.Repo, s.String())
		}
		for reason, n := range stalled {
			gauge(descStalled, float64(n), r.Repo, string(reason))
		}
	}

	alive := map[string]bool{}
	for _, m := range h.ml.Members() {
		if m.Alive {
			alive[m.Name] = true
		}
	}
	h.mu.Lock()
	gone := 0
	for name := range h.states {
		if !alive[name] {
			gone++
		}
	}
	h.mu.Unlock()
	gauge(descMembers, float64(len(alive)), "alive")
	gauge(descMembers, float64(gone), "gone")
	counter(descFormat, float64(h.ml.Stats().FormatRefused))
	for reason, n := range h.tally.Counts() {
		counter(descRefusedStmt, float64(n), reason)
	}

	k := h.count
	k.mu.Lock()
	defer k.mu.Unlock()
	counter(descRefused, k.refused)
	for l, v := range k.actions {
		counter(descActions, v, l[0], l[1])
	}
	for l, v := range k.acks {
		counter(descAcks, v, l[0], l[1])
	}
	for l, v := range k.deploys {
		counter(descDeploys, v, l[0], l[1])
	}
	for l, v := range k.phases {
		counter(descPhases, v, l[0], l[1])
	}
	for l, v := range k.phaseSeconds {
		counter(descPhaseSeconds, v, l[0], l[1])
	}
	for repo := range k.running {
		gauge(descRunning, 1, repo)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Health is what /healthz and /readyz answer, and what `scatter status`
// exits by.
type Health struct {
	// Ready: joined, store readable, no fetch stalled.
	Ready bool `json:"ready"`
	// Joined is false when this host expects company (told to --join, or
	// remembering members from before a restart) and gossip shows it alone.
	Joined bool `json:"joined"`
	// Store is "" when the data directory reads, else why not.
	Store string `json:"store,omitempty"`
	// Stalled lists this host's stalled fetches: "repo release: why".
	Stalled []string `json:"stalled,omitempty"`
}

// Health reports whether the host is ready.
func (h *Host) Health() Health { return h.health(h.sw.Status()) }

func (h *Host) health(st swarm.Status) Health {
	alive := 0
	for _, m := range h.ml.Members() {
		if m.Alive {
			alive++
		}
	}
	// Expected to have company: told to join, or remembering members.
	expect := len(h.cfg.Join) > 0 || h.ml.Joined().Remembered > 0
	hl := Health{Joined: !expect || alive >= 2}
	if _, err := os.ReadDir(h.cfg.DataDir); err != nil {
		hl.Store = err.Error()
	}
	for _, r := range st.Repos {
		for _, rel := range r.Releases {
			if rel.Stuck != "" {
				hl.Stalled = append(hl.Stalled, r.Repo+" "+rel.Release.Short()+": "+rel.Stuck)
			}
		}
	}
	hl.Ready = hl.Joined && hl.Store == "" && len(hl.Stalled) == 0
	return hl
}
