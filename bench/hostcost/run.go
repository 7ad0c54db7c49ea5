package hostcost

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"scatter/artifact"
	"scatter/artifact/core"
	"scatter/artifact/datadir"
	"scatter/bench"
	"scatter/bench/gen"
)

// run is one Run in progress.
type run struct {
	cfg      Config
	rep      *Report
	start    time.Time
	key      string // the deploy key (the origin keeps it)
	ckey     string // the cluster key file
	src      string // the generated tree
	identity string // the enrolled host's first data directory: its key and the roster
	origin   *daemon
	id       core.ReleaseID
	torrent  string // the release's .torrent, for aria2c
	aria     string // aria2c's path, or ""
	timeout  time.Duration
}

func (r *run) say(format string, args ...any) {
	fmt.Fprintf(r.cfg.Progress, "%6.1fs  %s\n", time.Since(r.start).Seconds(), fmt.Sprintf(format, args...))
}

// Run measures cfg.Rounds rounds. It returns the report so far with an
// error if a step failed.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	r := &run{cfg: cfg, start: time.Now(), key: filepath.Join(cfg.Dir, "deploy.key"),
		ckey: filepath.Join(cfg.Dir, "cluster.key"), src: filepath.Join(cfg.Dir, "src"),
		identity: filepath.Join(cfg.Dir, "enrol"), torrent: filepath.Join(cfg.Dir, "release.torrent"),
		// A slow disk writes 2 GiB at 20 MB/s; a fetch that takes longer is stuck.
		timeout: time.Minute + time.Duration(cfg.Size/(20<<20))*time.Second}
	r.rep = &Report{Machine: bench.ThisMachine(), Identical: true, Params: Params{Size: cfg.Size, Rounds: cfg.Rounds,
		Seed: cfg.Seed, AppLoad: cfg.AppLoad, AppWorkers: cfg.AppWorkers, Share: cfg.Share}}
	r.aria = cfg.Aria2c
	if r.aria == "" {
		var err error
		if r.aria, err = exec.LookPath("aria2c"); err != nil {
			r.aria = ""
			r.rep.AriaSkipped = "aria2c is not installed (apt-get install aria2): the transfer anchor is skipped"
			r.say("%s", r.rep.AriaSkipped)
		}
	}
	defer func() {
		if r.origin != nil {
			r.origin.stop()
		}
	}()
	if err := checkSpace(cfg); err != nil {
		return r.rep, err
	}
	if !cfg.KeepTrees {
		defer func() {
			for i := 1; i <= cfg.Rounds; i++ {
				artifact.RemoveTree(r.roundDir(i))
			}
		}()
	}
	if err := r.setup(ctx); err != nil {
		return r.rep, fmt.Errorf("hostcost setup: %w", err)
	}
	for i := 1; i <= cfg.Rounds; i++ {
		rd, err := r.round(ctx, i)
		if err != nil {
			return r.rep, fmt.Errorf("hostcost round %d: %w", i, err)
		}
		r.rep.Rounds = append(r.rep.Rounds, rd)
	}
	r.rep.summarize()
	return r.rep, nil
}

// setup generates the tree, starts the origin, enrols the host's identity
// (then stops it: it must hold nothing when a round starts it), publishes
// the release and writes its torrent.
func (r *run) setup(ctx context.Context) error {
	st, err := gen.Generate(r.src, gen.Config{Seed: r.cfg.Seed, TotalBytes: r.cfg.Size})
	if err != nil {
		return err
	}
	r.rep.Release.Files, r.rep.Release.Bytes = st.Files, st.Bytes
	r.say("generated %d files, %d bytes", st.Files, st.Bytes)
	if _, err := r.output(ctx, "keygen", "--out", r.key); err != nil {
		return err
	}
	ck := make([]byte, 32)
	rand.Read(ck)
	if err := os.WriteFile(r.ckey, []byte(base64.StdEncoding.EncodeToString(ck)), 0o600); err != nil {
		return err
	}
	if r.origin, err = r.startDaemon(ctx, "origin", filepath.Join(r.cfg.Dir, "origin"), originIP, "--origin", "--key", r.key); err != nil {
		return err
	}
	h, err := r.startHost(ctx, r.identity)
	if err != nil {
		return err
	}
	err = r.enrol(ctx, h)
	h.stop()
	if err != nil {
		return err
	}
	out, err := r.output(ctx, "publish", "--data", r.origin.data, "--repo", repo, "--version", "1", r.src)
	if err != nil {
		return err
	}
	if r.id, err = core.ParseReleaseID(strings.TrimSpace(out)); err != nil {
		return fmt.Errorf("publish printed %q: %w", out, err)
	}
	// The origin lays out the release's torrent after publish returns.
	deadline := time.Now().Add(time.Minute)
	for {
		rel, _, err := r.origin.release(ctx, r.id)
		if err != nil {
			return err
		}
		if rel.Total > 0 {
			r.rep.Release.ID, r.rep.Release.S = r.id.String(), rel.Total
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the origin gave no size for release %s in a minute: %+v", r.id, rel)
		}
		time.Sleep(50 * time.Millisecond)
	}
	tor, err := r.output(ctx, "torrent", "--data", r.origin.data, "--repo", repo, r.id.String())
	if err == nil {
		err = os.WriteFile(r.torrent, []byte(tor), 0o644)
	}
	r.say("published %s: S = %d bytes of torrent", r.id, r.rep.Release.S)
	return err
}

// startHost starts the host daemon in data, joining the origin.
func (r *run) startHost(ctx context.Context, data string, extra ...string) (*daemon, error) {
	return r.startDaemon(ctx, "host", data, hostIP, append([]string{"--join", r.origin.gossip}, extra...)...)
}

// enrol approves the origin and the host as an operator would (`scatter
// hosts approve`) once both are pending, and waits until the host holds
// the roster.
func (r *run) enrol(ctx context.Context, h *daemon) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		v, err := r.origin.ctl.Hosts(ctx)
		if err != nil {
			return err
		}
		pending := map[string]bool{}
		for _, p := range v.Pending {
			pending[p.Name] = true
		}
		if pending["origin"] && pending["host"] {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the origin and the host did not both show up pending: %+v", v)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := r.output(ctx, "hosts", "approve", "--data", r.origin.data, "origin", "host"); err != nil {
		return err
	}
	v, err := r.origin.ctl.Hosts(ctx)
	if err != nil {
		return err
	}
	for {
		s, err := h.ctl.Status(ctx)
		if err == nil && s.Roster >= v.Version {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the host never got roster v%d: %v", v.Version, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// output runs the scatter binary and returns its standard output.
func (r *run) output(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, r.cfg.Binary, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("scatter %s: %w: %s", args[0], err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// child runs a command to its end and returns its wall and rusage.
func (r *run) child(ctx context.Context, name string, args ...string) (Child, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = 5 * time.Second
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	t0 := time.Now()
	err := cmd.Run()
	c := Child{Wall: time.Since(t0).Seconds()}
	if err != nil {
		s := out.String()
		if len(s) > 2000 {
			s = s[len(s)-2000:]
		}
		return c, fmt.Errorf("%s: %w: %s", filepath.Base(name), err, strings.TrimSpace(s))
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		c.User = time.Duration(ru.Utime.Nano()).Seconds()
		c.Sys = time.Duration(ru.Stime.Nano()).Seconds()
	}
	c.CPU = c.User + c.Sys
	return c, nil
}

// roundBytes is what one round keeps on disk, as a multiple of the tree's
// size: the staged, materialized and copied trees, the host's store and
// aria2c's download (each at most the tree's size).
const roundBytes = 5

// checkSpace refuses a run whose rounds would not fit on cfg.Dir's file
// system. Every round's files stay until the run ends: deleting a tree
// makes creating files dearer for minutes afterwards on ext4 without a
// journal (fs/ext4/ialloc.c: the allocator skips every free inode deleted
// in the last 60 s, 360 s while its inode table block is dirty, looking up
// its block for each; and the next round's own allocations dirty those
// blocks again, so no wait of a minute after a sync outlasts it;
// docs/performance/hostcost.md measures it). Whichever step of a round came
// first paid for the last round's deletion.
func checkSpace(cfg Config) error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(cfg.Dir, &st); err != nil {
		return fmt.Errorf("hostcost: %w", err)
	}
	free := float64(st.Bavail) * float64(st.Bsize)
	need := float64(cfg.Rounds*roundBytes+2) * float64(cfg.Size) // and the source tree, the origin's store
	if free < need {
		return fmt.Errorf("hostcost: %d rounds of %s keep about %s in %s until the run ends, and %s is free there: "+
			"use fewer --rounds, a smaller --size or a TMPDIR on a larger file system "+
			"(rounds are not deleted one by one: a deletion makes the next round's file creation dearer)",
			cfg.Rounds, gib(float64(cfg.Size)), gib(need), cfg.Dir, gib(free))
	}
	return nil
}

func gib(n float64) string { return fmt.Sprintf("%.1f GiB", n/(1<<30)) }

// settle writes back what the last step left dirty, so that its writeback
// does not fall into the next step's time.
func (r *run) settle(ctx context.Context) {
	exec.CommandContext(ctx, "sync").Run()
}

// step is one measured part of a round.
type step struct {
	name string
	do   func(ctx context.Context) error
}

// roundDir is round i's directory: every file the round writes.
func (r *run) roundDir(i int) string {
	return filepath.Join(r.cfg.Dir, fmt.Sprintf("round-%d", i))
}

// round runs round i: each step once, in an order that alternates from
// round to round. The host's fetch comes before what copies its tree.
func (r *run) round(ctx context.Context, i int) (Round, error) {
	dir := r.roundDir(i)
	rd := Round{N: i}
	hostData := filepath.Join(dir, "host")
	staged := datadir.Data(hostData).Repo(repo).Release(r.id)
	scatter := step{"scatter", func(ctx context.Context) error {
		var err error
		rd.Scatter, err = r.fetch(ctx, hostData, nil)
		if err == nil {
			err = r.same(staged, "the staged tree")
		}
		return err
	}}
	aria := step{"aria2c", func(ctx context.Context) error {
		if r.aria == "" {
			return nil
		}
		var err error
		rd.Aria, err = r.aria2c(ctx, filepath.Join(dir, "aria"))
		return err
	}}
	mat := step{"materialize", func(ctx context.Context) error {
		out := filepath.Join(dir, "materialized")
		var err error
		rd.Materialize, err = r.child(ctx, r.cfg.Binary, "materialize", "--store", datadir.Data(hostData).Repo(repo).Dir(), r.id.String(), out)
		if err == nil {
			err = r.same(out, "the materialized tree")
		}
		return err
	}}
	cp := step{"cp -a + sync -f", func(ctx context.Context) error {
		out := filepath.Join(dir, "copy")
		var err error
		if rd.Copy, err = r.child(ctx, "cp", "-a", staged, out); err != nil {
			return err
		}
		rd.Sync, err = r.child(ctx, "sync", "-f", out)
		return err
	}}
	steps := []step{scatter, aria, cp, mat}
	if i%2 == 0 {
		steps = []step{aria, scatter, mat, cp}
	}
	if r.cfg.AppLoad {
		steps = append(steps, step{"app", func(ctx context.Context) error {
			var err error
			rd.App, err = r.appLoad(ctx, dir, i%2 == 0)
			return err
		}})
	}
	for _, s := range steps {
		if s.name == "aria2c" && r.aria == "" {
			continue
		}
		r.settle(ctx)
		rd.Order = append(rd.Order, s.name)
		if err := s.do(ctx); err != nil {
			return rd, fmt.Errorf("%s: %w", s.name, err)
		}
	}
	rd.ratios()
	r.say("round %d: %s", i, rd.line())
	return rd, nil
}

// fetch starts a fresh host in data (with extra seed flags), waits until it
// staged the release, calls atStaged (if not nil), and stops it.
func (r *run) fetch(ctx context.Context, data string, atStaged func(), extra ...string) (Fetch, error) {
	if err := r.seedHost(data); err != nil {
		return Fetch{}, err
	}
	o0 := r.origin.cpu()
	h, err := r.startHost(ctx, data, extra...)
	if err != nil {
		return Fetch{}, err
	}
	defer h.stop()
	st, err := h.waitStaged(ctx, r.id, r.timeout)
	if err != nil {
		return Fetch{}, err
	}
	if atStaged != nil {
		atStaged()
	}
	rel := st.rel
	return Fetch{Wall: rel.Seconds, TransferWall: rel.HeldSeconds, TransferCPU: rel.TransferCPUSeconds,
		StageCPU: rel.StageCPUSeconds, HostCPU: st.cpu, StartToStaged: st.wall.Seconds(), OriginCPU: r.origin.cpu() - o0,
		Bytes: rel.Total, PeakRSS: st.peakRSS, Failures: st.failures}, nil
}

// aria2c downloads the release's torrent into out with aria2c from the
// daemons that hold it (the origin: no host runs between the steps).
func (r *run) aria2c(ctx context.Context, out string) (*Child, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	o0 := r.origin.cpu()
	c, err := r.child(ctx, r.aria, "--dir="+out, "--seed-time=0", "--enable-dht=false", "--enable-dht6=false",
		"--bt-enable-lpd=false", "--enable-peer-exchange=false", "--bt-stop-timeout=60", "--summary-interval=0",
		"--console-log-level=warn", "--listen-port=52400-52500", "--disable-ipv6=true", r.torrent)
	if err != nil {
		return nil, err
	}
	c.OriginCPU = r.origin.cpu() - o0
	fi, err := os.Stat(filepath.Join(out, r.id.String()+".full"))
	if err != nil {
		return nil, err
	}
	if fi.Size() != r.rep.Release.S {
		return nil, fmt.Errorf("aria2c downloaded %d bytes, the torrent holds %d", fi.Size(), r.rep.Release.S)
	}
	return &c, nil
}

// same checks that tree is identical to the source tree.
func (r *run) same(tree, what string) error {
	ok, err := bench.SameTree(r.src, tree)
	if err != nil {
		return fmt.Errorf("compare %s: %w", what, err)
	}
	if !ok {
		r.rep.Identical = false
		return errors.New(what + " differs from its source")
	}
	return nil
}
