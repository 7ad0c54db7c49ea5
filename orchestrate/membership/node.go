package membership

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

var (
	// ErrShutdown is returned by methods called after Shutdown.
	ErrShutdown = errors.New("membership: node is shut down")
	// ErrLeft is returned by methods that need cluster membership when
	// called after Leave.
	ErrLeft = errors.New("membership: node has left the cluster")
	// ErrDuplicate is returned by Broadcast for a payload this node has
	// already sent or received within DedupeWindow: every member would
	// drop it as a duplicate.
	ErrDuplicate = errors.New("membership: duplicate broadcast")
	// ErrUnknownMember is returned by SendTo for a name not in Members.
	ErrUnknownMember = errors.New("membership: unknown member")
	// ErrTooLarge is returned for a payload over its configured limit.
	ErrTooLarge = errors.New("membership: payload too large")
	// ErrEmpty is returned for an empty message.
	ErrEmpty = errors.New("membership: empty message")
	// ErrTimeout is returned when a wait for the cluster ran out of time;
	// the local change has been made and keeps spreading by gossip.
	ErrTimeout = errors.New("membership: timed out")
)

// DefaultLeaveTimeout is Leave's timeout when it is given none.
const DefaultLeaveTimeout = 5 * time.Second

// Node is this process's member of a gossip cluster. Its methods are safe
// for concurrent use. Create one with New, add it to a cluster with Join,
// and end it with Leave (optional, graceful) and Shutdown.
type Node struct {
	cfg    Config // defaults applied
	log    *slog.Logger
	ml     *memberlist.Memberlist
	addr   string
	queue  *memberlist.TransmitLimitedQueue
	seen   *seenSet
	recent *recentLog
	disp   *dispatcher
	lim    frameLimits
	stats  counters

	metaMu sync.Mutex
	meta   []byte // encoded Meta returned by NodeMeta

	stateMu  sync.Mutex
	state    []byte // SetState's blob; replaced, never mutated
	hasState bool

	membersMu  sync.RWMutex
	members    map[string]Member
	numMembers atomic.Int64 // len(members), for the queue's retransmit limit

	lifeMu sync.Mutex // serializes Leave and Shutdown
	closed atomic.Bool
	left   atomic.Bool
}

// New validates cfg, starts listening on BindAddr:BindPort and returns a
// Node that is a cluster of one until Join.
func New(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("membership: %w", err)
	}
	cfg = cfg.withDefaults()
	meta, err := cfg.Meta.encode()
	if err != nil {
		return nil, fmt.Errorf("membership: %w", err)
	}
	n := &Node{
		cfg:     cfg,
		log:     cfg.Log.With("node", cfg.Name),
		seen:    newSeenSet(cfg.DedupeWindow, cfg.DedupeEntries, time.Now),
		recent:  newRecentLog(cfg.RepairWindow, cfg.RepairBytes, time.Now),
		disp:    newDispatcher(cfg.MaxPendingCallbacks),
		lim:     cfg.limits(),
		meta:    meta,
		members: make(map[string]Member),
	}
	n.queue = &memberlist.TransmitLimitedQueue{
		// The member count drives the retransmit limit. It comes from the
		// Node's own table rather than ml.NumMembers: it is lock-free and
		// exists before memberlist.Create returns, when gossip may
		// already be running.
		NumNodes:       func() int { return max(1, int(n.numMembers.Load())) },
		RetransmitMult: cfg.RetransmitMult,
	}

	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.Name
	mc.BindAddr = cfg.BindAddr
	mc.BindPort = cfg.BindPort
	mc.AdvertiseAddr = "" // the bound address and port
	mc.SecretKey = cfg.SecretKey
	mc.Label = cfg.Label
	mc.GossipInterval = cfg.GossipInterval
	mc.GossipNodes = cfg.GossipNodes
	mc.ProbeInterval = cfg.ProbeInterval
	mc.ProbeTimeout = cfg.ProbeTimeout
	mc.PushPullInterval = cfg.PushPullInterval
	mc.SuspicionMult = cfg.SuspicionMult
	mc.RetransmitMult = cfg.RetransmitMult
	mc.TCPTimeout = cfg.TCPTimeout
	mc.Delegate = delegate{n}
	mc.Events = events{n}
	mc.Logger = newMemberlistLogger(n.log)

	ml, err := memberlist.Create(mc)
	if err != nil {
		n.disp.close()
		return nil, fmt.Errorf("membership: start %s on %s: %w", cfg.Name, cfg.BindAddr, err)
	}
	n.ml = ml
	// memberlist.Create wrote the kernel's port back into mc.
	n.addr = net.JoinHostPort(cfg.BindAddr, strconv.Itoa(mc.BindPort))
	return n, nil
}

// Addr returns the address the node listens on, "ip:port", which other
// nodes pass to Join.
func (n *Node) Addr() string { return n.addr }

// Name returns the member name.
func (n *Node) Name() string { return n.cfg.Name }

// usable returns ErrShutdown or ErrLeft when the node can no longer act as
// a member.
func (n *Node) usable() error {
	if n.closed.Load() {
		return ErrShutdown
	}
	if n.left.Load() {
		return ErrLeft
	}
	return nil
}

// Join contacts the seeds ("ip:port" each) and exchanges full state with
// every one it reaches, which makes this node known to the cluster. It
// returns how many seeds it reached; an error means none. Join gives up
// waiting when ctx ends; the attempt may still finish in the background
// within TCPTimeout, and a node that has joined so is a member like any
// other.
func (n *Node) Join(ctx context.Context, seeds []string) (int, error) {
	if err := n.usable(); err != nil {
		return 0, fmt.Errorf("join: %w", err)
	}
	if len(seeds) == 0 {
		return 0, errors.New("join: no seeds")
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("join: %w", err)
	}
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	seeds = slices.Clone(seeds)
	go func() {
		k, err := n.ml.Join(seeds)
		done <- result{k, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return r.n, fmt.Errorf("join %s: %w", strings.Join(seeds, ","), r.err)
		}
		return r.n, nil
	case <-ctx.Done():
		return 0, fmt.Errorf("join %s: %w", strings.Join(seeds, ","), context.Cause(ctx))
	}
}

// Members returns the alive members, this node included, sorted by name.
func (n *Node) Members() []Member {
	n.membersMu.RLock()
	out := make([]Member, 0, len(n.members))
	for _, m := range n.members {
		m.Meta = m.Meta.clone()
		out = append(out, m)
	}
	n.membersMu.RUnlock()
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Member returns the named alive member.
func (n *Node) Member(name string) (Member, bool) {
	n.membersMu.RLock()
	m, ok := n.members[name]
	n.membersMu.RUnlock()
	m.Meta = m.Meta.clone()
	return m, ok
}

func (n *Node) setMember(m Member) {
	n.membersMu.Lock()
	n.members[m.Name] = m
	n.numMembers.Store(int64(len(n.members)))
	n.membersMu.Unlock()
}

func (n *Node) removeMember(name string) {
	n.membersMu.Lock()
	delete(n.members, name)
	n.numMembers.Store(int64(len(n.members)))
	n.membersMu.Unlock()
}

// randomPeers returns up to k alive members other than this node.
func (n *Node) randomPeers(k int) []Member {
	n.membersMu.RLock()
	peers := make([]Member, 0, len(n.members))
	for name, m := range n.members {
		if name != n.cfg.Name {
			peers = append(peers, m)
		}
	}
	n.membersMu.RUnlock()
	rand.Shuffle(len(peers), func(i, j int) { peers[i], peers[j] = peers[j], peers[i] })
	return peers[:min(k, len(peers))]
}

// Broadcast sends msg to every member by epidemic gossip: this node sends
// it at once to GossipNodes random members and queues it for gossip; each
// member that receives it for the first time delivers it to its OnMessage
// and queues it again. It is not delivered to this node's own OnMessage.
// Gossip (UDP) typically reaches all members within a second; the rare
// member it misses gets the message from the push/pull repair within a
// push/pull interval or two (see RepairWindow). Broadcast survives this
// node shutting down right after it returns, because the first push has
// then already left. The payload is at most MaxMessageSize bytes and is
// the message's identity: sending the same bytes again within
// DedupeWindow returns ErrDuplicate.
func (n *Node) Broadcast(msg []byte) error {
	if err := n.usable(); err != nil {
		return fmt.Errorf("broadcast: %w", err)
	}
	if len(msg) == 0 {
		return fmt.Errorf("broadcast: %w", ErrEmpty)
	}
	if len(msg) > n.cfg.MaxMessageSize {
		return fmt.Errorf("broadcast: %w: %d > %d bytes", ErrTooLarge, len(msg), n.cfg.MaxMessageSize)
	}
	if !n.seen.add(idOf(msg)) {
		return fmt.Errorf("broadcast: %w", ErrDuplicate)
	}
	f := appendFrame(make([]byte, 0, headerLen+len(msg)), kindBroadcast, msg)
	n.enqueue(f)
	n.recent.add(f[headerLen:])
	n.stats.broadcasts.Add(1)
	// The first push: the queue alone would wait for the next gossip tick,
	// and a sender that shuts down before it would send nothing. A failed
	// push is not an error of Broadcast: the queued copy still goes out.
	for _, p := range n.randomPeers(n.cfg.GossipNodes) {
		if err := n.ml.SendBestEffort(p.mlNode(), f); err != nil {
			n.log.Debug("first push of broadcast failed; gossip will retry", "to", p.Name, "err", err)
		}
	}
	return nil
}

// enqueue queues a broadcast frame for gossip and prunes the queue past
// MaxQueueDepth, dropping the messages sent most often.
func (n *Node) enqueue(f []byte) {
	n.queue.QueueBroadcast(&queuedBroadcast{frame: f})
	if q := n.queue.NumQueued(); q > n.cfg.MaxQueueDepth {
		n.queue.Prune(n.cfg.MaxQueueDepth)
		pruned := q - n.queue.NumQueued()
		if pruned > 0 {
			n.stats.pruned.Add(uint64(pruned))
			n.log.Debug("broadcast queue full, pruned", "pruned", pruned, "depth", n.cfg.MaxQueueDepth)
		}
	}
}

// SendTo sends msg to the named member over TCP. It is delivered to that
// member's OnMessage (once per call: direct messages are not
// de-duplicated) and not relayed. msg is at most MaxDirectSize bytes.
// SendTo blocks until the message is written, bounded by TCPTimeout for
// connecting.
func (n *Node) SendTo(name string, msg []byte) error {
	if err := n.usable(); err != nil {
		return fmt.Errorf("send to %s: %w", name, err)
	}
	if len(msg) == 0 {
		return fmt.Errorf("send to %s: %w", name, ErrEmpty)
	}
	if len(msg) > n.cfg.MaxDirectSize {
		return fmt.Errorf("send to %s: %w: %d > %d bytes", name, ErrTooLarge, len(msg), n.cfg.MaxDirectSize)
	}
	m, ok := n.Member(name)
	if !ok {
		return fmt.Errorf("send to %s: %w", name, ErrUnknownMember)
	}
	f := appendFrame(make([]byte, 0, headerLen+len(msg)), kindDirect, msg)
	if err := n.ml.SendReliable(m.mlNode(), f); err != nil {
		return fmt.Errorf("send to %s: %w", name, err)
	}
	return nil
}

// SetState sets the blob that this node sends in every push/pull exchange
// and join, which peers receive in OnState. Each member starts an exchange
// with one random member every PushPullInterval, so a change reaches a
// given peer within a few intervals rather than at once; use Broadcast for
// news. The blob is copied and at most MaxStateSize bytes; an empty blob
// is sent as such. Until the first SetState the node sends no blob.
func (n *Node) SetState(state []byte) error {
	if err := n.usable(); err != nil {
		return fmt.Errorf("set state: %w", err)
	}
	if len(state) > n.cfg.MaxStateSize {
		return fmt.Errorf("set state: %w: %d > %d bytes", ErrTooLarge, len(state), n.cfg.MaxStateSize)
	}
	blob := slices.Clone(state)
	n.stateMu.Lock()
	n.state, n.hasState = blob, true
	n.stateMu.Unlock()
	return nil
}

// localState builds the state frame for a push/pull exchange: the blob,
// if set, and the recent broadcasts; nil when there is neither.
func (n *Node) localState() []byte {
	recent := n.recent.snapshot()
	n.stateMu.Lock()
	blob, has := n.state, n.hasState
	n.stateMu.Unlock()
	if !has && len(recent) == 0 {
		return nil
	}
	buf := make([]byte, 0, stateFrameSize(n.cfg.Name, blob, recent))
	return appendStateFrame(buf, n.cfg.Name, has, blob, recent)
}

// UpdateMeta re-advertises this node's metadata. It blocks until memberlist
// has sent the update to the cluster, at most TCPTimeout; ErrTimeout then
// means the new Meta is in effect locally and still spreading.
func (n *Node) UpdateMeta(m Meta) error {
	if err := n.usable(); err != nil {
		return fmt.Errorf("update meta: %w", err)
	}
	b, err := m.encode()
	if err != nil {
		return fmt.Errorf("update meta: %w", err)
	}
	n.metaMu.Lock()
	n.meta = b
	n.metaMu.Unlock()
	if err := n.ml.UpdateNode(n.cfg.TCPTimeout); err != nil {
		// memberlist's only error here is its broadcast wait timing out.
		return fmt.Errorf("update meta: %w: %w", ErrTimeout, err)
	}
	return nil
}

// Leave leaves the cluster gracefully: it waits, up to timeout
// (0 => DefaultLeaveTimeout), for the broadcast queue to drain so that
// messages this node still owes its peers go out, then tells the cluster
// that it leaves. The node keeps relaying until Shutdown, which is still
// required. Calling Leave again does nothing.
func (n *Node) Leave(timeout time.Duration) error {
	n.lifeMu.Lock()
	defer n.lifeMu.Unlock()
	if n.closed.Load() {
		return fmt.Errorf("leave: %w", ErrShutdown)
	}
	if n.left.Load() {
		return nil
	}
	if timeout <= 0 {
		timeout = DefaultLeaveTimeout
	}
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(max(n.cfg.GossipInterval/2, time.Millisecond))
	defer tick.Stop()
	for n.queue.NumQueued() > 0 && n.numMembers.Load() > 1 && time.Now().Before(deadline) {
		<-tick.C
	}
	n.left.Store(true)
	// memberlist treats 0 as "wait forever".
	remaining := max(time.Until(deadline), time.Millisecond)
	if err := n.ml.Leave(remaining); err != nil {
		return fmt.Errorf("leave: %w: %w", ErrTimeout, err)
	}
	return nil
}

// Shutdown stops the node without telling the cluster, which notices by
// failure detection (call Leave first to avoid that). It closes the
// listeners and stops callbacks: pending ones are dropped and, after
// Shutdown returns, at most one already running finishes. It does not wait
// for that one, so a callback may call Shutdown. Calling it again does
// nothing.
func (n *Node) Shutdown() error {
	n.lifeMu.Lock()
	defer n.lifeMu.Unlock()
	if n.closed.Swap(true) {
		return nil
	}
	n.disp.close()
	if err := n.ml.Shutdown(); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// receive handles a user message from memberlist (see delegate.NotifyMsg).
func (n *Node) receive(buf []byte) {
	n.stats.received.Add(1)
	f, err := decodeFrame(buf, n.lim)
	if err == nil && f.kind == kindState {
		err = fmt.Errorf("%s frame outside push/pull: %w", f.kind, errKind)
	}
	if err != nil {
		n.stats.dropped.Add(1)
		n.log.Debug("dropped message", "size", len(buf), "err", err)
		return
	}
	if f.kind == kindBroadcast {
		if !n.acceptBroadcast(f.payload) {
			n.stats.duplicates.Add(1)
		}
		return
	}
	n.deliver(f.payload)
}

// acceptBroadcast handles a broadcast payload from gossip or repair, which
// the caller owns. If it is new, acceptBroadcast relays it (queues it for
// gossip and keeps it for repair) and delivers it, and reports true.
func (n *Node) acceptBroadcast(payload []byte) bool {
	if !n.seen.add(idOf(payload)) {
		return false
	}
	// The relayed frame is the one that was sent, so the payload and its ID
	// stay the same. The queue and the repair log share this copy, which
	// nothing modifies; the callback gets one of its own.
	f := appendFrame(make([]byte, 0, headerLen+len(payload)), kindBroadcast, payload)
	n.enqueue(f)
	n.recent.add(f[headerLen:])
	n.stats.relayed.Add(1)
	n.deliver(payload)
	return true
}

// deliver hands a copy of payload to OnMessage.
func (n *Node) deliver(payload []byte) {
	if n.cfg.OnMessage == nil || n.closed.Load() {
		return
	}
	p := slices.Clone(payload)
	onMessage := n.cfg.OnMessage
	if !n.disp.push(func() { onMessage(p) }, true) {
		n.dropCallback("message")
		return
	}
	n.stats.delivered.Add(1)
}

// receiveState handles a peer's LocalState (see delegate.MergeRemoteState).
func (n *Node) receiveState(buf []byte, join bool) {
	n.stats.statesReceived.Add(1)
	f, err := decodeFrame(buf, n.lim)
	if err == nil && f.kind != kindState {
		err = fmt.Errorf("%s frame in push/pull: %w", f.kind, errKind)
	}
	if err != nil {
		n.stats.statesDropped.Add(1)
		n.log.Debug("dropped state", "size", len(buf), "join", join, "err", err)
		return
	}
	for _, p := range f.recent {
		if n.acceptBroadcast(p) {
			n.stats.repaired.Add(1)
			n.log.Debug("broadcast repaired by push/pull", "from", f.from)
		}
	}
	if !f.hasBlob || n.cfg.OnState == nil || n.closed.Load() {
		return
	}
	from, blob := f.from, slices.Clone(f.payload)
	if blob == nil {
		blob = []byte{}
	}
	onState := n.cfg.OnState
	if !n.disp.push(func() { onState(from, blob) }, true) {
		n.dropCallback("state")
	}
}

func (n *Node) dropCallback(what string) {
	n.stats.callbacksDropped.Add(1)
	n.log.Debug("callback queue full, dropped event", "event", what, "max", n.cfg.MaxPendingCallbacks)
}

// notify queues a membership callback. Membership events are never
// dropped while the node runs: churn, not the network, bounds them.
func (n *Node) notify(cb func(Member), m Member) {
	if cb == nil {
		return
	}
	m.Meta = m.Meta.clone()
	n.disp.push(func() { cb(m) }, false)
}
