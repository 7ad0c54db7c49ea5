// Package deploy is the controller of a rolling deploy on the deploy host.
// It owns one rollout.Machine (the rules: canary, batches, failure limit,
// rollback, abort) on one goroutine, turns the machine's actions into
// signed commands (package command) sent over gossip through a Transport,
// feeds the hosts' acks and the clock back in, and writes what happened to
// the audit log and to a live progress callback.
//
// The machine decides; this package only does I/O. A host that does not
// answer is re-sent the step every RetryEvery and counted unreachable at
// the step's timeout, so a deploy always ends.
package deploy

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"scatter/artifact/core"
	"scatter/orchestrate/command"
	"scatter/orchestrate/rollout"
)

// Transport carries commands to hosts and their acks back: the local
// daemon's gossip (host.Host, or the control socket client).
type Transport interface {
	// Send sends a signed command by gossip to every member when to is
	// empty, else directly to each named member. It may block on
	// unreachable members; errors are informational (the step's timeout
	// decides), and must not be fatal.
	SendCommand(cmd []byte, to []string) error
	// Subscribe returns the acks for a deploy until cancel is called.
	Subscribe(deploy string) (acks <-chan *command.Ack, cancel func())
}

// Monitor is implemented by a Transport that can tell when it is gone for
// good — the local daemon that carries commands and acks died or stopped
// answering — so that a deploy stops at once and says so, instead of
// timing every host out and blaming them.
type Monitor interface {
	// Lost watches the transport until ctx ends. The channel receives one
	// error, saying what was lost, when commands can no longer be sent or
	// acks received; it receives nothing while the transport works.
	Lost(ctx context.Context) <-chan error
}

// Options describe one deploy (or fleet rollback).
type Options struct {
	Repo    string
	Release core.ReleaseID
	// Hosts are the target member names in rollout order (canaries first).
	Hosts []string
	// From is what each host runs now, as gossip reports it: the rollback
	// targets. Stage acks correct it.
	From map[string]core.ReleaseID

	Canary              int
	Batch, FailureLimit rollout.Size
	Observe             time.Duration
	StageTimeout        time.Duration
	ActionTimeout       time.Duration
	RetryEvery          time.Duration
	OnAbort             rollout.OnAbort
	Restart, Force      bool
	Checks              []string
	Hooks               map[string][]string
	Rollback            bool // a fleet rollback: recorded as such in the audit log
	User, Message       string
	Controller          string // the member name acks go to
	Key                 ed25519.PrivateKey
	Transport           Transport
	Audit               io.Writer   // JSON lines; nil: none
	Progress            func(Event) // live progress; nil: none. Called on the controller goroutine.
	Now                 func() time.Time
	TickEvery           time.Duration // default 100 ms
	DirectUpTo          int           // waves of at most this many hosts go point to point; default 8
	DeployID            string        // default: random
}

// Event is one thing that happened, for progress and the audit log.
type Event struct {
	Time    time.Time      `json:"time"`
	Deploy  string         `json:"deploy"`
	Event   string         `json:"event"` // start, phase, send, ack, done
	Phase   string         `json:"phase,omitempty"`
	Kind    string         `json:"kind,omitempty"`
	Step    int            `json:"step,omitempty"`
	Resend  bool           `json:"resend,omitempty"`
	Hosts   []string       `json:"hosts,omitempty"`
	Release core.ReleaseID `json:"release,omitzero"`
	Ack     *command.Ack   `json:"ack,omitempty"`
	Counts  rollout.Counts `json:"counts"`
	Result  string         `json:"result,omitempty"`
	Reason  string         `json:"reason,omitempty"`
	// start only
	User    string   `json:"user,omitempty"`
	Message string   `json:"message,omitempty"`
	Repo    string   `json:"repo,omitempty"`
	What    string   `json:"what,omitempty"` // deploy or rollback
	Summary *Summary `json:"summary,omitempty"`
}

// Summary is how a deploy ended.
type Summary struct {
	Deploy   string              `json:"deploy"`
	Repo     string              `json:"repo"`
	Release  core.ReleaseID      `json:"release"`
	Result   rollout.Result      `json:"-"`
	Outcome  string              `json:"result"`
	Reason   string              `json:"reason"`
	Hosts    []rollout.HostState `json:"hosts"`
	Failures []Failure           `json:"failures,omitempty"`
	Phases   []PhaseTime         `json:"phases"`
	Counts   rollout.Counts      `json:"counts"`
	Started  time.Time           `json:"started"`
	Ended    time.Time           `json:"ended"`
	Aborted  bool                `json:"aborted,omitempty"`
	// Lost, when set, says why the deploy stopped with no outcome: its
	// transport (the local daemon) was lost (Monitor). Nothing more was
	// sent; hosts may run different releases. Result is zero, Outcome
	// "unknown", Failures empty (no host is to blame), and Last says what
	// each host was last known to do.
	Lost string     `json:"lost,omitempty"`
	Last []HostLast `json:"last,omitempty"`
}

// OutcomeUnknown is Summary.Outcome of a deploy that lost its transport.
const OutcomeUnknown = "unknown"

// HostLast is what a deploy last knew of one host when it lost its
// transport.
type HostLast struct {
	Host string `json:"host"`
	// State is where the host stood in the deploy: "promoting" means a
	// promote was sent and not answered, so the host may run either
	// release.
	State string `json:"state"`
	// Runs is the release the host last said it runs (its latest ack),
	// else what it ran before the deploy; zero if none.
	Runs core.ReleaseID `json:"runs,omitzero"`
	// Said is the host's latest answer ("promote ok", "stage FAILED"), ""
	// if it never answered.
	Said string `json:"said,omitempty"`
}

// Failure is one host's failure, with what an operator needs to act.
type Failure struct {
	Host   string `json:"host"`
	Phase  string `json:"phase"` // rollout phase: stage, canary, batch 2, rollback…
	Step   string `json:"step"`  // what failed on the host: "check http-ok", "restart", "no ack"
	Exit   int    `json:"exit"`  // -1: no exit status (timeout, HTTP, unreachable)
	Error  string `json:"error"`
	Output string `json:"output,omitempty"`
}

// PhaseTime is one phase's span.
type PhaseTime struct {
	Name  string    `json:"name"`
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// NewID returns a fresh deploy ID.
func NewID(now time.Time) string {
	var b [4]byte
	rand.Read(b[:])
	return now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

// controller is one deploy in progress; only Run's goroutine touches it.
type controller struct {
	o       Options
	m       *rollout.Machine
	id      string
	seq     uint64
	steps   map[int]*stepInfo
	acks    map[string]*command.Ack // latest ack per host
	failAck map[string]*failedAck   // first failure per host on the way forward, and rollback failures
	phases  []PhaseTime
	audit   *json.Encoder
	sends   sync.WaitGroup
	sum     *Summary
	// sendErrs carries failed sends to the controller goroutine, for the
	// log; a full channel drops them (the timeouts tell the story).
	sendErrs chan error
}

type stepInfo struct {
	action rollout.Action
	kind   command.Kind
}

type failedAck struct {
	phase string
	ack   *command.Ack
}

// Run drives the deploy to its end. Cancelling ctx aborts it: no new wave
// starts, the one in flight finishes, then it rolls back or halts
// (Options.OnAbort). Run returns the summary; an error only when the
// deploy could not run at all.
func Run(ctx context.Context, o Options) (*Summary, error) {
	if o.Transport == nil || o.Key == nil || o.Controller == "" {
		return nil, errors.New("deploy: Transport, Key and Controller are required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.TickEvery <= 0 {
		o.TickEvery = 100 * time.Millisecond
	}
	if o.DirectUpTo == 0 {
		o.DirectUpTo = 8
	}
	now := o.Now()
	if o.DeployID == "" {
		o.DeployID = NewID(now)
	}
	from := map[string]string{}
	for h, id := range o.From {
		if !id.IsZero() {
			from[h] = id.String()
		}
	}
	m, err := rollout.New(rollout.Plan{
		Deploy: o.DeployID, To: o.Release.String(), Hosts: o.Hosts, From: from,
		Canary: o.Canary, Batch: o.Batch, FailureLimit: o.FailureLimit, Observe: o.Observe,
		StageTimeout: o.StageTimeout, ActionTimeout: o.ActionTimeout, RetryEvery: o.RetryEvery,
		OnAbort: o.OnAbort,
	})
	if err != nil {
		return nil, fmt.Errorf("deploy: %w", err)
	}
	c := &controller{o: o, m: m, id: o.DeployID, steps: map[int]*stepInfo{}, acks: map[string]*command.Ack{},
		failAck: map[string]*failedAck{}, sendErrs: make(chan error, 64)}
	if o.Audit != nil {
		c.audit = json.NewEncoder(o.Audit)
	}
	c.sum = &Summary{Deploy: c.id, Repo: o.Repo, Release: o.Release, Started: now}
	acks, cancel := o.Transport.Subscribe(c.id)
	defer cancel()
	what := "deploy"
	if o.Rollback {
		what = "rollback"
	}
	c.emit(Event{Event: "start", User: o.User, Message: o.Message, Repo: o.Repo, What: what,
		Release: o.Release, Hosts: o.Hosts})

	var lost <-chan error
	if mon, ok := o.Transport.(Monitor); ok {
		wctx, wcancel := context.WithCancel(context.Background())
		defer wcancel()
		lost = mon.Lost(wctx)
	}
	tick := time.NewTicker(o.TickEvery)
	defer tick.Stop()
	done := ctx.Done()
	c.apply(m.Start(o.Now()))
	for {
		if _, ok := m.Done(); ok {
			break
		}
		select {
		case err := <-lost:
			c.lose(err)
			// Sends in flight go to a daemon that is gone or hung: give
			// them a moment to fail, never the minute a hung one takes.
			waitTimeout(&c.sends, time.Second)
			return c.sum, nil
		case a := <-acks:
			c.onAck(a)
		case err := <-c.sendErrs:
			c.emit(Event{Event: "send_error", Reason: err.Error()})
		case <-tick.C:
			c.apply(m.Tick(o.Now()))
		case <-done:
			done = nil
			c.sum.Aborted = true
			c.emit(Event{Event: "abort", Reason: "abort requested"})
			c.apply(m.Abort(o.Now()))
		}
	}
	c.sends.Wait()
	return c.sum, nil
}

func (c *controller) emit(e Event) {
	e.Time = c.o.Now()
	e.Deploy = c.id
	e.Counts = c.m.Counts()
	if c.audit != nil {
		c.audit.Encode(e) // the audit writer reports its own errors on Close
	}
	if c.o.Progress != nil {
		c.o.Progress(e)
	}
}

func (c *controller) onAck(a *command.Ack) {
	if a.Deploy != c.id {
		return
	}
	si := c.steps[a.Step]
	if si == nil || !contains(si.action.Hosts, a.Host) {
		return // not a step of ours for that host: ignore
	}
	if prev := c.acks[a.Host]; prev != nil && prev.Step == a.Step {
		return // a duplicate (a retry answered from the record)
	}
	c.acks[a.Host] = a
	if !a.OK {
		if _, seen := c.failAck[a.Host]; !seen || si.kind == command.Rollback {
			c.failAck[a.Host] = &failedAck{phase: si.action.Phase, ack: a}
		}
	}
	if si.kind == command.Stage && a.OK {
		// The host's own word on what it runs beats gossip's.
		c.o.From = withFrom(c.o.From, a.Host, a.Current)
		c.m.SetFrom(a.Host, releaseString(a.Current))
	}
	c.emit(Event{Event: "ack", Phase: si.action.Phase, Kind: string(si.kind), Step: a.Step, Hosts: []string{a.Host}, Ack: trimmed(a)})
	c.apply(c.m.Ack(c.o.Now(), rollout.Ack{Host: a.Host, Step: a.Step, OK: a.OK, Error: a.Error}))
}

func withFrom(m map[string]core.ReleaseID, h string, id core.ReleaseID) map[string]core.ReleaseID {
	if m == nil {
		m = map[string]core.ReleaseID{}
	}
	m[h] = id
	return m
}

func releaseString(id core.ReleaseID) string {
	if id.IsZero() {
		return ""
	}
	return id.String()
}

// trimmed drops outputs of successful actions from the audit record.
func trimmed(a *command.Ack) *command.Ack {
	t := *a
	t.Results = nil
	for _, r := range a.Results {
		if r.OK {
			r.Output = ""
		}
		t.Results = append(t.Results, r)
	}
	return &t
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func (c *controller) apply(actions []rollout.Action) {
	for _, a := range actions {
		now := c.o.Now()
		switch a.Kind {
		case rollout.Phase:
			if n := len(c.phases); n > 0 && c.phases[n-1].End.IsZero() {
				c.phases[n-1].End = now
			}
			c.phases = append(c.phases, PhaseTime{Name: a.Phase, Start: now})
			c.emit(Event{Event: "phase", Phase: a.Phase, Hosts: a.Hosts, Reason: a.Reason})
		case rollout.Done:
			if n := len(c.phases); n > 0 && c.phases[n-1].End.IsZero() {
				c.phases[n-1].End = now
			}
			c.finish(a)
		default:
			c.send(a)
		}
	}
}

var kinds = map[rollout.Kind]command.Kind{
	rollout.Stage: command.Stage, rollout.Promote: command.Promote,
	rollout.Check: command.Check, rollout.Rollback: command.Rollback,
}

// send signs the action as one or more commands (as many as the target
// list needs to fit a gossip message) and hands them to the transport on
// their own goroutines: the controller never blocks on the network.
func (c *controller) send(a rollout.Action) {
	kind := kinds[a.Kind]
	if !a.Resend {
		c.steps[a.Step] = &stepInfo{action: a, kind: kind}
	}
	rel := c.o.Release
	if a.Release != "" {
		id, err := core.ParseReleaseID(a.Release)
		if err != nil {
			// Never substitute: a rollback to the wrong release is worse
			// than none, and the step's timeout reports the hosts.
			c.emit(Event{Event: "error", Phase: a.Phase, Step: a.Step, Hosts: a.Hosts,
				Reason: fmt.Sprintf("step %d names release %q: %v; not sent", a.Step, a.Release, err)})
			return
		}
		rel = id
	}
	timeout := c.o.ActionTimeout
	if kind == command.Stage {
		timeout = c.o.StageTimeout
	}
	if timeout <= 0 {
		timeout = rollout.DefaultActionTimeout
		if kind == command.Stage {
			timeout = rollout.DefaultStageTimeout
		}
	}
	// The host gives up a little before the controller does, so that its
	// ack, which says why, arrives before the step times out here.
	timeout -= min(timeout/10, 10*time.Second)
	// A new wave goes both by gossip (which reaches hosts the deploy host
	// cannot, and costs it one message) and point to point (faster: a
	// gossiped message competes for packet space with everything else in
	// flight; at 200 members most hosts got it only from the 2 s resend).
	// Hosts run the first copy and ignore the second. A resend goes
	// point to point only.
	gossip := !a.Resend && len(a.Hosts) > c.o.DirectUpTo
	c.emit(Event{Event: "send", Phase: a.Phase, Kind: string(kind), Step: a.Step, Resend: a.Resend, Hosts: a.Hosts, Release: rel})
	for _, group := range c.split(kind, rel, a, timeout) {
		if gossip {
			c.transmit(group.b, nil)
		}
		c.transmit(group.b, group.hosts)
	}
}

// transmit hands a command to the transport on its own goroutine: the
// controller never blocks on the network. Unreachable hosts show up as
// timeouts; the error is for the log.
func (c *controller) transmit(b []byte, to []string) {
	c.sends.Add(1)
	go func() {
		defer c.sends.Done()
		if err := c.o.Transport.SendCommand(b, to); err != nil {
			select {
			case c.sendErrs <- err:
			default:
			}
		}
	}()
}

type signed struct {
	b     []byte
	hosts []string
}

// split signs the command for all hosts at once if it fits, else for ever
// smaller groups of them.
func (c *controller) split(kind command.Kind, rel core.ReleaseID, a rollout.Action, timeout time.Duration) []signed {
	var out []signed
	hosts := a.Hosts
	per := len(hosts)
	for len(hosts) > 0 {
		n := min(per, len(hosts))
		b, err := c.sign(kind, rel, a.Step, hosts[:n], timeout)
		if err != nil && n > 1 {
			per = (n + 1) / 2
			continue
		}
		if err != nil {
			// Cannot happen with valid options: Validate checked the names.
			c.emit(Event{Event: "error", Reason: err.Error(), Hosts: hosts[:1]})
		} else {
			out = append(out, signed{b, hosts[:n]})
		}
		hosts = hosts[n:]
	}
	return out
}

func (c *controller) sign(kind command.Kind, rel core.ReleaseID, step int, hosts []string, timeout time.Duration) ([]byte, error) {
	c.seq++
	now := c.o.Now()
	cmd := &command.Command{
		Deploy: c.id, Seq: c.seq, Step: step, Controller: c.o.Controller,
		Issued: now, Expires: now.Add(min(timeout+time.Minute, command.MaxLifetime)),
		Repo: c.o.Repo, Kind: kind, Release: rel, Hosts: hosts, Timeout: timeout,
	}
	switch kind {
	case command.Stage:
		cmd.Hooks = pick(c.o.Hooks, command.BeforeStage, command.AfterStage)
	case command.Promote, command.Rollback:
		cmd.Restart, cmd.Checks = c.o.Restart, c.o.Checks
		cmd.Hooks = pick(c.o.Hooks, command.BeforePromote, command.AfterPromote, command.BeforeRestart,
			command.AfterRestart, command.BeforeCheck, command.AfterCheck)
		cmd.Force = c.o.Force && kind == command.Promote
	case command.Check:
		cmd.Checks = c.o.Checks
		cmd.Hooks = pick(c.o.Hooks, command.BeforeCheck, command.AfterCheck)
	}
	if cmd.Release.IsZero() && kind == command.Check {
		cmd.Release = c.o.Release
	}
	return command.Sign(cmd, c.o.Key)
}

func pick(hooks map[string][]string, phases ...string) map[string][]string {
	out := map[string][]string{}
	for _, p := range phases {
		if len(hooks[p]) > 0 {
			out[p] = hooks[p]
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func (c *controller) finish(a rollout.Action) {
	s := c.sum
	s.Result, s.Outcome, s.Reason = a.Result, a.Result.String(), a.Reason
	s.Hosts = c.m.Hosts()
	s.Counts = c.m.Counts()
	s.Phases = c.phases
	s.Ended = c.o.Now()
	for _, h := range s.Hosts {
		if f, ok := c.failAck[h.Name]; ok {
			fl := Failure{Host: h.Name, Phase: f.phase, Exit: -1, Error: f.ack.Error}
			if r, ok := f.ack.Failed(); ok {
				fl.Step = r.Phase
				if r.Phase != r.Action {
					fl.Step += " " + r.Action
				}
				fl.Exit, fl.Output = r.Exit, r.Output
			} else if f.ack.Refused {
				fl.Step = "refused"
			}
			s.Failures = append(s.Failures, fl)
		} else if h.State == rollout.HostUnreachable || (h.Error != "" && h.Phase != "") {
			s.Failures = append(s.Failures, Failure{Host: h.Name, Phase: h.Phase, Step: "no ack", Exit: -1, Error: h.Error})
		}
		if h.RollbackError != "" && c.failAck[h.Name] == nil {
			s.Failures = append(s.Failures, Failure{Host: h.Name, Phase: "rollback", Step: "no ack", Exit: -1, Error: h.RollbackError})
		}
	}
	sort.SliceStable(s.Failures, func(i, j int) bool { return s.Failures[i].Host < s.Failures[j].Host })
	c.emit(Event{Event: "done", Phase: a.Phase, Result: a.Result.String(), Reason: a.Reason, Summary: s})
}

// lose ends the deploy with no outcome: its transport is gone, so nothing
// more can be sent and no ack can arrive. It reports what each host was
// last known to do, and blames none.
func (c *controller) lose(err error) {
	s := c.sum
	now := c.o.Now()
	if n := len(c.phases); n > 0 && c.phases[n-1].End.IsZero() {
		c.phases[n-1].End = now
	}
	s.Outcome, s.Lost = OutcomeUnknown, err.Error()
	s.Reason = err.Error() + "; nothing more was sent: the outcome is unknown and hosts may run different releases"
	s.Hosts = c.m.Hosts()
	s.Counts = c.m.Counts()
	s.Phases = c.phases
	s.Ended = now
	for _, h := range s.Hosts {
		l := HostLast{Host: h.Name, State: h.State.String(), Runs: c.o.From[h.Name]}
		if a := c.acks[h.Name]; a != nil {
			l.Runs = a.Current
			l.Said = string(a.Kind) + " ok"
			if !a.OK {
				l.Said = string(a.Kind) + " FAILED"
			}
		}
		s.Last = append(s.Last, l)
	}
	c.emit(Event{Event: "done", Result: OutcomeUnknown, Reason: s.Reason, Summary: s})
}

// waitTimeout waits for wg, at most d.
func waitTimeout(wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(d):
	}
}
