package membership

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"time"

	"github.com/hashicorp/memberlist"
)

// Config configures a Node. The zero value of every optional field means
// the default named in its comment; tuning defaults are those of
// memberlist.DefaultLANConfig, which converges well on a LAN and on
// loopback. Validate checks a Config without changing it; New calls it.
type Config struct {
	// Name is the member's unique name in the cluster: the host ID.
	// Required, at most 255 bytes.
	Name string `yaml:"name"`
	// BindAddr is the IP address to listen on (UDP and TCP), e.g.
	// "127.0.0.5". Required. It is also the address advertised to peers,
	// so it must not be a wildcard address.
	BindAddr string `yaml:"bind_addr"`
	// BindPort is the port to listen on; 0 lets the kernel pick one, which
	// Node.Addr reports.
	BindPort int `yaml:"bind_port"`
	// SecretKey, when set, encrypts and authenticates all gossip with
	// AES-GCM. It must be 16, 24 or 32 bytes. Nodes with different keys
	// cannot talk to each other. nil means no encryption.
	SecretKey []byte `yaml:"-"`
	// OtherKeys are further keys this node accepts traffic under while it
	// sends under SecretKey: the old or the new key during a rotation
	// (SetKeys, docs/operations.md). Each is 16, 24 or 32 bytes; they need
	// a SecretKey.
	OtherKeys [][]byte `yaml:"-"`
	// Label is stamped on every packet and stream; a node drops traffic
	// with another label, which keeps clusters that share a network apart.
	// At most 255 bytes.
	Label string `yaml:"label"`
	// Meta is advertised to every member (see Meta).
	Meta Meta `yaml:"meta"`
	// Log receives this package's debug logs and memberlist's own log
	// lines (all at debug level). nil discards them.
	Log *slog.Logger `yaml:"-"`

	// Callbacks. All are optional. The Node calls them one at a time, in
	// the order their events arrived, from a single goroutine of its own,
	// never from memberlist's network goroutines; so a callback may call
	// any Node method. A slow callback delays the callbacks after it, and
	// when more than MaxPendingCallbacks message or state events are
	// waiting, new ones are dropped and counted in Stats. Keep callbacks
	// short and hand long work to another goroutine. Every byte slice
	// passed to a callback is a fresh copy that the callback may keep.
	// After Shutdown returns no callback starts, except possibly one that
	// the Node had already taken off its queue.

	// OnMessage receives the payload of each distinct broadcast message
	// once (not the node's own broadcasts), and of each SendTo message
	// addressed to this node.
	OnMessage func(msg []byte) `yaml:"-"`
	// OnState receives a peer's state blob (its SetState) each time a
	// push/pull exchange or a join carries it. from is the peer's name as
	// the peer wrote it into the frame; it is only as trustworthy as the
	// holders of SecretKey.
	OnState func(from string, state []byte) `yaml:"-"`
	// OnJoin, OnLeave and OnUpdate report members joining, leaving or
	// failing (Member.Alive is false), and changing their Meta. The node
	// sees its own join during New.
	OnJoin   func(m Member) `yaml:"-"`
	OnLeave  func(m Member) `yaml:"-"`
	OnUpdate func(m Member) `yaml:"-"`

	// Tuning; see memberlist.Config for the meaning of each.
	GossipInterval   time.Duration `yaml:"gossip_interval"`    // 0 => 200ms
	GossipNodes      int           `yaml:"gossip_nodes"`       // 0 => 3; also the fan-out of Broadcast's first push
	ProbeInterval    time.Duration `yaml:"probe_interval"`     // 0 => 1s
	ProbeTimeout     time.Duration `yaml:"probe_timeout"`      // 0 => 500ms
	PushPullInterval time.Duration `yaml:"push_pull_interval"` // 0 => 30s; carries state blobs
	SuspicionMult    int           `yaml:"suspicion_mult"`     // 0 => 4
	RetransmitMult   int           `yaml:"retransmit_mult"`    // 0 => 4; for memberlist's and our queue
	TCPTimeout       time.Duration `yaml:"tcp_timeout"`        // 0 => 10s; also bounds UpdateMeta

	// MaxMessageSize bounds a broadcast payload; larger ones are refused
	// by Broadcast and dropped on receipt. It must fit in one gossip packet
	// (MaxBroadcastLimit). 0 => 1024 bytes.
	MaxMessageSize int `yaml:"max_message_size"`
	// MaxDirectSize bounds a SendTo payload, sent over TCP. 0 => 64 KiB;
	// at most 20 MiB - 2.
	MaxDirectSize int `yaml:"max_direct_size"`
	// MaxStateSize bounds a SetState blob; it travels in every push/pull.
	// 0 => 1 MiB. MaxStateSize + RepairBytes is at most 20 MiB - 512.
	MaxStateSize int `yaml:"max_state_size"`
	// DedupeWindow is how long the ID of a seen broadcast is remembered,
	// and DedupeEntries how many IDs at most. A message that comes back
	// after its ID was forgotten is delivered again, so the window must
	// exceed a broadcast's lifetime (seconds). 0 => 10 minutes, 100000.
	DedupeWindow  time.Duration `yaml:"dedupe_window"`
	DedupeEntries int           `yaml:"dedupe_entries"`
	// RepairWindow is how long a broadcast is carried in push/pull
	// exchanges so that members that missed it get it (see repair.go), and
	// RepairBytes how many payload bytes at most each exchange carries.
	// RepairWindow must be shorter than DedupeWindow. 0 => 2 minutes,
	// 64 KiB.
	RepairWindow time.Duration `yaml:"repair_window"`
	RepairBytes  int           `yaml:"repair_bytes"`
	// MaxQueueDepth bounds the broadcast queue (own and relayed messages
	// not yet fully retransmitted); past it, the most-sent messages are
	// pruned and counted in Stats. 0 => 4096.
	MaxQueueDepth int `yaml:"max_queue_depth"`
	// MaxPendingCallbacks bounds message and state events waiting for
	// their callback. 0 => 4096.
	MaxPendingCallbacks int `yaml:"max_pending_callbacks"`

	// Rejoin (see rejoin.go). A node given Seeds or KnownFile keeps itself
	// in the cluster: it rejoins the seeds and the members it remembers
	// whenever they are missing from its member list, and the seeds now
	// and then even when nothing is missing. Neither: the node joins only
	// when Join is called.

	// Seeds are gossip addresses ("ip:port", or "host:port") to join
	// through: the configured --join.
	Seeds []string `yaml:"seeds"`
	// KnownFile, if set, is where the node remembers the members it has
	// seen alive (JSON, replaced atomically), so that it rejoins them
	// after a restart. The caller names it (datadir.Data.Members).
	KnownFile string `yaml:"-"`
	// RejoinMin and RejoinMax bound the wait between attempts while a
	// seed or a remembered member is missing: it starts at RejoinMin and
	// doubles while attempts fail. 0 => 1s and 5s.
	RejoinMin time.Duration `yaml:"rejoin_min"`
	RejoinMax time.Duration `yaml:"rejoin_max"`
	// RejoinEvery is how often the seeds are joined while nothing is
	// missing, plus up to half as much again at random: it merges the
	// halves of a partition that each kept several members. 0 => 2m.
	RejoinEvery time.Duration `yaml:"rejoin_every"`
	// RejoinCheck is how often the member list is compared with the
	// seeds and the remembered members. 0 => 500ms.
	RejoinCheck time.Duration `yaml:"rejoin_check"`
	// ForgetAfter is how long a member not seen alive is remembered (one
	// that leaves gracefully is forgotten at once). 0 => 72h, a long
	// weekend.
	ForgetAfter time.Duration `yaml:"forget_after"`
}

// Meta is a member's advertised metadata. It travels JSON-encoded in
// memberlist's node metadata, which must fit in MetaMaxSize bytes.
type Meta struct {
	Role  string         `json:"role,omitempty" yaml:"role"` // "origin" or "host"
	DC    string         `json:"dc,omitempty" yaml:"dc"`
	Rack  string         `json:"rack,omitempty" yaml:"rack"`
	Ports map[string]int `json:"ports,omitempty" yaml:"ports"` // e.g. "bt": 6881, "http": 8080
	// Build names the scatter build the member runs (version.Info.Short),
	// so `scatter status` can show a fleet running mixed builds.
	Build string `json:"build,omitempty" yaml:"build"`
	// Key is the member's host public key and Sig its signature of the
	// fields above (base64). This package neither checks nor trusts them;
	// the layer above checks them against the roster (package trust).
	Key string `json:"key,omitempty" yaml:"-"`
	Sig string `json:"sig,omitempty" yaml:"-"`
}

// MetaMaxSize is the largest encoded Meta memberlist carries.
const MetaMaxSize = memberlist.MetaMaxSize

// ErrMetaTooLarge is returned when an encoded Meta exceeds MetaMaxSize.
var ErrMetaTooLarge = errors.New("membership: meta too large")

func (m Meta) encode() ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode meta: %w", err)
	}
	if len(b) > MetaMaxSize {
		return nil, fmt.Errorf("encode meta: %w: %d > %d bytes", ErrMetaTooLarge, len(b), MetaMaxSize)
	}
	return b, nil
}

// clone returns a deep copy, so callers never share the Ports map.
func (m Meta) clone() Meta {
	if m.Ports != nil {
		p := make(map[string]int, len(m.Ports))
		for k, v := range m.Ports {
			p[k] = v
		}
		m.Ports = p
	}
	return m
}

const (
	defaultMaxMessageSize      = 1024
	defaultMaxDirectSize       = 64 << 10
	defaultMaxStateSize        = 1 << 20
	defaultDedupeWindow        = 10 * time.Minute
	defaultDedupeEntries       = 100_000
	defaultRepairWindow        = 2 * time.Minute
	defaultRepairBytes         = 64 << 10
	defaultMaxQueueDepth       = 4096
	defaultMaxPendingCallbacks = 4096
	defaultRejoinMin           = time.Second
	defaultRejoinMax           = 5 * time.Second
	defaultRejoinEvery         = 2 * time.Minute
	defaultRejoinCheck         = 500 * time.Millisecond
	defaultForgetAfter         = 72 * time.Hour

	// memberlist refuses user messages and push/pull user state over
	// 20 MiB (maxUserMsgBytes, maxPushStateBytes).
	memberlistMaxStream = 20 << 20
	maxDirectLimit      = memberlistMaxStream - headerLen
	// A state frame is the blob, the repair payloads, and at most 512
	// bytes of header, name and lengths.
	maxPushPullLimit = memberlistMaxStream - 512

	// A broadcast frame rides in one UDP packet of memberlist's
	// UDPBufferSize (1400) bytes next to memberlist's own messages, after
	// the compound header (2), the per-message overhead (2 + 1 for the
	// user-message type), the worst-case encryption overhead (45) and the
	// label header (2 + len(Label)).
	udpBufferSize     = 1400
	gossipFixedCost   = 2 + 2 + 1 + 45
	labelHeaderLength = 2
)

// MaxBroadcastLimit is the largest MaxMessageSize that fits in one gossip
// packet for a cluster using label.
func MaxBroadcastLimit(label string) int {
	n := udpBufferSize - gossipFixedCost - headerLen
	if label != "" {
		n -= labelHeaderLength + len(label)
	}
	return n
}

// Validate reports the first problem with c, or nil. It does not change c.
func (c Config) Validate() error {
	if c.Name == "" {
		return errors.New("config: name is required")
	}
	if len(c.Name) > maxNameLen {
		return fmt.Errorf("config: name is %d bytes, at most %d", len(c.Name), maxNameLen)
	}
	if c.BindAddr == "" {
		return errors.New("config: bind address is required")
	}
	ip, err := netip.ParseAddr(c.BindAddr)
	if err != nil {
		return fmt.Errorf("config: bind address: %w", err)
	}
	if ip.IsUnspecified() {
		return fmt.Errorf("config: bind address %s is a wildcard; give the address peers should use", ip)
	}
	if c.BindPort < 0 || c.BindPort > 65535 {
		return fmt.Errorf("config: bind port %d out of range", c.BindPort)
	}
	switch len(c.SecretKey) {
	case 0, 16, 24, 32:
	default:
		return fmt.Errorf("config: secret key is %d bytes, want 16, 24 or 32", len(c.SecretKey))
	}
	if err := checkKeys(c.SecretKey, c.OtherKeys); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if len(c.Label) > memberlist.LabelMaxSize {
		return fmt.Errorf("config: label is %d bytes, at most %d", len(c.Label), memberlist.LabelMaxSize)
	}
	if _, err := c.Meta.encode(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"gossip interval", c.GossipInterval},
		{"probe interval", c.ProbeInterval},
		{"probe timeout", c.ProbeTimeout},
		{"push/pull interval", c.PushPullInterval},
		{"tcp timeout", c.TCPTimeout},
		{"dedupe window", c.DedupeWindow},
		{"repair window", c.RepairWindow},
		{"rejoin min", c.RejoinMin},
		{"rejoin max", c.RejoinMax},
		{"rejoin every", c.RejoinEvery},
		{"rejoin check", c.RejoinCheck},
		{"forget after", c.ForgetAfter},
	} {
		if d.v < 0 {
			return fmt.Errorf("config: %s %v is negative", d.name, d.v)
		}
	}
	for _, i := range []struct {
		name string
		v    int
		max  int
	}{
		{"gossip nodes", c.GossipNodes, 1 << 10},
		{"suspicion mult", c.SuspicionMult, 1 << 10},
		{"retransmit mult", c.RetransmitMult, 1 << 10},
		{"max message size", c.MaxMessageSize, MaxBroadcastLimit(c.Label)},
		{"max direct size", c.MaxDirectSize, maxDirectLimit},
		{"max state size", c.MaxStateSize, maxPushPullLimit},
		{"repair bytes", c.RepairBytes, maxPushPullLimit},
		{"dedupe entries", c.DedupeEntries, 1 << 26},
		{"max queue depth", c.MaxQueueDepth, 1 << 24},
		{"max pending callbacks", c.MaxPendingCallbacks, 1 << 24},
	} {
		if i.v < 0 || i.v > i.max {
			return fmt.Errorf("config: %s %d out of range [0, %d]", i.name, i.v, i.max)
		}
	}
	d := c.withDefaults()
	if d.MaxStateSize+d.RepairBytes > maxPushPullLimit {
		return fmt.Errorf("config: max state size %d + repair bytes %d over %d", d.MaxStateSize, d.RepairBytes, maxPushPullLimit)
	}
	if d.RejoinMin > d.RejoinMax {
		return fmt.Errorf("config: rejoin min %v is over rejoin max %v", d.RejoinMin, d.RejoinMax)
	}
	for _, s := range c.Seeds {
		if s == "" {
			return errors.New("config: empty seed address")
		}
	}
	if d.RepairWindow >= d.DedupeWindow {
		return fmt.Errorf("config: repair window %v must be shorter than dedupe window %v", d.RepairWindow, d.DedupeWindow)
	}
	return nil
}

// withDefaults returns a copy of c with every zero field set to its default.
func (c Config) withDefaults() Config {
	def := memberlist.DefaultLANConfig()
	setDur := func(p *time.Duration, d time.Duration) {
		if *p == 0 {
			*p = d
		}
	}
	setInt := func(p *int, d int) {
		if *p == 0 {
			*p = d
		}
	}
	setDur(&c.GossipInterval, def.GossipInterval)
	setInt(&c.GossipNodes, def.GossipNodes)
	setDur(&c.ProbeInterval, def.ProbeInterval)
	setDur(&c.ProbeTimeout, def.ProbeTimeout)
	setDur(&c.PushPullInterval, def.PushPullInterval)
	setInt(&c.SuspicionMult, def.SuspicionMult)
	setInt(&c.RetransmitMult, def.RetransmitMult)
	setDur(&c.TCPTimeout, def.TCPTimeout)
	setInt(&c.MaxMessageSize, defaultMaxMessageSize)
	setInt(&c.MaxDirectSize, defaultMaxDirectSize)
	setInt(&c.MaxStateSize, defaultMaxStateSize)
	setDur(&c.DedupeWindow, defaultDedupeWindow)
	setInt(&c.DedupeEntries, defaultDedupeEntries)
	setDur(&c.RepairWindow, defaultRepairWindow)
	setInt(&c.RepairBytes, defaultRepairBytes)
	setInt(&c.MaxQueueDepth, defaultMaxQueueDepth)
	setInt(&c.MaxPendingCallbacks, defaultMaxPendingCallbacks)
	setDur(&c.RejoinMin, defaultRejoinMin)
	setDur(&c.RejoinMax, defaultRejoinMax)
	setDur(&c.RejoinEvery, defaultRejoinEvery)
	setDur(&c.RejoinCheck, defaultRejoinCheck)
	setDur(&c.ForgetAfter, defaultForgetAfter)
	c.Seeds = slices.Clone(c.Seeds)
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	c.Meta = c.Meta.clone()
	if c.SecretKey != nil {
		c.SecretKey = append([]byte(nil), c.SecretKey...)
	}
	c.OtherKeys = cloneKeys(c.OtherKeys)
	return c
}

func (c Config) limits() frameLimits {
	return frameLimits{broadcast: c.MaxMessageSize, direct: c.MaxDirectSize, state: c.MaxStateSize}
}
