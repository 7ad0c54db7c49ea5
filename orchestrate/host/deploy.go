package host

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"scatter/artifact/core"
	"scatter/orchestrate/agent"
	"scatter/orchestrate/command"
	"scatter/orchestrate/trust"
)

// Gossip message kinds for deploys.
const (
	msgCommand = 'C' // a signed command: broadcast, or sent directly on retry
	msgAck     = 'K' // an ack sealed by its host's key, sent directly to the command's controller
)

// hostState is what a host tells the cluster about its repos: what runs,
// what ran before, health and the last step's outcome (output trimmed). It
// travels in the push/pull state blob; the controller also learns it at
// once from each ack. (A broadcast on every change was tried: with 200
// hosts acking one step, 200 state broadcasts crowded the gossip channel
// that the next command needs.)
type hostState struct {
	Host  string            `json:"host"`
	Seq   int64             `json:"seq"` // orders a host's states: later wins
	Repos []agent.RepoState `json:"repos"`
}

// SendCommand sends a signed command: to every member by gossip when to
// is empty, else directly to each named member, 64 connections at a time. A command that
// targets this host is also run here, since gossip does not deliver a
// member's own broadcasts. Errors name the members that could not be
// reached; the others got it.
func (h *Host) SendCommand(b []byte, to []string) error {
	msg := append([]byte{msgCommand}, b...)
	self := false
	var errs []error
	if len(to) == 0 {
		c, err := command.Open(b, h.cfg.PubKey)
		if err != nil {
			return err
		}
		self = c.For(h.cfg.Name)
		if err := h.ml.Broadcast(msg); err != nil {
			return err
		}
	} else {
		var mu sync.Mutex
		var wg sync.WaitGroup
		sem := make(chan struct{}, 64) // connections in flight at once
		for _, name := range to {
			if name == h.cfg.Name {
				self = true
				continue
			}
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem }()
				defer wg.Done()
				if err := h.ml.SendTo(name, msg); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
	}
	if self {
		h.onCommand(b)
	}
	return errors.Join(errs...)
}

// Subscribe returns the acks this host receives for a deploy, until
// cancel. The channel holds 4096 acks; beyond that acks are dropped with a
// log line, and the controller's retry brings them again.
func (h *Host) Subscribe(deploy string) (<-chan *command.Ack, func()) {
	ch := make(chan *command.Ack, 4096)
	h.mu.Lock()
	if h.subs == nil {
		h.subs = map[string][]chan *command.Ack{}
	}
	h.subs[deploy] = append(h.subs[deploy], ch)
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		subs := h.subs[deploy]
		for i, c := range subs {
			if c == ch {
				h.subs[deploy] = append(subs[:i], subs[i+1:]...)
				break
			}
		}
		if len(h.subs[deploy]) == 0 {
			delete(h.subs, deploy)
		}
	}
}

func (h *Host) deliverAck(a *command.Ack) {
	h.count.receivedAck(a)
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, ch := range h.subs[a.Deploy] {
		select {
		case ch <- a:
		default:
			h.log.Warn("ack subscriber full; dropped an ack (a retry brings it again)", "deploy", a.Deploy, "from", a.Host)
		}
	}
}

// onCommand checks a command and, if it is for this host, runs it on its
// own goroutine: gossip callbacks must not block.
func (h *Host) onCommand(b []byte) {
	// Verify on the gossip goroutine (cheap) so that garbage is dropped at
	// once; everything else happens on the step's own goroutine.
	c, err := command.Open(b, h.cfg.PubKey)
	if err != nil {
		h.log.Warn("refused command", "err", err)
		h.count.refusedCommand()
		return
	}
	if !c.For(h.cfg.Name) {
		return // relayed for others: never recorded, never run here
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		h.runCommand(c)
	}()
}

// runCommand admits a command addressed to this host and runs it.
func (h *Host) runCommand(c *command.Command) {
	h.useReserve(c)
	defer h.keepReserve()
	if err := h.guard.Admit(c); err != nil {
		if errors.Is(err, command.ErrReplay) {
			// The same bytes again: never run, never answered. The
			// controller sends each command both by gossip and directly,
			// so a second copy of a step this host knows is routine; one
			// for a step it does not know is a replay worth a warning.
			if h.agent.Knows(c) {
				h.log.Debug("ignored a second copy of a command", "deploy", c.Deploy, "seq", c.Seq)
			} else {
				h.log.Warn("refused replayed command", "deploy", c.Deploy, "seq", c.Seq, "step", c.Step)
				h.count.refusedCommand()
			}
			return
		}
		h.log.Warn("refused command", "deploy", c.Deploy, "seq", c.Seq, "err", err)
		h.count.refusedCommand()
		h.sendAck(c.Controller, h.agent.Refuse(c, err))
		return
	}
	h.log.Info("command", "deploy", c.Deploy, "seq", c.Seq, "step", c.Step, "kind", c.Kind, "repo", c.Repo, "release", c.Release.Short())
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-h.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	ack, done := h.agent.Handle(ctx, c)
	cancel()
	if !done {
		return // running: its ack goes out when it finishes
	}
	h.sendAck(c.Controller, ack)
	h.stateChanged()
}

// sendAck delivers an ack to the controller (locally if that is us). A
// lost ack is not retried here: the controller re-sends the step and the
// agent answers from its record.
func (h *Host) sendAck(controller string, a *command.Ack) {
	c := *a
	c.Clock = h.now()
	a = &c
	if controller == h.cfg.Name {
		h.deliverAck(a)
		return
	}
	msg, err := AckMessage(h.cfg.Name, a, h.key)
	if err != nil {
		h.log.Warn("encode ack", "err", err)
		return
	}
	if err := h.ml.SendTo(controller, msg); err != nil {
		h.log.Warn("send ack", "to", controller, "deploy", a.Deploy, "step", a.Step, "err", err)
	}
}

// onAck takes an ack only with the signature of the host it is from, and
// only if the roster enrols that host: another member holding the cluster
// key cannot pass or fail a step for it.
func (h *Host) onAck(b []byte) {
	s, _, err := h.book.Open(trust.KindAck, b)
	var a *command.Ack
	if err == nil {
		if a, err = command.DecodeAck(s.Body); err != nil {
			err = fmt.Errorf("%w: %w", trust.ErrMalformed, err)
		} else {
			err = checkSigner(s.Name, a.Host)
		}
	}
	if err != nil {
		h.refuse("ack", s.Name, err)
		return
	}
	h.stateFromAck(a)
	h.deliverAck(a)
}

// stateChanged refreshes this host's deploy state in its push/pull blob.
func (h *Host) stateChanged() {
	st := hostState{Host: h.cfg.Name, Seq: time.Now().UnixNano(), Repos: h.agent.State()}
	for i := range st.Repos {
		st.Repos[i].Last = trimAck(st.Repos[i].Last)
	}
	h.mu.Lock()
	h.states[h.cfg.Name] = st
	h.mu.Unlock()
	h.changed()
}

// stateFromAck updates what this host knows of another host's repo from
// an ack it received, which is newer than that host's last push/pull.
func (h *Host) stateFromAck(a *command.Ack) {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := h.states[a.Host]
	st.Host = a.Host
	st.Seq = time.Now().UnixNano()
	repos := make([]agent.RepoState, 0, len(st.Repos)+1)
	found := false
	for _, r := range st.Repos {
		if r.Repo == a.Repo {
			r.Current, r.Previous, r.Last, found = a.Current, a.Previous, trimAck(a), true
			if a.Kind != command.Stage && !a.Refused {
				r.Health, r.CheckedAt = healthOf(a), time.Now()
			}
		}
		repos = append(repos, r)
	}
	if !found {
		r := agent.RepoState{Repo: a.Repo, Current: a.Current, Previous: a.Previous, Last: trimAck(a)}
		if a.Kind != command.Stage && !a.Refused {
			r.Health, r.CheckedAt = healthOf(a), time.Now()
		}
		repos = append(repos, r)
	}
	st.Repos = repos
	h.states[a.Host] = st
}

func healthOf(a *command.Ack) string {
	for _, r := range a.Results {
		if r.Phase == "check" && !r.OK {
			return "failing"
		}
	}
	return "ok"
}

// trimAck keeps what fits a gossip packet: the outcome, not the outputs.
func trimAck(a *command.Ack) *command.Ack {
	if a == nil {
		return nil
	}
	t := *a
	t.Results = nil
	if len(t.Error) > 200 {
		t.Error = t.Error[:200] + "…"
	}
	return &t
}

func (h *Host) mergeHostState(st hostState) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if old, ok := h.states[st.Host]; ok && old.Seq >= st.Seq {
		return
	}
	h.states[st.Host] = st
}

// DeployState returns each host's deploy state for a repo as gossip last
// reported it (this host's own is read now).
func (h *Host) DeployState(repo string) map[string]agent.RepoState {
	own := h.agent.State()
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]agent.RepoState{}
	for name, st := range h.states {
		for _, r := range st.Repos {
			if r.Repo == repo {
				out[name] = r
			}
		}
	}
	delete(out, h.cfg.Name)
	for _, r := range own {
		if r.Repo == repo {
			out[h.cfg.Name] = r
		}
	}
	return out
}

// CurrentRelease returns what runs for repo on this host, zero if nothing.
func (h *Host) CurrentRelease(repo string) core.ReleaseID {
	for _, r := range h.agent.State() {
		if r.Repo == repo {
			return r.Current
		}
	}
	return core.ReleaseID{}
}
