// Package host composes one scatter host: the artifact store and swarm node
// (package swarm) with gossip membership (package membership). `scatter
// seed` runs a Host; the benchmark runs many in one process, so both
// measure the same code.
//
// Gossip carries three things: signed release announcements, relayed to
// every member; "holds" notes, saying a host has every chunk of a release
// (the origin stops uploading once two hosts hold it); and each host's
// state blob — its retained announcements and holds — which push/pull
// exchanges bring to late joiners. Bulk data never travels by gossip.
package host

import (
	"context"
	"crypto/ed25519"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"scatter/artifact/core"
	"scatter/artifact/datadir"
	"scatter/artifact/keys"
	"scatter/orchestrate/agent"
	"scatter/orchestrate/command"
	"scatter/orchestrate/config"
	"scatter/orchestrate/membership"
	"scatter/orchestrate/trust"
	"scatter/orchestrate/version"
	"scatter/swarm"
	"scatter/swarm/clock"
)

// Config configures a Host. The zero value of each optional field means its
// default.
type Config struct {
	Name    string            // unique host name; default: BindAddr
	DataDir string            // required
	PubKey  ed25519.PublicKey // trusted deploy key; required
	// HostKey signs what this host says about itself; nil: read
	// <data>/host.key, creating it on the first start.
	HostKey ed25519.PrivateKey
	Origin  bool // the deploy host: serves its build store
	// BindAddr is the IP all of the host's services listen on (gossip,
	// peer wire, metadata); required. Ports 0 let the kernel choose.
	BindAddr                     string
	GossipPort, BTPort, HTTPPort int
	// Join are gossip addresses of members to join through: at start, and
	// again whenever one is missing from the member list (membership
	// rejoin). The host also rejoins the members it remembers
	// (datadir.Data.Members).
	Join []string
	// ClusterKey encrypts gossip (16, 24 or 32 bytes) and OtherClusterKeys
	// are accepted besides it during a rotation. ClusterKeyFile, if set,
	// is read for both instead (membership.LoadKeyFile), at start and on
	// ReloadClusterKey. A key is required unless InsecureNoEncryption.
	ClusterKey       []byte
	OtherClusterKeys [][]byte
	ClusterKeyFile   string
	// InsecureNoEncryption runs gossip in plaintext: for tests only.
	InsecureNoEncryption bool
	// AllowClients are networks let into the data plane although they are
	// not hosts: stock BitTorrent clients (swarm.Config.AllowClients).
	AllowClients []netip.Prefix
	Label        string // separates clusters on one network
	DC, Rack     string
	// Bridges is how many hosts of each datacenter fetch across
	// datacenters (swarm.Config.Bridges); the same on every host.
	Bridges                  int
	UploadRate, DownloadRate int64 // bytes per second; 0: unlimited
	Keep                     int   // releases kept per repo; default 5
	// PushPullInterval is how often hosts exchange state blobs; default 30 s.
	PushPullInterval time.Duration
	// OffloadAfter: see swarm.Config.
	OffloadAfter int
	// Repos defines, per repo, the named actions this host runs on the
	// deploy host's command, and as whom.
	Repos map[string]config.Repo
	// Key is the deploy private key, on the origin only: the daemon keeps
	// it and signs for the deployers who ask over the control socket
	// (custody.go). nil: this daemon signs nothing.
	Key ed25519.PrivateKey
	// Deployers is the Unix group whose members may use the control
	// socket besides root and the daemon's own user; "" means
	// DefaultDeployers. If the group does not exist, the socket is the
	// daemon user's alone.
	Deployers string
	// ClockSkew is how far in the future a command's issue time may lie
	// (command.Guard.MaxSkew); zero: command.ClockSkew.
	ClockSkew time.Duration
	// ClockOffset shifts this host's clock (commands' freshness, acks,
	// status): for tests of clock skew only.
	ClockOffset time.Duration
	Log         *slog.Logger
	// Build is the scatter build this host advertises in its gossip meta;
	// default version.Get().Short(). Tests set it to make a mixed fleet.
	Build string
	// Metrics, if set, receives the host's collectors (see Host.Collector);
	// the admin listener serves it.
	Metrics prometheus.Registerer
}

// Validate checks the configuration without changing it.
func (c Config) Validate() error {
	switch {
	case c.DataDir == "":
		return errors.New("host: DataDir is required")
	case len(c.PubKey) != ed25519.PublicKeySize:
		return errors.New("host: a deploy public key is required")
	case c.BindAddr == "":
		return errors.New("host: BindAddr is required")
	case len(c.ClusterKey) == 0 && c.ClusterKeyFile == "" && !c.InsecureNoEncryption:
		return ErrNoClusterKey
	}
	if _, err := netip.ParseAddr(c.BindAddr); err != nil {
		return fmt.Errorf("host: BindAddr: %w", err)
	}
	if c.Key != nil && !c.Key.Public().(ed25519.PublicKey).Equal(c.PubKey) {
		return errors.New("host: the deploy key is not the private half of the trusted public key")
	}
	return nil
}

// Host is one running scatter host.
type Host struct {
	cfg   Config
	boot  string // random per start, for Ping
	log   *slog.Logger
	ml    *membership.Node
	sw    *swarm.Node
	agent *agent.Agent
	guard *command.Guard
	count *counters
	key   ed25519.PrivateKey // this host's own
	book  *trust.Book        // the roster
	tally trust.Tally        // refused statements

	metaMu sync.Mutex
	metaOK map[string]bool // verified advertisements, see metaSigned
	warned map[string]bool // untrusted members already logged

	mu       sync.Mutex
	holds    map[string]map[core.ReleaseID]bool // by member name
	holdsGen uint64                             // bumped on every change to holds
	peers    peersCache                         // peerSource's last answer
	sentHold map[core.ReleaseID]bool
	subs     map[string][]chan *command.Ack // by deploy ID
	states   map[string]hostState           // by member name
	sessions map[string]*session            // deploys holding their repo's lock, by repo
	access   access                         // who may use the control socket
	heard    map[string]bool                // members whose state blob arrived
	dirty    chan struct{}
	stop     chan struct{}
	wg       sync.WaitGroup
}

// Gossip message kinds, the first byte of every broadcast payload.
const (
	msgAnnounce = 'A' // a signed swarm.Announcement
	msgHolds    = 'H' // holdsNote JSON
)

// holdsNote travels sealed by its host's key (trust.KindHolds).
type holdsNote struct {
	Host    string         `json:"host"`
	Release core.ReleaseID `json:"release"`
}

// stateBlob is a host's push/pull state, sealed by its host key
// (trust.KindState). The announcements and the roster carry the deploy
// key's signatures and count whoever passes them on; the holds and the
// deploy state count only from an enrolled host, about itself.
type stateBlob struct {
	Announcements [][]byte         `json:"announcements"`
	Holds         []core.ReleaseID `json:"holds"`
	Deploy        *hostState       `json:"deploy,omitempty"`
	Roster        []byte           `json:"roster,omitempty"`
}

// Start brings a host up: swarm node first (so its ports are known), then
// membership advertising them, then joins the cluster.
func Start(ctx context.Context, cfg Config) (*Host, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Name == "" {
		cfg.Name = cfg.BindAddr
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Build == "" {
		cfg.Build = version.Get().Short()
	}
	if cfg.ClusterKeyFile != "" {
		var err error
		if cfg.ClusterKey, cfg.OtherClusterKeys, err = membership.LoadKeyFile(cfg.ClusterKeyFile); err != nil {
			return nil, err
		}
	}
	if len(cfg.ClusterKey) == 0 {
		cfg.Log.Warn("gossip is not encrypted (insecure-no-encryption): anyone who reaches the gossip port can join; for tests only")
	}
	var boot [8]byte
	crand.Read(boot[:])
	h := &Host{
		cfg: cfg, boot: hex.EncodeToString(boot[:]), log: cfg.Log.With("host", cfg.Name),
		holds: map[string]map[core.ReleaseID]bool{}, sentHold: map[core.ReleaseID]bool{},
		states: map[string]hostState{}, heard: map[string]bool{}, sessions: map[string]*session{}, access: newAccess(cfg.Deployers), metaOK: map[string]bool{}, warned: map[string]bool{},
		count: newCounters(),
		dirty: make(chan struct{}, 1), stop: make(chan struct{}),
	}
	dd := datadir.Data(cfg.DataDir)
	h.key = cfg.HostKey
	if h.key == nil {
		key, created, err := trust.LoadOrCreateHostKey(dd.HostKey())
		if err != nil {
			return nil, err
		}
		if created {
			h.log.Warn("created this host's key: the host is pending until an operator enrols it (scatter hosts approve)",
				"key", keys.Fingerprint(key.Public().(ed25519.PublicKey)), "file", dd.HostKey())
		}
		h.key = key
	}
	book, err := trust.NewBook(cfg.PubKey, dd.Roster())
	if err != nil {
		return nil, err
	}
	h.book = book
	guard, err := command.NewGuard(cfg.PubKey, dd.CommandsSeen(), h.now)
	if err != nil {
		if guard == nil {
			return nil, err
		}
		h.log.Warn("command replay memory lost", "err", err)
	}
	h.guard = guard
	h.guard.MaxSkew = cfg.ClockSkew
	sw, err := swarm.NewNode(swarm.Config{
		Name: cfg.Name, DataDir: cfg.DataDir, PubKey: cfg.PubKey, Origin: cfg.Origin, Clock: offsetClock{d: cfg.ClockOffset},
		Engine: swarm.EngineConfig{
			ListenAddr: net.JoinHostPort(cfg.BindAddr, strconv.Itoa(cfg.BTPort)),
			UploadRate: cfg.UploadRate, DownloadRate: cfg.DownloadRate,
		},
		HTTPAddr: net.JoinHostPort(cfg.BindAddr, strconv.Itoa(cfg.HTTPPort)),
		Keep:     cfg.Keep, Peers: peerSource{h}, OnChange: h.changed, Log: h.log, AllowClients: cfg.AllowClients,
		OffloadAfter: cfg.OffloadAfter, DC: cfg.DC, Bridges: cfg.Bridges,
	})
	if err != nil {
		return nil, err
	}
	h.sw = sw
	h.agent, err = agent.New(agent.Config{Name: cfg.Name, DataDir: cfg.DataDir, Repos: cfg.Repos, Stager: sw, Log: h.log,
		Performed: h.count.ranActions})
	if err != nil {
		sw.Close()
		return nil, err
	}
	role := "host"
	if cfg.Origin {
		role = "origin"
	}
	ml, err := membership.New(membership.Config{
		Name: cfg.Name, BindAddr: cfg.BindAddr, BindPort: cfg.GossipPort,
		SecretKey: cfg.ClusterKey, OtherKeys: cfg.OtherClusterKeys, Label: cfg.Label, Log: h.log,
		// The role and labels are claims, shown to an operator who
		// approves the host; once enrolled, the roster's count.
		Meta: h.signMeta(membership.Meta{Role: role, DC: cfg.DC, Rack: cfg.Rack, Build: cfg.Build, Ports: map[string]int{
			"bt": port(sw.BTAddr()), "http": port(sw.HTTPAddr()),
		}}),
		PushPullInterval: cfg.PushPullInterval,
		Seeds:            slices.DeleteFunc(slices.Clone(cfg.Join), func(s string) bool { return s == "" }),
		KnownFile:        datadir.Data(cfg.DataDir).Members(),
		MaxDirectSize:    command.MaxAckSize + trust.MaxSealOverhead + 1,
		OnMessage:        h.onMessage,
		OnState:          h.onState,
		OnJoin:           h.checkMember,
		OnUpdate:         h.checkMember,
		OnLeave:          func(m membership.Member) { h.forget(m.Name) },
	})
	if err != nil {
		sw.Close()
		return nil, err
	}
	h.ml = ml
	if cfg.Metrics != nil {
		if err := cfg.Metrics.Register(h.Collector()); err != nil {
			h.Close()
			return nil, fmt.Errorf("host: metrics: %w", err)
		}
	}
	if err := sw.Resume(); err != nil {
		h.Close()
		return nil, err
	}
	h.keepReserve()
	h.wg.Add(1)
	go h.publishState()
	h.stateChanged()
	// The join's push/pull carries the state blob: set it now, so the
	// cluster learns what runs here (say, after a crash) at once, not a
	// push/pull interval later.
	h.setState()
	// The first join waits (ctx bounds it): the seeds and the members
	// this host remembers from before a restart. After that, the
	// membership node's own loop rejoins whatever goes missing.
	if _, err := ml.RejoinNow(ctx); err != nil && !errors.Is(err, membership.ErrNobody) {
		// The seeds may not be up yet, or be partitioned away: keep
		// serving and keep trying rather than exit.
		h.log.Warn("join failed; retrying in the background", "seeds", cfg.Join, "err", err)
	}
	if cfg.Origin {
		// Only the deploy host needs every host's state at once (what runs
		// where, for status and deploy). On every host of a fleet started
		// together it cost N² full exchanges: at 200 hosts in one process
		// the command-to-last-ack benchmark no longer converged.
		h.wg.Add(1)
		go h.syncStates()
	}
	return h, nil
}

// syncStates (the deploy host's) asks the members whose state blob has not
// arrived for it, by a state exchange, 16 at a time, during the host's
// first minute: a restarted or new deploy host then knows what runs where within seconds
// rather than as push/pull happens to reach each member (30 s apart).
func (h *Host) syncStates() {
	defer h.wg.Done()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-h.stop:
			return
		case <-time.After(time.Second):
		}
		members := h.ml.Members()
		var missing []string
		h.mu.Lock()
		for _, m := range members {
			if m.Name != h.cfg.Name && !h.heard[m.Name] {
				missing = append(missing, m.Name)
			}
		}
		h.mu.Unlock()
		if len(missing) == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if _, err := h.ml.Exchange(ctx, missing[:min(16, len(missing))]); err != nil {
			h.log.Debug("state exchange", "err", err)
		}
		cancel()
	}
}

func port(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return n
}

// GossipAddr is the address other hosts join through.
func (h *Host) GossipAddr() string { return h.ml.Addr() }

// Swarm returns the host's swarm node.
func (h *Host) Swarm() *swarm.Node { return h.sw }

// Members returns the live members as gossip sees them.
func (h *Host) Members() []membership.Member { return h.ml.Members() }

// Publish announces a release (signed by the deploy key) from this host:
// the local node queues it and gossip carries it to every host.
func (h *Host) Publish(ann []byte) error {
	if _, err := h.sw.Announce(ann); err != nil {
		return err
	}
	return h.ml.Broadcast(append([]byte{msgAnnounce}, ann...))
}

// onMessage handles a gossip broadcast. Anything malformed or unsigned is
// logged and dropped; it never stops the host.
func (h *Host) onMessage(msg []byte) {
	if len(msg) == 0 {
		return
	}
	switch msg[0] {
	case msgAnnounce:
		if _, err := h.sw.Announce(msg[1:]); err != nil {
			h.log.Warn("refused announcement from gossip", "err", err)
		}
	case msgCommand:
		h.onCommand(msg[1:])
	case msgAck:
		h.onAck(msg[1:])
	case msgHolds:
		h.onHolds(msg[1:])
	case msgRoster:
		h.offerRoster(msg[1:], "gossip")
	default:
		h.log.Warn("dropped gossip message of unknown kind", "kind", msg[0], "bytes", len(msg))
	}
}

// onHolds takes a holds note: only from an enrolled host, about itself.
func (h *Host) onHolds(b []byte) {
	s, _, err := h.book.Open(trust.KindHolds, b)
	var note holdsNote
	if err == nil {
		if jerr := json.Unmarshal(s.Body, &note); jerr != nil || note.Host == "" || note.Release.IsZero() {
			err = fmt.Errorf("%w: holds note: %v", trust.ErrMalformed, jerr)
		} else {
			err = checkSigner(s.Name, note.Host)
		}
	}
	if err != nil {
		h.refuse("holds", s.Name, err)
		return
	}
	h.mu.Lock()
	h.addHoldLocked(note.Host, note.Release)
	h.mu.Unlock()
}

func (h *Host) onState(from string, b []byte) {
	s, err := trust.Unseal(trust.KindState, b)
	var st stateBlob
	if err == nil {
		if jerr := json.Unmarshal(s.Body, &st); jerr != nil {
			err = fmt.Errorf("%w: state: %v", trust.ErrMalformed, jerr)
		}
	}
	if err != nil {
		h.refuse("state", from, err)
		return
	}
	// What the deploy key signed counts whoever passes it on.
	if len(st.Roster) > 0 {
		h.offerRoster(st.Roster, from)
	}
	for _, a := range st.Announcements {
		if _, err := h.sw.Announce(a); err != nil {
			h.log.Warn("refused announcement from state", "from", from, "err", err)
		}
	}
	// What the host says of itself counts only with its roster key.
	_, _, err = h.book.Open(trust.KindState, b)
	if err == nil {
		err = checkSigner(s.Name, from)
	}
	if err == nil && st.Deploy != nil {
		err = checkSigner(s.Name, st.Deploy.Host)
	}
	if err != nil {
		h.refuse("state", from, err)
		return
	}
	if st.Deploy != nil {
		h.mergeHostState(*st.Deploy)
	}
	h.mu.Lock()
	h.heard[from] = true
	held := make(map[core.ReleaseID]bool, len(st.Holds))
	for _, id := range st.Holds {
		held[id] = true
	}
	if !maps.Equal(held, h.holds[from]) {
		h.holds[from] = held
		h.holdsGen++
	}
	h.mu.Unlock()
}

func (h *Host) addHoldLocked(host string, id core.ReleaseID) {
	if h.holds[host][id] {
		return
	}
	if h.holds[host] == nil {
		h.holds[host] = map[core.ReleaseID]bool{}
	}
	h.holds[host][id] = true
	h.holdsGen++
}

func (h *Host) forget(name string) {
	h.mu.Lock()
	if _, ok := h.holds[name]; ok {
		delete(h.holds, name)
		h.holdsGen++
	}
	delete(h.heard, name)
	h.mu.Unlock()
}

// changed is the swarm node's OnChange: it must not block.
func (h *Host) changed() {
	select {
	case h.dirty <- struct{}{}:
	default:
	}
}

// publishState refreshes the state blob and sends holds notes for newly
// complete releases, at most every 100 ms.
func (h *Host) publishState() {
	defer h.wg.Done()
	for {
		select {
		case <-h.stop:
			return
		case <-h.dirty:
		}
		held := h.setState()
		for _, id := range held {
			h.mu.Lock()
			sent := h.sentHold[id]
			h.sentHold[id] = true
			h.mu.Unlock()
			if sent {
				continue
			}
			msg, err := HoldsMessage(h.cfg.Name, h.cfg.Name, id, h.key)
			if err != nil {
				h.log.Warn("seal holds note", "err", err)
				continue
			}
			// A restarted host sends the same note again (ed25519 signs
			// deterministically); gossip that still remembers it says
			// so, and that is fine.
			if err := h.ml.Broadcast(msg); err != nil && !errors.Is(err, membership.ErrDuplicate) {
				h.log.Warn("broadcast holds", "err", err)
			}
		}
		select {
		case <-h.stop:
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// setState refreshes the push/pull state blob and returns the releases
// this host holds.
func (h *Host) setState() []core.ReleaseID {
	held := h.sw.HeldReleases()
	h.mu.Lock()
	var dep *hostState
	if st, ok := h.states[h.cfg.Name]; ok {
		dep = &st
	}
	h.mu.Unlock()
	blob, err := json.Marshal(stateBlob{Announcements: h.sw.Announcements(), Holds: held, Deploy: dep, Roster: h.book.Raw()})
	if err == nil {
		blob, err = trust.Seal(trust.KindState, h.cfg.Name, blob, h.key)
	}
	if err == nil {
		err = h.ml.SetState(blob)
	}
	if err != nil {
		h.log.Warn("publish state", "err", err)
	}
	return held
}

// peerSource adapts membership to swarm.PeerSource.
type peerSource struct{ h *Host }

// Peers lists the other enrolled, live hosts as the swarm sees them: their
// addresses, datacenter and rack, and the releases each said it holds.
func (h *Host) Peers() []swarm.Peer { return peerSource{h}.Peers() }

// Peers lists the enrolled members only: a pending host is never dialled,
// never counted as holding anything, and its labels and role are the
// roster's, its ports those it signed.
func (p peerSource) Peers() []swarm.Peer {
	h := p.h
	// The generations are read before the members: a change while the
	// answer is built leaves it under the older key, built again next time.
	key := peersKey{members: h.ml.Generation(), roster: h.book.Generation()}
	h.mu.Lock()
	key.holds = h.holdsGen
	if h.peers.valid && h.peers.key == key {
		defer h.mu.Unlock()
		return slices.Clone(h.peers.list)
	}
	h.mu.Unlock()
	members := h.enrolled()
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]swarm.Peer, 0, len(members))
	for _, m := range members {
		if m.Member.Name == h.cfg.Name {
			continue
		}
		sp := swarm.Peer{Name: m.Member.Name, DC: m.Entry.DC, Rack: m.Entry.Rack, Origin: m.Entry.IsOrigin()}
		if pt := m.Meta.Ports["bt"]; pt > 0 {
			sp.BT = netip.AddrPortFrom(m.Addr, uint16(pt)).String()
		}
		if pt := m.Meta.Ports["http"]; pt > 0 {
			sp.HTTP = netip.AddrPortFrom(m.Addr, uint16(pt)).String()
		}
		for id := range h.holds[m.Member.Name] {
			sp.Holds = append(sp.Holds, id)
		}
		out = append(out, sp)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	key.holds = h.holdsGen // read under the lock the holds were read under
	h.peers = peersCache{valid: true, key: key, list: out}
	return slices.Clone(out)
}

// peersCache is peerSource's last answer and what it was built from. The
// swarm asks for its peers many times a second (the allowlist, the status
// page, every dial and stripe choice); membership, the roster and the
// holds change far less often, and building the answer clones every
// member's advertisement and checks it against the roster.
type peersCache struct {
	valid bool
	key   peersKey
	list  []swarm.Peer // callers get a copy; its Holds are shared, read-only
}

type peersKey struct{ members, roster, holds uint64 }

// Close leaves the cluster and stops everything.
func (h *Host) Close() error {
	select {
	case <-h.stop:
		return nil
	default:
		close(h.stop)
	}
	var errs []error
	if h.ml != nil {
		if err := h.ml.Leave(2 * time.Second); err != nil {
			errs = append(errs, err)
		}
		errs = append(errs, h.ml.Shutdown())
	}
	h.wg.Wait()
	errs = append(errs, h.sw.Close())
	return errors.Join(errs...)
}

// now is this host's clock: the wall clock, shifted by Config.ClockOffset
// in tests of clock skew.
func (h *Host) now() time.Time { return time.Now().Add(h.cfg.ClockOffset) }

// offsetClock is the wall clock shifted by d for the swarm (status reports
// its Now); durations and deadlines are unaffected.
type offsetClock struct {
	clock.Real
	d time.Duration
}

func (c offsetClock) Now() time.Time                  { return time.Now().Add(c.d) }
func (c offsetClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }
