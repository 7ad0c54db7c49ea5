package fanout

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"scatter/artifact/core"
	"scatter/artifact/datadir"
	"scatter/bench"
	"scatter/bench/gen"
	"scatter/orchestrate/agent"
	"scatter/orchestrate/deploy"
	"scatter/orchestrate/rollout"
	"scatter/swarm"
)

// Scenarios Run knows.
const (
	Cold   = "cold"   // the default: a cold fan-out, then two deltas
	Churn  = "churn"  // 10% of hosts closed at 0.4 S/U, restarted at 1.5 S/U
	Late   = "late"   // 10% of hosts start at 0.5 S/U
	Hetero = "hetero" // 10% of hosts upload at U/4
	TwoDC  = "2dc"    // hosts alternate between two DC labels; bytes across counted
)

// Scenarios lists them, the default first.
var Scenarios = []string{Cold, Churn, Late, Hetero, TwoDC}

// Config sizes a run. The zero value of each field means its default.
type Config struct {
	Dir   string // work directory (must exist): trees, stores, every host's data
	Hosts int    // target hosts; default 32
	Size  int64  // generated tree bytes; default 64 MiB (S is about 0.4 of it)
	// Upload is U, every host's upload cap in bytes per second; default:
	// set from the built release so that S/U is TargetSU.
	Upload   int64
	TargetSU time.Duration // default 40 s
	// OriginUpload caps the origin; default Upload.
	OriginUpload int64
	Scenario     string // one of Scenarios; default Cold
	Seed         uint64 // generator seed; default 1
	// CentralHosts is how many hosts fetch from the origin alone for the
	// central baseline; default min(Hosts, 2). Its time grows as
	// CentralHosts·S/U_origin.
	CentralHosts int
	// Every host's current tree is compared with its source after the last
	// deploy (earlier trees are its ancestors: the deltas hard-link their
	// unchanged files); CompareAll compares after every deploy, NoCompare
	// never. A comparison of 32 hosts × 64 MiB takes 10–14 s on 2 cores.
	CompareAll, NoCompare bool
	// Netns runs the origin and every host as a `scatter seed` process
	// (Binary) in its own network namespace (bench/netns), each uplink
	// capped by tc instead of the in-process limiter. It needs root.
	Netns  bool
	Binary string // the scatter binary, for Netns
	// NetnsUncapped runs the daemons without their own upload cap, tc's
	// link at U the only limit. By default each daemon runs with
	// --upload-rate U on a link that tc shapes to LinkHeadroom·U, as an
	// operator would cap a daemon below its NIC: the daemon then decides
	// what leaves first (metadata before pieces, the origin's stripes in
	// turn), where without it every TCP flow gets a fair share of the link
	// and the kernel's buffers decide.
	NetnsUncapped bool
	// DaemonProcs, if positive, is each daemon's `scatter seed --procs` in
	// netns mode; 0 leaves Go's default (every core, for each daemon).
	DaemonProcs int
	// DCLink caps each direction of the link between the two datacenters
	// of the 2dc scenario, in bytes per second; DCLinkU gives it as a
	// multiple of U instead. Default 4·U: well below the sum of a
	// datacenter's uplinks, Hosts/2·U. Only in netns mode, where the
	// datacenters are two switches joined by that link (bench/netns);
	// in-process there is no link to shape.
	DCLink  int64
	DCLinkU float64
	// DCBlind places the 2dc scenario's hosts in their datacenters but
	// gives them no DC labels: the swarm chooses peers blind, the
	// baseline for its topology-aware choice.
	DCBlind bool
	// Bridges is swarm.Config.Bridges for every host; 0: the default.
	Bridges  int
	Log      *slog.Logger // nil: discard
	Progress io.Writer    // a line per step; nil: none
}

func (c *Config) setDefaults() {
	if c.Hosts <= 0 {
		c.Hosts = 32
	}
	if c.Size <= 0 {
		c.Size = 64 << 20
	}
	if c.TargetSU <= 0 {
		// 40 s: at 20 s the 33 in-process clients' peer-wire overhead
		// (have and request messages, which grow with hosts², not with
		// bytes) keeps 2 cores busy and the run measures the machine.
		c.TargetSU = 40 * time.Second
	}
	if c.Scenario == "" {
		c.Scenario = Cold
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.CentralHosts <= 0 {
		c.CentralHosts = 1 // it takes CentralHosts·S/U_origin
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
}

// Validate checks the configuration without changing it.
func (c Config) Validate() error {
	switch {
	case c.Dir == "":
		return errors.New("fanout: Dir is required")
	case c.Hosts < 0 || c.Hosts > 5000:
		return fmt.Errorf("fanout: %d hosts: want 1 to 5000", c.Hosts)
	case c.Upload < 0 || c.OriginUpload < 0:
		return errors.New("fanout: negative upload cap")
	case c.CentralHosts > c.Hosts && c.Hosts > 0:
		return fmt.Errorf("fanout: %d central hosts exceed the %d hosts", c.CentralHosts, c.Hosts)
	case c.Netns && c.Binary == "":
		return errors.New("fanout: Netns needs the scatter Binary")
	case c.DCLink < 0 || c.DCLinkU < 0:
		return errors.New("fanout: negative DC link rate")
	case c.DCLink > 0 && c.DCLinkU > 0:
		return errors.New("fanout: DCLink and DCLinkU both set")
	case (c.DCLink > 0 || c.DCLinkU > 0) && !(c.Netns && c.Scenario == TwoDC):
		return errors.New("fanout: a DC link rate needs the 2dc scenario in netns mode (in-process the link is not shaped)")
	case c.DCBlind && c.Scenario != TwoDC:
		return errors.New("fanout: DCBlind goes with the 2dc scenario")
	}
	for _, s := range Scenarios {
		if c.Scenario == "" || c.Scenario == s {
			return nil
		}
	}
	return fmt.Errorf("fanout: unknown scenario %q (want one of %v)", c.Scenario, Scenarios)
}

// run is one Run in progress.
type run struct {
	cfg   Config
	c     *cluster
	rep   *Report
	start time.Time
}

func (r *run) say(format string, args ...any) {
	fmt.Fprintf(r.cfg.Progress, "%6.1fs  %s\n", time.Since(r.start).Seconds(), fmt.Sprintf(format, args...))
}

// Run builds the cluster, runs the scenario and returns what it measured.
// The report is returned with an error too when the run got far enough to
// have figures (a deploy failed, a tree differed).
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	r := &run{cfg: cfg, c: newCluster(cfg.Dir), start: time.Now()}
	r.c.blind = cfg.DCBlind
	r.c.bridges = cfg.Bridges
	r.c.log = cfg.Log
	r.rep = &Report{Machine: bench.ThisMachine(), Identical: true, Params: Params{
		Mode: Inproc, Hosts: cfg.Hosts, Size: cfg.Size, Scenario: cfg.Scenario, Seed: cfg.Seed, CentralHosts: cfg.CentralHosts,
		DCBlind: cfg.DCBlind, Bridges: cfg.Bridges,
	}}
	if cfg.Netns {
		r.rep.Params.Mode = Netns
		var dcs []int
		if cfg.Scenario == TwoDC {
			for i := range cfg.Hosts + 1 {
				dcs = append(dcs, dcOf(i))
			}
		}
		nn, err := newNetnsFleet(ctx, cfg.Dir, cfg.Binary, cfg.Hosts+1, dcs, r.c)
		if err != nil {
			return nil, err
		}
		nn.uncapped = cfg.NetnsUncapped
		nn.gomaxprocs = cfg.DaemonProcs
		r.rep.Params.DaemonProcs = max(cfg.DaemonProcs, 0)
		r.c.nn = nn
		if !cfg.NetnsUncapped {
			r.rep.Params.LinkHeadroom = LinkHeadroom
		}
	}
	cpu0 := r.c.cpuSeconds()
	var daemon0 float64
	if r.c.nn != nil {
		daemon0 = r.c.nn.cpuSeconds()
	}
	err := r.run(ctx)
	res := &r.rep.Resources
	if cfg.Netns {
		r.c.close() // the daemons' last CPU and peak RSS are read as they stop
		res.CPUSeconds = r.c.cpuSeconds() - cpu0
		res.DaemonCPUSeconds = r.c.nn.cpuSeconds() - daemon0
		res.DaemonCPUSecondsPerHost = res.DaemonCPUSeconds / float64(cfg.Hosts+1)
		res.PeakRSS = r.c.nn.peakRSS
		res.PeakRSSPerHost = res.PeakRSS / int64(cfg.Hosts+1)
		res.Note = "this process (generation, builds, polling, tree comparisons) plus every scatter seed " +
			"process; CPU is divided by hosts+1, peak RSS is the sum of each daemon's peak, over hosts+1"
	} else {
		defer r.c.close()
		res.CPUSeconds = cpuSeconds() - cpu0
		res.PeakRSS = peakRSS()
		res.PeakRSSPerHost = res.PeakRSS / int64(cfg.Hosts+1)
		res.Note = "process-wide: every host and the origin run in this process, so CPU and peak RSS are " +
			"divided by hosts+1 (host-equivalents); generation, builds and tree comparisons are included"
	}
	res.CPUSecondsPerHost = res.CPUSeconds / float64(cfg.Hosts+1)
	r.rep.Seconds = time.Since(r.start).Seconds()
	if err != nil && r.rep.FanOut.Hosts == nil {
		return nil, err
	}
	return r.rep, err
}

func (r *run) run(ctx context.Context) error {
	cfg, c := r.cfg, r.c
	src := filepath.Join(cfg.Dir, "src")
	r.say("generating a %d MiB MediaWiki-like tree (seed %d)", cfg.Size>>20, cfg.Seed)
	gs, err := gen.Generate(src, gen.Config{Seed: cfg.Seed, TotalBytes: cfg.Size})
	if err != nil {
		return err
	}
	c.orig = c.add("origin", 0, 0)
	res, ann, S, err := c.build(ctx, src, "1")
	if err != nil {
		return err
	}
	U := cfg.Upload
	if U == 0 {
		U = max(1, int64(float64(S)/cfg.TargetSU.Seconds()))
		r.rep.Params.TargetSU = cfg.TargetSU.Seconds()
	}
	UO := cfg.OriginUpload
	if UO == 0 {
		UO = U
	}
	r.rep.Params.Upload, r.rep.Params.OriginUpload = U, UO
	r.rep.Release = Release{ID: res.Signed.ID.String(), Files: gs.Files, Bytes: gs.Bytes, Chunks: res.Chunks}
	r.say("release 1: %d files, %.1f MiB, %d chunks; U %.2f MiB/s, origin %.2f MiB/s", gs.Files,
		float64(gs.Bytes)/(1<<20), res.Chunks, float64(U)/(1<<20), float64(UO)/(1<<20))

	c.orig.up = UO
	if cfg.Scenario == TwoDC {
		c.orig.dc = dcNames[dcOf(0)]
		if cfg.Netns {
			link := cfg.DCLink
			if link == 0 {
				link = int64(cmp.Or(cfg.DCLinkU, DefaultDCLinkU) * float64(U))
			}
			if err := c.nn.net.ShapeDCLink(link); err != nil {
				return err
			}
			r.rep.Params.DCLink, r.rep.Params.DCLinkU = link, float64(link)/float64(U)
			r.say("2dc: the link between the datacenters shaped to %.2f MiB/s each way = %.2f·U", float64(link)/(1<<20), r.rep.Params.DCLinkU)
		}
	}
	nSpecial := max(1, (cfg.Hosts+9)/10) // the 10% a scenario treats differently
	var late []*node
	for i := range cfg.Hosts {
		n := c.add(fmt.Sprintf("h%03d", i+1), i+1, U)
		special := i >= cfg.Hosts-nSpecial
		switch {
		case cfg.Scenario == Hetero && special:
			n.up, n.note = U/4, "slow (U/4)"
		case cfg.Scenario == TwoDC:
			n.dc = dcNames[dcOf(i+1)]
			n.note = n.dc
		case cfg.Scenario == Churn && special:
			n.note = "churned"
		case cfg.Scenario == Late && special:
			n.note = "late"
		}
		c.hosts = append(c.hosts, n)
	}
	// As an operator's config management would: every host's key made
	// ahead, and one deploy-signed roster naming them all.
	if err := c.enrol(); err != nil {
		return err
	}
	if err := c.start(ctx, c.orig, true); err != nil {
		return err
	}
	for _, n := range c.hosts {
		if n.note == "late" {
			late = append(late, n)
			continue
		}
		if err := c.start(ctx, n, false); err != nil {
			return err
		}
	}
	if err := c.waitMembers(ctx, cfg.Hosts+1-len(late), 60*time.Second, r.say); err != nil {
		return err
	}
	where := "on 127.77.0.0/16 in this process"
	if cfg.Netns {
		where = "as scatter seed processes, each in its own network namespace on 10.77.0.0/16, uplinks shaped by tc"
		if cfg.Scenario == TwoDC {
			where += ", dc1 and dc2 on two switches joined by the shaped link"
		}
	}
	if cfg.DCBlind {
		where += "; no DC labels (peers chosen blind)"
	}
	r.say("%d hosts up %s, gossip converged", cfg.Hosts-len(late), where)

	id := res.Signed.ID
	fo, err := r.fanOut(ctx, "cold", id, ann, S, U, UO)
	r.rep.FanOut = fo
	if err != nil {
		return err
	}
	r.rep.Release.S = fo.S
	r.printFanOut(fo)
	if err := r.deploy(ctx, id, src, cfg.CompareAll); err != nil {
		return err
	}

	for i, m := range []struct {
		name   string
		mutate func(string, uint64) (gen.MutationStats, error)
	}{{"code change", gen.MutateCode}, {"l10n update", gen.MutateL10n}} {
		if _, err := m.mutate(src, cfg.Seed); err != nil {
			return err
		}
		res, ann, S, err := c.build(ctx, src, fmt.Sprintf("%d", len(r.rep.Deltas)+2))
		if err != nil {
			return err
		}
		d, err := r.fanOut(ctx, m.name, res.Signed.ID, ann, S, U, UO)
		r.rep.Deltas = append(r.rep.Deltas, d)
		if err != nil {
			return err
		}
		r.printFanOut(d)
		if err := r.deploy(ctx, res.Signed.ID, src, cfg.CompareAll || i == 1); err != nil {
			return err
		}
	}

	cen, err := r.central(ctx, id, fo.S, UO)
	if err != nil {
		return err
	}
	r.rep.Central = cen
	r.rep.CentralOverP2P = cen.AtN / fo.Last
	if !r.rep.Identical {
		return errors.New("a host's tree differs from its source")
	}
	return nil
}

// sinceStart is how long after start (a time.Now of this process) a host
// held a release, given the held_at it reported (its wall clock) when it
// was just seen. held.Sub(start) compares wall clocks across the whole
// fan-out and is off by any step of the wall clock meanwhile: a --netns run
// reported every host holding the release 10–14 s after the harness had
// seen them all staged. Here the wall clock is read only over the moment
// between held_at and now; the rest is this process's monotonic clock.
func sinceStart(start, held time.Time) time.Duration {
	now := time.Now()
	ago := now.Round(0).Sub(held) // wall clock against wall clock
	return max(now.Sub(start)-max(ago, 0), 0)
}

// fanOut announces a release and waits until every host has staged it,
// playing the scenario's events on the way. S is the full torrent's bytes.
func (r *run) fanOut(ctx context.Context, name string, id core.ReleaseID, ann []byte, S, U, UO int64) (FanOut, error) {
	c := r.c
	before := map[*node]counters{}
	for _, n := range append([]*node{c.orig}, c.hosts...) {
		k, err := c.counters(ctx, n)
		if err != nil {
			return FanOut{}, err
		}
		before[n] = k
	}
	var link0 [2]int64
	if c.nn != nil && r.cfg.Scenario == TwoDC {
		var err error
		if link0[0], link0[1], err = c.nn.net.LinkBytes(); err != nil {
			return FanOut{}, err
		}
	}
	cpu0 := c.cpuSeconds()
	start := time.Now()
	if err := c.orig.m.publish(ctx, ann); err != nil {
		return FanOut{}, fmt.Errorf("publish: %w", err)
	}
	fo := FanOut{Name: name, Release: id.String(), S: S, U: U, UOrigin: UO, SU: float64(S) / float64(U)}
	r.say("%s: release %s announced; S = %.2f MiB, S/U = %.1f s", name, id.Short(), float64(S)/(1<<20), fo.SU)

	// Scenario events, on the cold fan-out only.
	type event struct {
		at   float64 // × S/U
		what string
		do   func() error
	}
	var events []event
	if name == "cold" {
		for _, n := range c.hosts {
			switch n.note {
			case "churned":
				events = append(events,
					event{0.4, "close " + n.name, func() error { return c.stop(n) }},
					event{1.5, "restart " + n.name, func() error { return c.start(ctx, n, false) }})
			case "late":
				events = append(events, event{0.5, "start " + n.name, func() error { return c.start(ctx, n, false) }})
			}
		}
	}

	held := map[*node]time.Time{}
	heldAfter := map[*node]time.Duration{} // held, from start (sinceStart)
	staged := map[*node]bool{}
	phaseCPU := map[*node][2]float64{} // netns: the daemon's transfer and staging CPU
	deadline := start.Add(time.Duration(20*fo.SU*float64(time.Second)) + 2*time.Minute)
	for len(staged) < len(c.hosts) || len(events) > 0 {
		el := time.Since(start).Seconds() / fo.SU
		for len(events) > 0 && events[0].at <= el {
			ev := events[0]
			events = events[1:]
			r.say("%s: %s at %.2f S/U", name, ev.what, el)
			if err := ev.do(); err != nil {
				return fo, err
			}
		}
		for _, n := range c.hosts {
			m := c.running(n)
			if m == nil || staged[n] {
				continue
			}
			st, ok, err := m.release(ctx, id)
			if err != nil {
				return fo, fmt.Errorf("%s: %s: %w", name, n.name, err)
			}
			if !ok {
				continue
			}
			if fo.Kind == "" && st.Kind != "" && st.Total > 0 {
				fo.Kind, fo.Bytes = st.Kind, st.Total
			}
			if !st.HeldAt.IsZero() && (held[n].IsZero() || st.HeldAt.Before(held[n])) {
				held[n] = st.HeldAt
				heldAfter[n] = sinceStart(start, st.HeldAt)
			}
			switch st.State {
			case swarm.Staged:
				staged[n] = true
				if c.nn != nil {
					phaseCPU[n] = [2]float64{st.TransferCPUSeconds, st.StageCPUSeconds}
				}
			case swarm.Failed:
				return fo, fmt.Errorf("%s: %s failed: %s", name, n.name, st.Error)
			}
		}
		if time.Now().After(deadline) {
			return fo, fmt.Errorf("%s: only %d of %d hosts staged release %s after %s", name, len(staged),
				len(c.hosts), id.Short(), time.Since(start).Round(time.Second))
		}
		select {
		case <-ctx.Done():
			return fo, ctx.Err()
		case <-time.After(r.poll()):
		}
	}
	fo.Wall = time.Since(start).Seconds()
	fo.CPUSeconds = c.cpuSeconds() - cpu0
	var link [2]int64
	if c.nn != nil && r.cfg.Scenario == TwoDC {
		var err error
		if link[0], link[1], err = c.nn.net.LinkBytes(); err != nil {
			return fo, err
		}
	}
	k, err := c.counters(ctx, c.orig)
	if err != nil {
		return fo, err
	}
	fo.OriginUploaded = k.uploaded - before[c.orig].uploaded
	for _, n := range c.hosts {
		k, err := c.counters(ctx, n)
		if err != nil {
			return fo, err
		}
		k0 := before[n]
		t := heldAfter[n].Seconds()
		fo.Hosts = append(fo.Hosts, HostResult{
			Name: n.name, Seconds: t, Ratio: t / fo.SU, Note: n.note,
			FromOrigin: k.fromOrigin - k0.fromOrigin, FromPeers: k.fromPeers - k0.fromPeers,
			Uploaded: k.uploaded - k0.uploaded, CrossDC: k.crossDC - k0.crossDC,
			TransferCPU: phaseCPU[n][0], StageCPU: phaseCPU[n][1],
		})
	}
	fo.summarize()
	if c.nn != nil && r.cfg.Scenario == TwoDC {
		// The hosts' counters cannot tell which peer sent what: count the
		// link itself, every byte on it, from the announcement until the
		// last host staged.
		fo.CrossDC1To2, fo.CrossDC2To1 = link[0]-link0[0], link[1]-link0[1]
		fo.CrossDC = fo.CrossDC1To2 + fo.CrossDC2To1
	}
	return fo, nil
}

// The 2dc scenario's datacenters: node i (0 the origin) is in
// dcNames[dcOf(i)], which is also its switch in netns mode (0 is a).
var dcNames = []string{"dc1", "dc2"}

func dcOf(i int) int { return i % 2 }

// DefaultDCLinkU is the 2dc link's default rate in netns mode, × U.
const DefaultDCLinkU = 4

// deploy rolls a release out to every host with deploy.Run, the origin as
// the controller, and, if compare, compares each host's tree with src.
func (r *run) deploy(ctx context.Context, id core.ReleaseID, src string, compare bool) error {
	c := r.c
	var names []string
	for _, n := range c.hosts {
		names = append(names, n.name)
	}
	canary := 2
	if len(names) < 8 {
		canary = 1
	}
	r.rep.Params.Canary, r.rep.Params.Batch = canary, "25%"
	d := Deploy{Release: id.String()}
	var mu sync.Mutex
	var lastAck time.Time
	o := deploy.Options{
		Repo: repo, Release: id, Hosts: names, Canary: canary,
		Batch: rollout.Size{N: 25, Percent: true}, FailureLimit: rollout.Size{N: 0},
		StageTimeout: 5 * time.Minute, ActionTimeout: 30 * time.Second, RetryEvery: 2 * time.Second,
		Restart: true, Checks: []string{"tree", "app"}, User: "bench", Message: "scatter bench",
		Controller: "origin", Key: c.key, Transport: c.orig.m.transport(),
		Progress: func(e deploy.Event) {
			if e.Event == "ack" {
				mu.Lock()
				lastAck = e.Time
				d.Acks++
				mu.Unlock()
			}
		},
	}
	sum, err := deploy.Run(ctx, o)
	if err != nil {
		return err
	}
	d.Started = sum.Started
	d.Outcome, d.Reason = sum.Outcome, sum.Reason
	d.Seconds = sum.Ended.Sub(sum.Started).Seconds()
	mu.Lock()
	if !lastAck.IsZero() {
		d.LastAck = lastAck.Sub(sum.Started).Seconds()
	}
	mu.Unlock()
	for _, p := range sum.Phases {
		d.Phases = append(d.Phases, Phase{Name: p.Name, Start: p.Start.Sub(sum.Started).Seconds(), Seconds: p.End.Sub(p.Start).Seconds()})
	}
	for _, f := range sum.Failures {
		d.Failures = append(d.Failures, fmt.Sprintf("%s %s %s: %s", f.Host, f.Phase, f.Step, f.Error))
	}
	for _, n := range c.hosts {
		cur, err := agent.ReadLink(datadir.Data(n.dir).Repo(repo), datadir.CurrentLink)
		if err == nil && cur == id {
			d.Current++
		}
	}
	r.say("deploy %s: %s in %.2f s (last ack at %.2f s), %d phases, %d/%d hosts current",
		id.Short(), d.Outcome, d.Seconds, d.LastAck, len(d.Phases), d.Current, len(c.hosts))
	if compare && !r.cfg.NoCompare {
		d.Compared, d.Same = true, true
		t := time.Now()
		if err := r.compare(id, src, &d); err != nil {
			return err
		}
		r.say("compared %d hosts' trees with the source in %.1f s: identical %v", len(c.hosts), time.Since(t).Seconds(), d.Same)
	}
	r.rep.Deploys = append(r.rep.Deploys, d)
	if sum.Result != rollout.Success || d.Current != len(c.hosts) {
		return fmt.Errorf("deploy %s: %s: %s %v", id.Short(), sum.Outcome, sum.Reason, d.Failures)
	}
	return nil
}

// compare checks every host's current tree against src, two at a time.
func (r *run) compare(id core.ReleaseID, src string, d *Deploy) error {
	var mu sync.Mutex
	var errs []error
	work := make(chan *node)
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range work {
				dir := datadir.Data(n.dir).Repo(repo).Release(id)
				same, err := bench.SameTree(src, dir)
				mu.Lock()
				if err != nil {
					errs = append(errs, fmt.Errorf("compare %s: %w", n.name, err))
				} else if !same {
					d.Same = false
					r.rep.Identical = false
					errs = append(errs, fmt.Errorf("%s: tree of %s differs from its source", n.name, id.Short()))
				}
				mu.Unlock()
			}
		}()
	}
	for _, n := range r.c.hosts {
		work <- n
	}
	close(work)
	wg.Wait()
	return errors.Join(errs...)
}

// central measures the central baseline: CentralHosts hosts each fetch the
// release's full torrent from the origin's metadata server over HTTP at
// once, from their own addresses, at the origin's cap. Bytes are counted
// and discarded (no verify, no write: the baseline is favoured).
func (r *run) central(ctx context.Context, id core.ReleaseID, S, UO int64) (Central, error) {
	c, k := r.c, r.cfg.CentralHosts
	cen := Central{Hosts: k, Release: id.String(), S: S, UOrigin: UO, Formula: float64(k) * float64(S) / float64(UO)}
	r.say("central baseline: %d hosts fetch S from the origin alone (expect %.0f s)", k, cen.Formula)
	url := fmt.Sprintf("http://%s/v1/repos/%s/releases/%s/data/full?off=0&n=%d", c.orig.m.httpAddr(), repo, id, S)
	cen.Each = make([]float64, k)
	errs := make([]error, k)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range k {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &http.Transport{DialContext: c.dialer(c.hosts[i])}
			defer tr.CloseIdleConnections()
			req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
			if err != nil {
				errs[i] = err
				return
			}
			resp, err := (&http.Client{Transport: tr}).Do(req)
			if err != nil {
				errs[i] = fmt.Errorf("central fetch: %w", err)
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				errs[i] = fmt.Errorf("central fetch: %s", resp.Status)
				return
			}
			n, err := io.Copy(io.Discard, resp.Body)
			if err == nil && n != S {
				err = fmt.Errorf("central fetch: %d bytes, want %d", n, S)
			}
			errs[i] = err
			cen.Each[i] = time.Since(start).Seconds()
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return cen, err
	}
	for _, t := range cen.Each {
		cen.Measured = max(cen.Measured, t)
	}
	cen.MeasuredOverFormula = cen.Measured / cen.Formula
	N := float64(r.cfg.Hosts)
	cen.AtN = N * float64(S) / float64(UO) * cen.MeasuredOverFormula
	if k == r.cfg.Hosts {
		cen.AtN = cen.Measured
	}
	cen.AtNSU = cen.AtN / (float64(S) / float64(r.rep.Params.Upload))
	r.say("central: %d hosts in %.1f s (formula %.1f s, ratio %.3f); at %d hosts %.0f s", k, cen.Measured,
		cen.Formula, cen.MeasuredOverFormula, r.cfg.Hosts, cen.AtN)
	return cen, nil
}

// poll is how often a fan-out asks every host not yet staged how far it
// is. Completion times come from the hosts' own clocks (HeldAt), not from
// the polls, so a slower poll only notices the end of a phase later. In
// netns mode each poll is an HTTP request for a daemon's whole status: at
// 200 ms the daemons' HTTP server, mostly answering them, took about 4% of
// their CPU (profiles of a 32-host run), and at 500 ms about 3%, so once a
// second (events of the churn and late scenarios fire within a second of
// their time, 0.025 S/U at the default S/U).
func (r *run) poll() time.Duration {
	if r.cfg.Netns {
		return time.Second
	}
	return 50 * time.Millisecond
}

// dialer dials from a host: from its namespace in netns mode, else from
// its loopback address.
func (c *cluster) dialer(n *node) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if c.nn != nil {
		return c.nn.net.DialContext(n.i)
	}
	return (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(n.ip)}}).DialContext
}

func (r *run) printFanOut(f FanOut) {
	r.say("%s: %d hosts held it (%s torrent, %.2f MiB): median %.2f, p90 %.2f, last %.2f S/U; origin sent %.2f S; %.0f%% CPU",
		f.Name, len(f.Hosts), f.Kind, float64(f.Bytes)/(1<<20), f.MedianSU, f.P90SU, f.LastSU, f.OriginUpS, f.CPUPercent)
}
