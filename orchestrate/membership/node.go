package membership

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
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
	// keyring holds the gossip keys (keys.go); nil: plaintext.
	keyring *memberlist.Keyring
	lim     frameLimits
	stats   counters

	formatsMu sync.Mutex
	formats   map[byte]uint64 // frames refused by format version

	metaMu sync.Mutex
	meta   []byte // encoded Meta returned by NodeMeta

	stateMu  sync.Mutex
	state    []byte // SetState's blob; replaced, never mutated
	hasState bool

	membersMu  sync.RWMutex
	members    map[string]Member
	numMembers atomic.Int64  // len(members), for the queue's retransmit limit
	gen        atomic.Uint64 // bumped on every change to members (Generation)

	rejoin rejoiner

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
	if len(cfg.SecretKey) > 0 {
		kr, err := memberlist.NewKeyring(cfg.OtherKeys, cfg.SecretKey)
		if err != nil {
			n.disp.close()
			return nil, fmt.Errorf("membership: keyring: %w", err)
		}
		mc.Keyring = kr
		n.keyring = kr
	}
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
	if len(cfg.Seeds) > 0 || cfg.KnownFile != "" {
		n.startRejoin(time.Now())
	}
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
// other. Seeds are contacted in parallel, so a dead one does not hold up
// the others.
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
	reached, err := n.joinAddrs(ctx, slices.Clone(seeds))
	n.recordJoin(time.Now(), "join", reached, err)
	return len(reached), err
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
// listeners and stops callbacks: pending ones are dropped, and after
// Shutdown returns none starts except possibly one already taken off the
// queue. It does not wait for a running callback, so a callback may call
// Shutdown. Calling it again does nothing.
func (n *Node) Shutdown() error {
	n.lifeMu.Lock()
	defer n.lifeMu.Unlock()
	if n.closed.Swap(true) {
		return nil
	}
	n.stopRejoin()
	n.disp.close()
	if err := n.ml.Shutdown(); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
