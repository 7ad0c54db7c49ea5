package host

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"scatter/artifact/core"
	"scatter/orchestrate/agent"
	"scatter/orchestrate/command"
)

// Gossip message kinds for deploys.
const (
	msgCommand   = 'C' // a signed command: broadcast, or sent directly on retry
	msgAck       = 'K' // an ack, sent directly to the command's controller
	msgHostState = 'S' // a host's deploy state (hostState JSON), broadcast on change
)

// hostState is what a host tells the cluster about its repos: what runs,
// what ran before, health and the last step's outcome (output trimmed).
type hostState struct {
	Host  string            `json:"host"`
	Seq   int64             `json:"seq"` // orders a host's states: later wins
	Repos []agent.RepoState `json:"repos"`
}

// SendCommand sends a signed command: to every member by gossip when to
// is empty, else directly to each named member (retries). A command that
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
		for _, name := range to {
			if name == h.cfg.Name {
				self = true
				continue
			}
			wg.Add(1)
			go func() {
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
	c, err := h.guard.Open(b)
	if err != nil {
		if c == nil {
			h.log.Warn("refused command", "err", err)
			return
		}
		if !c.For(h.cfg.Name) {
			return
		}
		if errors.Is(err, command.ErrReplay) {
			// A retry of a step comes with a new sequence number; the
			// same bytes again are a replay (or a late gossip copy):
			// never run, but answer from the record if the step is done.
			h.log.Warn("refused replayed command", "deploy", c.Deploy, "seq", c.Seq, "step", c.Step)
			return
		}
		h.log.Warn("refused command", "deploy", c.Deploy, "seq", c.Seq, "err", err)
		h.sendAck(c.Controller, h.agent.Refuse(c, err))
		return
	}
	if !c.For(h.cfg.Name) {
		return
	}
	h.log.Info("command", "deploy", c.Deploy, "seq", c.Seq, "step", c.Step, "kind", c.Kind, "repo", c.Repo, "release", c.Release.Short())
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
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
	}()
}

// sendAck delivers an ack to the controller (locally if that is us). A
// lost ack is not retried here: the controller re-sends the step and the
// agent answers from its record.
func (h *Host) sendAck(controller string, a *command.Ack) {
	if controller == h.cfg.Name {
		h.deliverAck(a)
		return
	}
	b, err := command.EncodeAck(a)
	if err != nil {
		h.log.Warn("encode ack", "err", err)
		return
	}
	if err := h.ml.SendTo(controller, append([]byte{msgAck}, b...)); err != nil {
		h.log.Warn("send ack", "to", controller, "deploy", a.Deploy, "step", a.Step, "err", err)
	}
}

func (h *Host) onAck(b []byte) {
	a, err := command.DecodeAck(b)
	if err != nil {
		h.log.Warn("dropped malformed ack", "err", err)
		return
	}
	h.deliverAck(a)
}

// stateChanged broadcasts this host's deploy state and refreshes the
// push/pull blob.
func (h *Host) stateChanged() {
	st := hostState{Host: h.cfg.Name, Seq: time.Now().UnixNano(), Repos: h.agent.State()}
	for i := range st.Repos {
		st.Repos[i].Last = trimAck(st.Repos[i].Last)
	}
	b, err := json.Marshal(st)
	if err == nil {
		h.mu.Lock()
		h.states[h.cfg.Name] = st
		h.mu.Unlock()
		if err := h.ml.Broadcast(append([]byte{msgHostState}, b...)); err != nil {
			h.log.Warn("broadcast deploy state", "err", err)
		}
	}
	h.changed()
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

func (h *Host) onHostState(b []byte) {
	var st hostState
	if err := json.Unmarshal(b, &st); err != nil || st.Host == "" {
		h.log.Warn("dropped malformed host state", "err", err)
		return
	}
	h.mergeHostState(st)
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
