package membership

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// JoinInfo says how this node last got into the cluster: for `scatter
// status`, and for an operator asking why a host sees nobody.
type JoinInfo struct {
	// At is when a join last reached a member, Via which members it
	// reached (names where known, else addresses) and Reason why it
	// joined ("join", "alone", "seed not a member: …", "remembered
	// members missing", "periodic").
	At     time.Time `json:"at,omitzero"`
	Via    []string  `json:"via,omitempty"`
	Reason string    `json:"reason,omitempty"`
	// Tried is the last attempt, Failures how many attempts in a row
	// reached nobody, Error the last such attempt's error.
	Tried    time.Time `json:"tried,omitzero"`
	Failures int       `json:"failures,omitempty"`
	Error    string    `json:"error,omitempty"`
	// Remembered is how many members the node would rejoin (KnownFile).
	Remembered int `json:"remembered"`
	// Missing names the seeds and remembered members absent from the
	// member list at the last attempt, which the node keeps trying.
	Missing []string `json:"missing,omitempty"`
}

// rejoiner is the Node's share of the rejoin work: the policy, the
// record of joins and the loop's lifetime.
type rejoiner struct {
	mu     sync.Mutex // guards policy and info; never held across I/O
	policy *rejoinPolicy
	info   JoinInfo

	attemptMu sync.Mutex // one join attempt at a time
	cancel    context.CancelFunc
	done      chan struct{}
}

// rejoinWait bounds how long one rejoin attempt waits for its joins.
const rejoinWait = 3 * time.Second

// maxJoinsInFlight bounds the addresses a join contacts at once.
const maxJoinsInFlight = 8

// joinAddrs joins each address on its own goroutine (memberlist's Join
// contacts them one after another, so one dead address would hold up the
// rest for TCPTimeout) and returns those it reached.
func (n *Node) joinAddrs(ctx context.Context, addrs []string) ([]string, error) {
	type result struct {
		addr string
		err  error
	}
	results := make(chan result, len(addrs))
	sem := make(chan struct{}, maxJoinsInFlight)
	go func() {
		for _, a := range addrs {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				results <- result{a, context.Cause(ctx)}
				continue
			}
			go func() {
				defer func() { <-sem }()
				_, err := n.ml.Join([]string{a})
				results <- result{a, err}
			}()
		}
	}()
	var reached []string
	var errs []error
	for range addrs {
		select {
		case r := <-results:
			if r.err != nil {
				errs = append(errs, fmt.Errorf("%s: %s", r.addr, oneLine(r.err)))
			} else {
				reached = append(reached, r.addr)
			}
		case <-ctx.Done():
			return reached, fmt.Errorf("join %s: %w", strings.Join(addrs, ","), context.Cause(ctx))
		}
	}
	if len(reached) == 0 {
		var msgs []string
		for _, e := range errs {
			msgs = append(msgs, e.Error())
		}
		return nil, fmt.Errorf("join: %s", strings.Join(msgs, "; "))
	}
	return reached, nil
}

// oneLine flattens memberlist's multi-line error lists ("1 error
// occurred:\n\t* failed to join …") to their gist, for logs and status.
func oneLine(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, "* "); i >= 0 {
		s = s[i+2:]
	}
	s = strings.Join(strings.Fields(s), " ")
	// memberlist repeats the address: "failed to join A: dial tcp A: …".
	if i := strings.Index(s, ": "); strings.HasPrefix(s, "failed to join ") && i >= 0 {
		s = s[i+2:]
	}
	return s
}

// recordJoin notes an attempt's outcome in JoinInfo.
func (n *Node) recordJoin(now time.Time, reason string, reached []string, err error) {
	names := map[string]string{}
	for _, m := range n.Members() {
		names[addrOf(m)] = m.Name
	}
	r := &n.rejoin
	r.mu.Lock()
	defer r.mu.Unlock()
	r.info.Tried = now
	if len(reached) == 0 {
		r.info.Failures++
		if err != nil {
			r.info.Error = err.Error()
		}
		return
	}
	via := make([]string, 0, len(reached))
	for _, a := range reached {
		name := names[a]
		if name == "" && r.policy != nil {
			name = r.policy.nameOf(a)
		}
		if name == "" {
			name = a
		}
		via = append(via, name)
	}
	slices.Sort(via)
	r.info.At, r.info.Via, r.info.Reason, r.info.Failures, r.info.Error = now, via, reason, 0, ""
}

// Joined reports how this node last joined the cluster.
func (n *Node) Joined() JoinInfo {
	r := &n.rejoin
	r.mu.Lock()
	defer r.mu.Unlock()
	info := r.info
	info.Via = slices.Clone(info.Via)
	info.Missing = slices.Clone(info.Missing)
	if r.policy != nil {
		info.Remembered = len(r.policy.known)
	}
	return info
}

// Remembered lists the members this node would rejoin, by name.
func (n *Node) Remembered() []Known {
	r := &n.rejoin
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.policy == nil {
		return nil
	}
	return r.policy.remembered()
}

// startRejoin sets up the policy and starts the loop; New calls it when
// the Config asks to rejoin.
func (n *Node) startRejoin(now time.Time) {
	var known []Known
	if n.cfg.KnownFile != "" {
		var err error
		if known, err = loadKnown(n.cfg.KnownFile); err != nil {
			// Losing the memory costs a slower rejoin, not the node.
			n.log.Warn("remembered members unreadable; starting without them", "file", n.cfg.KnownFile, "err", err)
		}
	}
	// Jittered, so that a fleet started together does not join in step.
	every := n.cfg.RejoinEvery + rand.N(n.cfg.RejoinEvery/2+1)
	r := &n.rejoin
	p := newRejoinPolicy(n.cfg.Name, n.addr, n.cfg.Seeds, known, n.cfg.RejoinMin, n.cfg.RejoinMax, every,
		n.cfg.ForgetAfter, now)
	r.mu.Lock()
	r.policy = p
	r.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan struct{})
	go n.rejoinLoop(ctx)
}

// stopRejoin stops the loop and waits for it, saving what it remembers.
func (n *Node) stopRejoin() {
	r := &n.rejoin
	if r.cancel == nil {
		return
	}
	r.cancel()
	<-r.done
}

// RejoinNow makes one rejoin attempt at once, if the policy has one to
// make (at start: the seeds and the remembered members), and waits for it
// until ctx ends. It returns the members reached; an error means none was
// reached, or there was nobody to try (ErrNobody).
func (n *Node) RejoinNow(ctx context.Context) ([]string, error) {
	if err := n.usable(); err != nil {
		return nil, fmt.Errorf("rejoin: %w", err)
	}
	r := &n.rejoin
	r.mu.Lock()
	on := r.policy != nil
	r.mu.Unlock()
	if !on {
		return nil, fmt.Errorf("rejoin: %w", ErrNobody)
	}
	r.attemptMu.Lock()
	defer r.attemptMu.Unlock()
	return n.attempt(ctx, time.Now(), true)
}

// ErrNobody is returned by RejoinNow when there is nobody to join: no
// seeds, no remembered members, or all of them already members.
var ErrNobody = errors.New("membership: nobody to join")

// attempt runs the policy once; the caller holds attemptMu.
func (n *Node) attempt(ctx context.Context, now time.Time, force bool) ([]string, error) {
	r := &n.rejoin
	alive := n.Members()
	r.mu.Lock()
	r.policy.observe(now, alive)
	if force {
		r.policy.next = time.Time{}
	}
	a, ok := r.policy.due(now, alive)
	if !ok {
		r.info.Missing = nil
	} else {
		r.info.Missing = a.missing
	}
	r.mu.Unlock()
	if !ok {
		return nil, ErrNobody
	}
	// Stop waiting well before memberlist's own TCPTimeout: a dial into a
	// partition hangs until then, and the next attempt, soon after, is
	// the one that finds the link back. A join that completes after we
	// stopped waiting still counts: memberlist merges it all the same.
	jctx, cancel := context.WithTimeout(ctx, min(n.cfg.TCPTimeout, rejoinWait))
	reached, err := n.joinAddrs(jctx, a.addrs)
	cancel()
	done := time.Now()
	r.mu.Lock()
	r.policy.result(done, a, reached)
	prevFailures := r.info.Failures
	r.mu.Unlock()
	n.recordJoin(done, a.reason, reached, err)
	switch {
	case len(reached) > 0 && a.reason != "periodic":
		n.log.Info("rejoined the cluster", "reason", a.reason, "reached", len(reached), "tried", len(a.addrs))
	case len(reached) == 0 && prevFailures == 0:
		n.log.Warn("rejoin reached nobody; retrying", "reason", a.reason, "tried", a.addrs, "err", err)
	case len(reached) == 0:
		n.log.Debug("rejoin reached nobody", "reason", a.reason, "tried", a.addrs, "err", err)
	}
	return reached, err
}

// rejoinLoop asks the policy every RejoinCheck whether to join, and keeps
// KnownFile up to date.
func (n *Node) rejoinLoop(ctx context.Context) {
	r := &n.rejoin
	defer close(r.done)
	defer n.saveKnown(time.Now(), true)
	tick := time.NewTicker(n.cfg.RejoinCheck)
	defer tick.Stop()
	for {
		// The first check waits too: the owner may still be setting the
		// state blob that the first join's push/pull should carry, and
		// calls RejoinNow when it is ready.
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if n.left.Load() || n.closed.Load() {
			return
		}
		r.attemptMu.Lock()
		n.attempt(ctx, time.Now(), false)
		r.attemptMu.Unlock()
		n.saveKnown(time.Now(), false)
	}
}

// saveKnown writes KnownFile when the policy says it changed (or always,
// when final and anything changed).
func (n *Node) saveKnown(now time.Time, final bool) {
	if n.cfg.KnownFile == "" {
		return
	}
	r := &n.rejoin
	r.mu.Lock()
	if final {
		r.policy.lastSave = time.Time{}
	}
	known, ok := r.policy.save(now)
	r.mu.Unlock()
	if !ok {
		return
	}
	if err := writeKnown(n.cfg.KnownFile, known); err != nil {
		n.log.Warn("remember members", "file", n.cfg.KnownFile, "err", err)
	}
}

// knownFile is KnownFile's content.
type knownFile struct {
	Members []Known `json:"members"`
}

// maxKnownFile bounds what loadKnown reads: 100 bytes a member is plenty
// for a fleet of 100000.
const maxKnownFile = 16 << 20

func loadKnown(path string) ([]Known, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKnownFile+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > maxKnownFile {
		return nil, fmt.Errorf("%s: over %d bytes", path, maxKnownFile)
	}
	var kf knownFile
	if err := json.Unmarshal(b, &kf); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return kf.Members, nil
}

// writeKnown replaces path atomically: a crash leaves the old list or the
// new one, never half of one.
func writeKnown(path string, known []Known) error {
	b, err := json.MarshalIndent(knownFile{Members: known}, "", " ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Close()
	} else {
		f.Close()
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// forgetLeft forgets a member that left gracefully (see rejoinPolicy.left).
func (n *Node) forgetLeft(name string) {
	r := &n.rejoin
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.policy != nil {
		r.policy.left(name)
	}
}

// Exchange runs a full state exchange (push/pull, as a join does) with
// each named member now, in parallel, and returns the names it reached.
// A node that has just started learns the members' state blobs this way
// in seconds instead of over push/pull intervals.
func (n *Node) Exchange(ctx context.Context, names []string) ([]string, error) {
	if err := n.usable(); err != nil {
		return nil, fmt.Errorf("exchange: %w", err)
	}
	byAddr := map[string]string{}
	var addrs []string
	for _, name := range names {
		if m, ok := n.Member(name); ok && name != n.cfg.Name {
			a := addrOf(m)
			byAddr[a] = name
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 0 {
		return nil, nil
	}
	reached, err := n.joinAddrs(ctx, addrs)
	out := make([]string, 0, len(reached))
	for _, a := range reached {
		out = append(out, byAddr[a])
	}
	return out, err
}
