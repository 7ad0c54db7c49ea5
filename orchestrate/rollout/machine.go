package rollout

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// stage is where the Machine is in the deploy; phase names (Action.Phase)
// are finer: stageBatch covers "batch 1".."batch N".
type stage int

const (
	stageIdle     stage = iota // before Start
	stageStaging               // Stage wave in flight
	stageCanary                // Promote to the canary pool in flight
	stageObserve               // canaries passed; waiting for Observe to elapse
	stageCheck                 // Check of the canaries in flight
	stageBatch                 // Promote to batch m.batch in flight
	stageRollback              // Rollback waves in flight
	stageDone
)

// cause is why the deploy stops going forward. The first cause wins: an
// abort after the failure limit was passed does not turn a rollback into a
// halt, and failures after an abort do not turn a halt into a rollback.
type cause int

const (
	causeNone     cause = iota
	causeCanary         // a canary failed its Promote or Check
	causeFailures       // failures passed the batch limit
	causeAbort          // Abort
)

// ackState is one host's answer to one wave.
type ackState uint8

const (
	ackPending  ackState = iota
	ackOK                // acked OK in time
	ackFailed            // acked not OK in time
	ackTimedOut          // no ack before the deadline
	ackLate              // acked after the deadline (recorded once)
)

// wave is one command (one Step) and its acks.
type wave struct {
	action   Action // as first sent; Hosts is the Machine's own copy
	canary   bool   // a Promote or Check of the canary pool
	acks     map[string]ackState
	open     int // hosts still ackPending
	lastSend time.Time
	deadline time.Time
}

type host struct {
	HostState
	stagedOK    bool // acked Stage OK in time (eligible for promotion)
	everStaged  bool // for Counts: in time or late
	everPromo   bool // for Counts: Promote acked OK, in time or late
	promoteSent bool // must be rolled back if a rollback happens
	// stateStep is the Step whose outcome State shows. A late ack changes
	// State only while stateStep is still its Step: once the host has moved
	// on (e.g. it was sent a Rollback) an old answer is history, kept by
	// the controller, not the host's state.
	stateStep int
}

// Machine is the rolling-deploy state machine for one Plan. It does no I/O
// and keeps no clock: every input carries the current time, and every
// input returns the actions to carry out, in order.
//
// A Machine is not safe for concurrent use: one goroutine (the deploy
// controller) owns it and feeds it every input in turn. Inputs may come in
// any order and any number of times; bad ones (unknown host or step,
// duplicates, calls after Done) are ignored and return nil. A Machine never
// panics on its inputs.
type Machine struct {
	plan   Plan
	hosts  []*host
	byName map[string]*host

	waves    map[int]*wave // every wave ever sent, for late acks
	inflight []*wave       // waves of the current step of the deploy
	step     int           // last Step used
	stage    stage
	phase    string // current phase name

	canaries     []*host
	batches      [][]*host
	batch        int // index into batches of the batch in flight
	observeUntil time.Time

	stageLimit int // FailureLimit.Of(len(Hosts))
	batchLimit int // FailureLimit.Of(non-canary hosts)
	failures   int // counted against the limits: staging and batches
	failPhases []string
	failCount  map[string]int // failures counted per phase
	canaryBad  []*host        // canaries that failed or timed out

	rollbacks []*wave // the Rollback waves, one per From release
	pastStage bool    // staging passed; the batch limit is in force

	stop      cause
	stopPhase string // phase when stop was set
	aborted   bool

	done   bool
	result Result
	reason string
}

// New checks p (see Plan.Validate), fills in its defaults and returns a
// Machine ready to Start.
func New(p Plan) (*Machine, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	p = p.withDefaults()
	m := &Machine{
		plan:      p,
		byName:    make(map[string]*host, len(p.Hosts)),
		waves:     make(map[int]*wave),
		failCount: make(map[string]int),
	}
	for _, name := range p.Hosts {
		h := &host{HostState: HostState{Name: name, From: p.From[name], State: HostPending}}
		m.hosts = append(m.hosts, h)
		m.byName[name] = h
	}
	n := len(p.Hosts)
	m.stageLimit = p.FailureLimit.Of(n)
	m.batchLimit = p.FailureLimit.Of(n - p.Canary)
	return m, nil
}

// Plan returns the plan the Machine runs, with defaults filled in.
func (m *Machine) Plan() Plan {
	p := m.plan
	p.Hosts = slices.Clone(p.Hosts)
	p.From = make(map[string]string, len(m.plan.From))
	for k, v := range m.plan.From {
		p.From[k] = v
	}
	return p
}

// Start begins the deploy: the Stage wave, or with SkipStage the first
// promotion. A second call returns nil.
func (m *Machine) Start(now time.Time) []Action {
	if m.stage != stageIdle || m.done {
		return nil
	}
	if m.plan.SkipStage {
		for _, h := range m.hosts {
			h.State, h.stagedOK, h.everStaged = HostStaged, true, true
		}
		return m.afterStaging(now)
	}
	m.stage = stageStaging
	return []Action{
		m.enter("stage", m.hosts, fmt.Sprintf("staging %s on %s", m.plan.To, plural(len(m.hosts), "host"))),
		m.send(now, Stage, m.plan.To, m.hosts, m.plan.StageTimeout, false),
	}
}

// Ack records a host's answer. An ack for an unknown step, for a host the
// step was not sent to, or a second ack from the same host for the same
// step is ignored and returns nil. An ack that arrives after its host was
// marked unreachable is recorded in the host's state (see HostState.Late)
// but changes no decision and returns nil; the host was already counted as
// a failure and, if it was sent a Promote, it is already among the hosts a
// rollback covers. After Done, acks still update host states for the
// summary but return nil.
func (m *Machine) Ack(now time.Time, a Ack) []Action {
	w := m.waves[a.Step]
	if w == nil {
		return nil
	}
	st, ok := w.acks[a.Host]
	if !ok {
		return nil
	}
	h := m.byName[a.Host]
	switch st {
	case ackPending:
	case ackTimedOut:
		w.acks[a.Host] = ackLate
		if h.stateStep == w.action.Step {
			h.Late = true
			m.verdict(h, w, a.OK, a.Error)
		}
		return nil
	default:
		return nil
	}
	if a.OK {
		w.acks[a.Host] = ackOK
	} else {
		w.acks[a.Host] = ackFailed
	}
	w.open--
	m.verdict(h, w, a.OK, a.Error)
	if m.done {
		// Only a Stage wave cut short by an abort can still be open.
		return nil
	}
	if !a.OK {
		m.countFailure(h, w)
	}
	return m.settle(now)
}

// Tick lets time pass: waves whose timeout has passed mark their silent
// hosts unreachable, waves due for a retry are re-sent to their silent
// hosts, and the observation period ends. Call it regularly (every second
// or so); how often only bounds how late a timeout or retry can fire.
func (m *Machine) Tick(now time.Time) []Action {
	if m.done || m.stage == stageIdle {
		return nil
	}
	var out []Action
	for _, w := range m.inflight {
		if w.open == 0 {
			continue
		}
		if !now.Before(w.deadline) {
			m.timeout(w)
			continue
		}
		if m.mayResend(w) && !now.Before(w.lastSend.Add(m.plan.RetryEvery)) {
			w.lastSend = now
			out = append(out, m.resend(w))
		}
	}
	out = append(out, m.settle(now)...)
	if m.stage == stageObserve && !now.Before(m.observeUntil) {
		m.stage = stageCheck
		out = append(out, m.send(now, Check, m.plan.To, m.canaries, m.plan.ActionTimeout, true))
	}
	return out
}

// Abort stops the deploy going forward; it is idempotent. No new phase or
// batch starts. Before Start or during staging the deploy ends at once
// with Aborted: staging changes nothing a host runs, so there is nothing
// to wait for (Stage acks that come later still update host states).
// Otherwise the wave in flight finishes (acks or timeouts; Promote is no
// longer re-sent) and then, with OnAbortRollback, every host that was sent
// a Promote is rolled back, or with OnAbortHalt the deploy ends as it
// stands. An abort during a rollback, or after failures beyond the limit
// already decided one, changes nothing.
func (m *Machine) Abort(now time.Time) []Action {
	if m.done || m.aborted {
		return nil
	}
	m.aborted = true
	switch m.stage {
	case stageIdle:
		return m.finish(Aborted, "aborted before the deploy started; nothing was staged or promoted")
	case stageStaging:
		return m.finish(Aborted, "aborted during staging; nothing was promoted")
	case stageRollback:
		return nil
	}
	if m.stop == causeNone {
		m.stop, m.stopPhase = causeAbort, m.phase
	}
	if m.stage == stageObserve {
		return m.stopNow(now)
	}
	return nil
}

// Done reports the result once the deploy has ended.
func (m *Machine) Done() (Result, bool) {
	if !m.done {
		return 0, false
	}
	return m.result, true
}

// Reason is the summary sentence of the Done action ("" before Done).
func (m *Machine) Reason() string { return m.reason }

// Hosts returns every host's state, in Plan.Hosts order.
func (m *Machine) Hosts() []HostState {
	out := make([]HostState, len(m.hosts))
	for i, h := range m.hosts {
		out[i] = h.HostState
	}
	return out
}

// Counts summarises the host states for live progress.
func (m *Machine) Counts() Counts {
	c := Counts{Hosts: len(m.hosts), Failures: m.failures, FailureLimit: m.limit()}
	for _, h := range m.hosts {
		if h.everStaged {
			c.Staged++
		}
		if h.everPromo {
			c.Promoted++
		}
		switch h.State {
		case HostPromoted:
			c.Healthy++
		case HostFailed:
			c.Failed++
		case HostUnreachable:
			c.Unreachable++
		case HostRolledBack:
			c.RolledBack++
		case HostRollbackFailed:
			c.RollbackFailed++
		}
	}
	return c
}

// limit is the failure limit in force: the staging limit until staging
// has passed and when there are no batches (all staged hosts were
// canaries), the batch limit otherwise.
func (m *Machine) limit() int {
	if !m.pastStage || len(m.batches) == 0 {
		return m.stageLimit
	}
	return m.batchLimit
}

// enter begins a phase and returns its Phase action.
func (m *Machine) enter(name string, hs []*host, reason string) Action {
	m.phase = name
	return Action{Kind: Phase, Phase: name, Hosts: names(hs), Reason: reason}
}

// send starts a wave of a command to hs and returns its action.
func (m *Machine) send(now time.Time, k Kind, release string, hs []*host, timeout time.Duration, canary bool) Action {
	m.step++
	w := &wave{
		action:   Action{Kind: k, Step: m.step, Hosts: names(hs), Release: release, Phase: m.phase},
		canary:   canary,
		acks:     make(map[string]ackState, len(hs)),
		open:     len(hs),
		lastSend: now,
		deadline: now.Add(timeout),
	}
	for _, h := range hs {
		w.acks[h.Name] = ackPending
		switch k {
		case Promote:
			h.State, h.stateStep, h.promoteSent = HostPromoting, m.step, true
		case Rollback:
			h.State, h.stateStep = HostRollingBack, m.step
		}
	}
	m.waves[m.step] = w
	m.inflight = append(m.inflight, w)
	a := w.action
	a.Hosts = slices.Clone(a.Hosts)
	return a
}

// resend is w again, to its hosts that have not acked.
func (m *Machine) resend(w *wave) Action {
	a := w.action
	a.Resend = true
	a.Hosts = nil
	for _, name := range w.action.Hosts {
		if w.acks[name] == ackPending {
			a.Hosts = append(a.Hosts, name)
		}
	}
	return a
}

// mayResend: once the deploy is stopping, Promote is not re-sent, so a
// host that never got it stays where it is; the wave still waits for its
// timeout because a host may be promoting already.
func (m *Machine) mayResend(w *wave) bool {
	return w.action.Kind != Promote || m.stop == causeNone
}

// timeout marks w's silent hosts unreachable and counts them as failures.
func (m *Machine) timeout(w *wave) {
	for _, name := range w.action.Hosts {
		if w.acks[name] != ackPending {
			continue
		}
		w.acks[name] = ackTimedOut
		w.open--
		h := m.byName[name]
		h.stateStep = w.action.Step
		d := m.plan.ActionTimeout
		if w.action.Kind == Stage {
			d = m.plan.StageTimeout
		}
		if w.action.Kind == Rollback {
			h.State, h.RollbackError = HostRollbackFailed, "unreachable: "+noAck(d)
			continue
		}
		h.State, h.Phase, h.Error = HostUnreachable, w.action.Phase, noAck(d)
		m.countFailure(h, w)
	}
}

// verdict sets h's state from its answer to w.
func (m *Machine) verdict(h *host, w *wave, ok bool, errText string) {
	h.stateStep = w.action.Step
	if w.action.Kind == Rollback {
		if ok {
			h.State = HostRolledBack
		} else {
			h.State, h.RollbackError = HostRollbackFailed, orUnknown(errText)
		}
		return
	}
	if !ok {
		h.State, h.Error = HostFailed, orUnknown(errText)
		if !h.Late {
			h.Phase = w.action.Phase
		}
		return
	}
	switch w.action.Kind {
	case Stage:
		h.State, h.everStaged = HostStaged, true
		if !h.Late {
			h.stagedOK = true
		}
	case Promote:
		h.State, h.everPromo = HostPromoted, true
	case Check:
		h.State = HostPromoted
	}
}

// countFailure counts h's failure or timeout in w against the limits and
// decides to stop when they are passed. Rollback failures are not counted
// here; afterRollback reads them from the waves.
func (m *Machine) countFailure(h *host, w *wave) {
	switch {
	case w.action.Kind == Rollback:
		return
	case w.canary:
		m.canaryBad = append(m.canaryBad, h)
		if m.stop == causeNone {
			m.stop, m.stopPhase = causeCanary, m.phase
		}
		return
	}
	m.failures++
	p := w.action.Phase
	if m.failCount[p] == 0 {
		m.failPhases = append(m.failPhases, p)
	}
	m.failCount[p]++
	if w.action.Kind == Promote && m.failures > m.batchLimit && m.stop == causeNone {
		m.stop, m.stopPhase = causeFailures, m.phase
	}
}

// settle moves the deploy on once every wave in flight is complete.
func (m *Machine) settle(now time.Time) []Action {
	if m.done || len(m.inflight) == 0 {
		return nil
	}
	for _, w := range m.inflight {
		if w.open > 0 {
			return nil
		}
	}
	m.inflight = m.inflight[:0]
	switch m.stage {
	case stageStaging:
		return m.afterStaging(now)
	case stageCanary, stageCheck:
		return m.afterCanary(now)
	case stageBatch:
		if m.stop != causeNone {
			return m.stopNow(now)
		}
		return m.startBatch(now, m.batch+1)
	case stageRollback:
		return m.afterRollback()
	}
	return nil
}

// afterStaging decides, once every Stage ack or timeout is in, whether to
// go on, and splits the staged hosts into the canary pool and batches.
func (m *Machine) afterStaging(now time.Time) []Action {
	var ok []*host
	for _, h := range m.hosts {
		if h.stagedOK {
			ok = append(ok, h)
		}
	}
	n := min(m.plan.Canary, len(ok))
	rest := ok[n:]
	switch {
	case m.failures > m.stageLimit:
		return m.finish(Failed, fmt.Sprintf("%s (limit %d); nothing was promoted", m.failedText(), m.stageLimit))
	case len(rest) > 0 && m.failures > m.batchLimit:
		return m.finish(Failed, fmt.Sprintf("%s (limit %d of the non-canary hosts); nothing was promoted",
			m.failedText(), m.batchLimit))
	case len(ok) == 0:
		return m.finish(Failed, "no host staged "+m.plan.To+"; nothing was promoted")
	}
	m.pastStage = true
	m.canaries = ok[:n]
	size := max(1, m.plan.Batch.Of(len(rest)))
	for len(rest) > 0 {
		k := min(size, len(rest))
		m.batches = append(m.batches, rest[:k])
		rest = rest[k:]
	}
	if len(m.canaries) == 0 {
		return m.startBatch(now, 0)
	}
	m.stage = stageCanary
	return []Action{
		m.enter("canary", m.canaries, fmt.Sprintf("promoting %s to the canary pool", plural(len(m.canaries), "host"))),
		m.send(now, Promote, m.plan.To, m.canaries, m.plan.ActionTimeout, true),
	}
}

// afterCanary follows a complete canary Promote or Check wave.
func (m *Machine) afterCanary(now time.Time) []Action {
	if m.stop != causeNone {
		return m.stopNow(now)
	}
	if m.stage == stageCanary && m.plan.Observe > 0 {
		m.stage = stageObserve
		m.observeUntil = now.Add(m.plan.Observe)
		return []Action{m.enter("observe", m.canaries,
			fmt.Sprintf("watching %s for %s, then checking again", plural(len(m.canaries), "canary"), m.plan.Observe))}
	}
	return m.startBatch(now, 0)
}

// startBatch starts batch i, or ends the deploy with Success after the last.
func (m *Machine) startBatch(now time.Time, i int) []Action {
	if i >= len(m.batches) {
		return m.finish(Success, m.successText())
	}
	m.stage, m.batch = stageBatch, i
	b := m.batches[i]
	name := fmt.Sprintf("batch %d", i+1)
	return []Action{
		m.enter(name, b, fmt.Sprintf("batch %d of %d: %s", i+1, len(m.batches), plural(len(b), "host"))),
		m.send(now, Promote, m.plan.To, b, m.plan.ActionTimeout, false),
	}
}

// stopNow acts on m.stop once nothing is in flight.
func (m *Machine) stopNow(now time.Time) []Action {
	if m.stop == causeAbort && m.plan.OnAbort == OnAbortHalt {
		return m.finish(Aborted, m.causeText()+"; "+m.haltText())
	}
	return m.startRollback(now)
}

// startRollback sends Rollback to every host that was sent a Promote,
// grouped by From release in order of first appearance; hosts with no From
// release are marked HostNoRollback instead.
func (m *Machine) startRollback(now time.Time) []Action {
	m.stage = stageRollback
	var (
		targets  []*host
		releases []string
		groups   = map[string][]*host{}
	)
	for _, h := range m.hosts {
		if !h.promoteSent {
			continue
		}
		if h.From == "" {
			h.State, h.stateStep = HostNoRollback, 0
			continue
		}
		if groups[h.From] == nil {
			releases = append(releases, h.From)
		}
		groups[h.From] = append(groups[h.From], h)
		targets = append(targets, h)
	}
	out := []Action{m.enter("rollback", targets, m.causeText())}
	for _, r := range releases {
		out = append(out, m.send(now, Rollback, r, groups[r], m.plan.ActionTimeout, false))
		m.rollbacks = append(m.rollbacks, m.inflight[len(m.inflight)-1])
	}
	if len(releases) == 0 {
		out = append(out, m.afterRollback()...)
	}
	return out
}

// afterRollback ends the deploy once every Rollback ack or timeout is in.
func (m *Machine) afterRollback() []Action {
	var back, bad []string
	for _, h := range m.hosts {
		if !h.promoteSent || h.From == "" {
			continue
		}
		st := ackPending
		for _, w := range m.rollbacks {
			if s, ok := w.acks[h.Name]; ok {
				st = s
			}
		}
		if st == ackOK {
			back = append(back, h.Name)
		} else {
			bad = append(bad, h.Name)
		}
	}
	reason := m.causeText()
	res := RolledBack
	if m.stop == causeAbort {
		res = Aborted
	}
	if len(bad) > 0 {
		res = RollbackFailed
		reason += fmt.Sprintf("; rollback failed on %d of %s (%s)", len(bad), plural(len(back)+len(bad), "host"), list(bad))
	} else {
		reason += "; rolled back " + plural(len(back), "host")
	}
	return m.finish(res, reason+m.noTargetText())
}

// finish ends the deploy.
func (m *Machine) finish(r Result, reason string) []Action {
	m.done, m.result, m.reason = true, r, reason
	m.stage = stageDone
	m.inflight = nil
	return []Action{{Kind: Done, Phase: m.phase, Result: r, Reason: reason}}
}

// causeText says why the deploy stopped going forward.
func (m *Machine) causeText() string {
	switch m.stop {
	case causeAbort:
		return "aborted during " + phaseText(m.stopPhase)
	case causeCanary:
		var bad []string
		for _, h := range m.canaryBad {
			bad = append(bad, h.Name)
		}
		who := "canary " + list(bad)
		if len(bad) > 1 {
			who = "canaries " + list(bad)
		}
		if m.stopPhase == "observe" {
			return who + " failed the check after the observation period"
		}
		return who + " failed"
	case causeFailures:
		return fmt.Sprintf("%s (limit %d)", m.failedText(), m.batchLimit)
	}
	return ""
}

// failedText counts the failures by phase: "2 hosts failed in batch 2" or
// "3 hosts failed: 1 in stage, 2 in batch 2".
func (m *Machine) failedText() string {
	n := plural(m.failures, "host")
	switch len(m.failPhases) {
	case 0:
		return "no host failed"
	case 1:
		if m.failPhases[0] == "stage" {
			return n + " failed staging"
		}
		return n + " failed in " + phaseText(m.failPhases[0])
	}
	parts := make([]string, len(m.failPhases))
	for i, p := range m.failPhases {
		parts[i] = fmt.Sprintf("%d in %s", m.failCount[p], phaseText(p))
	}
	return n + " failed: " + strings.Join(parts, ", ")
}

func (m *Machine) successText() string {
	promoted := 0
	for _, h := range m.hosts {
		if h.State == HostPromoted {
			promoted++
		}
	}
	if m.failures == 0 && promoted == len(m.hosts) {
		return fmt.Sprintf("all %s promoted to %s", plural(promoted, "host"), m.plan.To)
	}
	return fmt.Sprintf("%d of %s promoted to %s; %s (limit %d)",
		promoted, plural(len(m.hosts), "host"), m.plan.To, m.failedText(), m.limit())
}

func (m *Machine) haltText() string {
	promoted, sent := 0, 0
	for _, h := range m.hosts {
		if h.promoteSent {
			sent++
		}
		if h.State == HostPromoted {
			promoted++
		}
	}
	s := fmt.Sprintf("halted with %d of %s promoted to %s", promoted, plural(len(m.hosts), "host"), m.plan.To)
	if bad := sent - promoted; bad > 0 {
		s += fmt.Sprintf(" and %d sent a promote without success", bad)
	}
	return s
}

func (m *Machine) noTargetText() string {
	var none []string
	for _, h := range m.hosts {
		if h.State == HostNoRollback {
			none = append(none, h.Name)
		}
	}
	switch len(none) {
	case 0:
		return ""
	case 1:
		return "; " + none[0] + " had no previous release and was not rolled back"
	}
	return "; " + list(none) + " had no previous release and were not rolled back"
}

// phaseText names a phase in a sentence: "during staging", "in batch 2".
func phaseText(p string) string {
	switch p {
	case "stage":
		return "staging"
	case "canary":
		return "the canary phase"
	case "observe":
		return "the canary observation"
	}
	return p
}

func names(hs []*host) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = h.Name
	}
	return out
}

// plural is "1 host", "2 hosts"; "canary" becomes "canaries".
func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	if w, ok := strings.CutSuffix(word, "y"); ok {
		return fmt.Sprintf("%d %sies", n, w)
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// list names up to four hosts: "a", "a and b", "a, b, c and 5 more".
func list(names []string) string {
	const most = 4
	switch {
	case len(names) == 0:
		return ""
	case len(names) == 1:
		return names[0]
	case len(names) <= most:
		return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
	}
	return strings.Join(names[:most-1], ", ") + fmt.Sprintf(" and %d more", len(names)-most+1)
}

func orUnknown(s string) string {
	if s == "" {
		return "failed (no error given)"
	}
	return s
}
