// Package agent is the part of a target host that acts on the deploy
// host's commands: it stages releases, switches `current`, and runs the
// host's own named actions (restart, checks, hooks), then answers with an
// ack that carries each action's result.
//
// The network names actions; this host's config (package config) says
// what each name does. A command naming an action the host does not
// define is refused before anything runs. A host performs each step of a
// deploy once: a retried step is answered from the recorded ack, and a step
// still running is answered when it finishes.
//
// On disk, per repo: current and previous are symlinks to releases/<id>,
// switched by renaming a new link over the old, so `current` names a
// complete release at every instant, a crash included.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"scatter/artifact/core"
	"scatter/artifact/datadir"
	"scatter/orchestrate/command"
	"scatter/orchestrate/config"
	"scatter/swarm"
)

// Stager is the host's view of its fetches. Release must not block; it is
// polled while a stage step waits.
type Stager interface {
	// Release reports what the host knows of a release; false if it has
	// not been announced here.
	Release(repo string, id core.ReleaseID) (swarm.ReleaseStatus, bool)
}

// Config configures an Agent.
type Config struct {
	Name    string // this host's member name
	DataDir string // <data>/<repo>/{releases,current,previous}
	Repos   map[string]config.Repo
	Stager  Stager
	Log     *slog.Logger // nil: discard
	// Poll is how often a stage step looks at the fetch; default 200 ms.
	Poll time.Duration
	// Performed, if set, is called once for each step the agent performs,
	// with its ack (not again when a re-sent step gets the recorded ack):
	// how the host counts actions for its metrics. It must not block.
	Performed func(*command.Ack)
}

// Agent runs commands on one host. Safe for concurrent use: steps of one
// repo run one at a time, in arrival order.
type Agent struct {
	cfg   Config
	log   *slog.Logger
	creds map[string]*syscall.Credential

	mu    sync.Mutex
	locks map[string]*sync.Mutex
	steps map[stepKey]*step
	state map[string]*RepoState
}

type stepKey struct {
	deploy string
	step   int
}

type step struct {
	ack *command.Ack // nil while running
	at  time.Time
}

// RepoState is what the agent reports about one repo, for status and
// gossip.
type RepoState struct {
	Repo     string         `json:"repo"`
	Current  core.ReleaseID `json:"current"`
	Previous core.ReleaseID `json:"previous"`
	// Health is "ok" or "failing" after the last checks, "" before any.
	Health    string       `json:"health,omitempty"`
	CheckedAt time.Time    `json:"checked_at,omitzero"`
	Last      *command.Ack `json:"last,omitempty"` // the last step's ack
}

// New returns an agent. It checks that every repo's action user can be
// used by this process.
func New(cfg Config) (*Agent, error) {
	if cfg.DataDir == "" || cfg.Stager == nil {
		return nil, errors.New("agent: DataDir and Stager are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 200 * time.Millisecond
	}
	a := &Agent{cfg: cfg, log: cfg.Log, creds: map[string]*syscall.Credential{},
		locks: map[string]*sync.Mutex{}, steps: map[stepKey]*step{}, state: map[string]*RepoState{}}
	for name, r := range cfg.Repos {
		c, err := credential(r.User)
		if err != nil {
			return nil, fmt.Errorf("agent: repo %s: %w", name, err)
		}
		a.creds[name] = c
	}
	return a, nil
}

// Handle performs c on this host and returns its ack, true; or nil, false
// when the step is already running (its ack goes out when it finishes).
// A step that already finished returns the recorded ack without acting.
// Handle blocks for the length of the step; callers run it on its own
// goroutine.
func (a *Agent) Handle(ctx context.Context, c *command.Command) (*command.Ack, bool) {
	k := stepKey{c.Deploy, c.Step}
	a.mu.Lock()
	if s, ok := a.steps[k]; ok {
		ack := s.ack
		a.mu.Unlock()
		return ack, ack != nil
	}
	a.steps[k] = &step{at: time.Now()}
	for k, s := range a.steps {
		if s.ack != nil && time.Since(s.at) > command.MaxLifetime {
			delete(a.steps, k)
		}
	}
	lock := a.locks[c.Repo]
	if lock == nil {
		lock = &sync.Mutex{}
		a.locks[c.Repo] = lock
	}
	a.mu.Unlock()

	lock.Lock()
	ack := a.perform(ctx, c)
	lock.Unlock()

	a.mu.Lock()
	a.steps[k].ack = ack
	st := a.repoStateLocked(c.Repo)
	st.Current, st.Previous, st.Last = ack.Current, ack.Previous, ack
	if ran := checksRan(c); ran && !ack.Refused {
		st.Health, st.CheckedAt = "ok", time.Now()
		for _, r := range ack.Results {
			if r.Phase == "check" && !r.OK {
				st.Health = "failing"
			}
		}
	}
	a.mu.Unlock()
	lvl := slog.LevelInfo
	if !ack.OK {
		lvl = slog.LevelWarn
	}
	a.log.Log(ctx, lvl, "step finished", "deploy", c.Deploy, "step", c.Step, "kind", c.Kind, "repo", c.Repo,
		"release", c.Release.Short(), "ok", ack.OK, "unchanged", ack.Unchanged, "err", ack.Error, "duration", ack.Duration)
	if a.cfg.Performed != nil {
		a.cfg.Performed(ack)
	}
	return ack, true
}

func checksRan(c *command.Command) bool {
	return c.Kind == command.Check || c.Kind == command.Promote || c.Kind == command.Rollback
}

// Knows reports whether the agent has run or is running c's step.
func (a *Agent) Knows(c *command.Command) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.steps[stepKey{c.Deploy, c.Step}]
	return ok
}

// Refuse returns the ack for a command this host will not run (expired,
// replayed): nothing ran.
func (a *Agent) Refuse(c *command.Command, why error) *command.Ack {
	ack := a.newAck(c)
	ack.Refused, ack.Error = true, why.Error()
	return ack
}

func (a *Agent) repoStateLocked(repo string) *RepoState {
	st := a.state[repo]
	if st == nil {
		st = &RepoState{Repo: repo}
		a.state[repo] = st
	}
	return st
}

// State reports every repo the agent has acted on or found linked on disk.
func (a *Agent) State() []RepoState {
	a.mu.Lock()
	defer a.mu.Unlock()
	for name := range a.cfg.Repos {
		st := a.repoStateLocked(name)
		dir := datadir.Data(a.cfg.DataDir).Repo(name)
		st.Current, _ = ReadLink(dir, datadir.CurrentLink)
		st.Previous, _ = ReadLink(dir, datadir.PreviousLink)
	}
	out := make([]RepoState, 0, len(a.state))
	for _, st := range a.state {
		out = append(out, *st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Repo < out[j].Repo })
	return out
}

func (a *Agent) newAck(c *command.Command) *command.Ack {
	dir := datadir.Data(a.cfg.DataDir).Repo(c.Repo)
	cur, _ := ReadLink(dir, datadir.CurrentLink)
	prev, _ := ReadLink(dir, datadir.PreviousLink)
	return &command.Ack{Deploy: c.Deploy, Step: c.Step, Host: a.cfg.Name, Repo: c.Repo, Kind: c.Kind,
		Release: c.Release, Current: cur, Previous: prev}
}

// perform runs one step and builds its ack.
func (a *Agent) perform(ctx context.Context, c *command.Command) *command.Ack {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	repo := a.cfg.Repos[c.Repo]
	if err := checkStepOrder(datadir.Data(a.cfg.DataDir).Repo(c.Repo), c); err != nil {
		ack := a.newAck(c)
		ack.Refused, ack.Error = true, err.Error()
		a.log.Warn("refused out-of-order command", "deploy", c.Deploy, "seq", c.Seq, "step", c.Step, "err", err)
		return ack
	}
	for _, name := range c.Actions() {
		if _, ok := repo.Actions[name]; !ok {
			ack := a.newAck(c)
			ack.Refused = true
			ack.Error = fmt.Sprintf("action %q is not defined for repo %s on this host; nothing ran", name, c.Repo)
			a.log.Warn("refused command naming an undefined action", "deploy", c.Deploy, "seq", c.Seq,
				"repo", c.Repo, "action", name)
			return ack
		}
	}
	s := &stepRun{a: a, c: c, repo: repo, dir: datadir.Data(a.cfg.DataDir).Repo(c.Repo)}
	var err error
	var unchanged bool
	switch c.Kind {
	case command.Stage:
		err = s.stage(ctx)
	case command.Promote, command.Rollback:
		unchanged, err = s.promote(ctx)
	case command.Check:
		err = s.checks(ctx)
	}
	ack := a.newAck(c)
	ack.Results, ack.Unchanged, ack.Duration = s.results, unchanged, time.Since(start)
	ack.OK = err == nil
	if err != nil {
		ack.Error = err.Error()
	}
	return ack
}

// stepRun is one step in progress.
type stepRun struct {
	a       *Agent
	c       *command.Command
	repo    config.Repo
	dir     datadir.Repo
	results []command.Result
}

func (s *stepRun) releaseDir(id core.ReleaseID) string {
	return s.dir.Release(id)
}

// action runs one named action and records its result.
func (s *stepRun) action(ctx context.Context, phase, name string) error {
	cur, _ := ReadLink(s.dir, datadir.CurrentLink)
	prev, _ := ReadLink(s.dir, datadir.PreviousLink)
	e := env{repo: s.c.Repo, deploy: s.c.Deploy, phase: phase, release: s.c.Release.String(),
		releaseDir: s.releaseDir(s.c.Release), previous: prev.String(), cred: s.a.creds[s.c.Repo]}
	if s.c.Kind == command.Check && !cur.IsZero() {
		e.release, e.releaseDir = cur.String(), s.releaseDir(cur)
	}
	// The default working directory, `current`, means the release the
	// step is about, which is what current names once it is promoted, and
	// exists already for stage hooks and before the first promote.
	e.dir = e.releaseDir
	if s.repo.Dir != "" && s.repo.Dir != config.DefaultDir {
		e.dir = filepath.Join(s.dir.Dir(), s.repo.Dir)
	}
	act := s.repo.Actions[name]
	act.Name = name
	r := run(ctx, phase, act, e)
	s.results = append(s.results, r)
	if !r.OK {
		return fmt.Errorf("%s %s: %s", phase, name, r.Error)
	}
	return nil
}

func (s *stepRun) hooks(ctx context.Context, phase string) error {
	for _, name := range s.c.Hooks[phase] {
		if err := s.action(ctx, phase, name); err != nil {
			return err
		}
	}
	return nil
}

func (s *stepRun) stage(ctx context.Context) error {
	if err := s.hooks(ctx, command.BeforeStage); err != nil {
		return err
	}
	t := time.NewTicker(s.a.cfg.Poll)
	defer t.Stop()
	for {
		st, ok := s.a.cfg.Stager.Release(s.c.Repo, s.c.Release)
		if ok && st.State == swarm.Staged {
			break
		}
		select {
		case <-ctx.Done():
			why := "the release was never announced to this host"
			if ok {
				why = "state " + st.State.String()
				if st.Total > 0 {
					why += fmt.Sprintf(", %d of %d bytes", st.Done, st.Total)
				}
				if st.Stuck != "" {
					why += ", stuck: " + st.Stuck
				}
				if st.Error != "" {
					why += ", error: " + st.Error
				}
			}
			return fmt.Errorf("stage: not staged after %v (%s)", s.c.Timeout, why)
		case <-t.C:
		}
	}
	return s.hooks(ctx, command.AfterStage)
}

// promote switches current to the command's release, restarts and checks.
// A release already current is left alone (unchanged) unless the command
// forces it or an earlier promote to it crashed before its restart.
func (s *stepRun) promote(ctx context.Context) (unchanged bool, err error) {
	id := s.c.Release
	cur, err := ReadLink(s.dir, datadir.CurrentLink)
	if err != nil {
		return false, fmt.Errorf("promote: %w", err)
	}
	if cur == id && !s.c.Force && readPending(s.dir) != id {
		return true, s.checks(ctx)
	}
	if err := s.hooks(ctx, command.BeforePromote); err != nil {
		return false, err
	}
	if s.c.Restart {
		if err := writePending(s.dir, id); err != nil {
			return false, fmt.Errorf("promote: %w", err)
		}
	}
	if _, err := switchCurrent(s.dir, id); err != nil {
		return false, fmt.Errorf("promote: %w", err)
	}
	if err := s.hooks(ctx, command.AfterPromote); err != nil {
		return false, err
	}
	if s.c.Restart {
		if err := s.hooks(ctx, command.BeforeRestart); err != nil {
			return false, err
		}
		if err := s.action(ctx, "restart", "restart"); err != nil {
			return false, err
		}
		clearPending(s.dir)
		if err := s.hooks(ctx, command.AfterRestart); err != nil {
			return false, err
		}
	}
	return false, s.checks(ctx)
}

// checks runs every check, not only up to the first failure, so the
// summary shows all that fail.
func (s *stepRun) checks(ctx context.Context) error {
	if err := s.hooks(ctx, command.BeforeCheck); err != nil {
		return err
	}
	var failed []string
	var first error
	for _, name := range s.c.Checks {
		if err := s.action(ctx, "check", name); err != nil {
			failed = append(failed, name)
			if first == nil {
				first = err
			}
		}
	}
	if first != nil {
		if len(failed) > 1 {
			return fmt.Errorf("%d checks failed (%s); first: %w", len(failed), strings.Join(failed, ", "), first)
		}
		return first
	}
	return s.hooks(ctx, command.AfterCheck)
}
