package swarm

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"scatter/artifact"
	"scatter/artifact/core"
	"scatter/artifact/datadir"
)

// Peer is another host, as membership knows it.
type Peer struct {
	Name   string
	BT     string // peer-wire address, ip:port
	HTTP   string // metadata address, ip:port
	DC     string
	Rack   string
	Origin bool
	// Holds lists the releases whose every chunk the peer holds (from its
	// gossip state).
	Holds []core.ReleaseID
}

// PeerSource lists the other live hosts. Peers is called before each fetch
// and every few seconds during one; it must be cheap, must not block, and
// must not include this host.
type PeerSource interface {
	Peers() []Peer
}

// Config configures a Node. The zero value of each optional field means its
// default.
type Config struct {
	Name     string            // this host's name, for status and logs
	DataDir  string            // <data>/<repo>/{packs,manifests,tmp,torrents,announcements,releases}
	PubKey   ed25519.PublicKey // the trusted deploy key
	Origin   bool              // serve the build store; do not materialize
	Engine   EngineConfig
	HTTPAddr string // metadata server, e.g. "127.0.0.5:0"
	Keep     int    // releases kept per repo; default 5
	Peers    PeerSource
	// OnChange is called (without locks held) when the node's status or
	// set of announcements changes. It must not block.
	OnChange func()
	Log      *slog.Logger
	// StallAfter is how long a fetch may make no progress before status
	// explains why; default 10 s.
	StallAfter time.Duration
	// SkipStage leaves fetched releases in the store without materializing
	// them: for benchmarks that measure distribution alone.
	SkipStage bool
	// DC is this host's datacenter label; with labels, peer choice keeps
	// traffic inside datacenters (topology.go).
	DC string
	// Bridges is how many hosts of each datacenter exchange pieces with
	// other datacenters; default DefaultBridges.
	Bridges int
	// OffloadAfter is how many hosts must have staged a release before the
	// origin stops uploading it, leaving the rest of the fan-out to the
	// hosts; it resumes if fewer remain. Default 2; negative: never stop.
	OffloadAfter int
}

func (c *Config) setDefaults() {
	if c.Keep <= 0 {
		c.Keep = 5
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.StallAfter <= 0 {
		c.StallAfter = 10 * time.Second
	}
	if c.OnChange == nil {
		c.OnChange = func() {}
	}
	if c.Bridges <= 0 {
		c.Bridges = DefaultBridges
	}
	if c.OffloadAfter == 0 {
		c.OffloadAfter = 2
	}
}

// Validate checks the configuration without changing it.
func (c Config) Validate() error {
	switch {
	case c.DataDir == "":
		return errors.New("swarm: DataDir is required")
	case len(c.PubKey) != ed25519.PublicKeySize:
		return errors.New("swarm: a deploy public key is required")
	case c.Peers == nil:
		return errors.New("swarm: a PeerSource is required")
	case c.HTTPAddr == "":
		return errors.New("swarm: HTTPAddr is required")
	}
	return nil
}

// Node is one host's part of the swarm: its stores (one per repo), its
// BitTorrent engine and its metadata server. It fetches every release
// announced for any repo, verifies it, stages it under releases/<id>, and
// seeds it to the others.
type Node struct {
	cfg  Config
	e    *Engine
	ln   net.Listener
	srv  *http.Server
	http *http.Client
	ctx  context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup

	// stripeTurns makes the origin send stripe pieces round robin; it
	// has its own lock.
	stripeTurns turns
	// metaSlots bounds the manifests and infos this node sends at once
	// (metadata.go).
	metaSlots chan struct{}
	// receiving is the metadata paths this node is receiving now, which
	// it tells askers to ask again for instead of "not found".
	receiving sync.Map

	mu      sync.Mutex
	repos   map[string]*repo
	bad     map[string]bool       // peer IPs banned for bad data, already reported
	stalls  map[StallReason]int64 // stalls begun, by reason, since start
	layouts map[string]*Layout    // parsed layouts served as stripes, by "<id>.<kind>"
}

type repo struct {
	name string
	dir  datadir.Repo
	st   *artifact.Store
	rels map[core.ReleaseID]*release
	wake chan struct{} // pokes the repo's fetch loop
}

// release is what a node knows about one announced release.
type release struct {
	ann     *Announcement
	signed  []byte
	state   string // queued, fetching, staged, seeding, failed
	err     error
	kind    Kind
	total   int64       // bytes of the torrent fetched
	x       *Transfer   // the fetch, while it runs
	seeds   []*Transfer // torrents served once complete
	started time.Time
	done    time.Time
	stuck   string
	reason  StallReason // stuck's kind, for counting
	// offloaded: the origin has stopped uploading this release.
	offloaded bool
	// fallback: the origin is a peer-wire peer for this fetch (its stripe
	// could not come over HTTP, or the fetch stalled).
	fallback bool
	// held: every chunk is in the store (set before staging finishes).
	held   bool
	heldAt time.Time
}

// NewNode opens the data directory, starts the engine and the metadata
// server, and resumes the releases announced before a restart.
func NewNode(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	if cfg.Engine.Log == nil {
		cfg.Engine.Log = cfg.Log
	}
	e, err := NewEngine(cfg.Engine)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		e.Close()
		return nil, fmt.Errorf("swarm: metadata server: %w", err)
	}
	ctx, stop := context.WithCancel(context.Background())
	n := &Node{
		cfg: cfg, e: e, ln: ln, ctx: ctx, stop: stop,
		http:  newMetaClient(),
		repos: map[string]*repo{}, bad: map[string]bool{}, layouts: map[string]*Layout{}, stalls: map[StallReason]int64{},
		metaSlots: make(chan struct{}, metaSlots),
	}
	n.srv = &http.Server{Handler: n.handler(), ReadHeaderTimeout: 10 * time.Second}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			cfg.Log.Error("metadata server stopped", "err", err)
		}
	}()
	return n, nil
}

// offloadLoop stops the origin uploading a release once enough hosts hold
// it: the origin's uplink is the one every host would otherwise share, and
// from then on the hosts serve each other. If hosts holding it leave, the
// origin serves again.
func (n *Node) offloadLoop() {
	defer n.wg.Done()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-tick.C:
		}
		holders := map[core.ReleaseID]int{}
		for _, p := range n.cfg.Peers.Peers() {
			if p.Origin {
				continue
			}
			for _, id := range p.Holds {
				holders[id]++
			}
		}
		n.mu.Lock()
		for _, r := range n.repos {
			for id, rel := range r.rels {
				off := holders[id] >= n.cfg.OffloadAfter
				if off == rel.offloaded || len(rel.seeds) == 0 && rel.x == nil {
					continue
				}
				rel.offloaded = off
				for _, x := range append(rel.seeds, rel.x) {
					if x != nil {
						x.SetUpload(!off)
					}
				}
				n.cfg.Log.Info("origin upload", "release", id, "hosts_holding", holders[id], "serving", !off)
			}
		}
		n.mu.Unlock()
	}
}

// BTAddr and HTTPAddr are what membership advertises.
func (n *Node) BTAddr() string   { return n.e.Addr() }
func (n *Node) HTTPAddr() string { return n.ln.Addr().String() }

// Engine exposes the engine, for counters.
func (n *Node) Engine() *Engine { return n.e }

// Resume re-reads every repo's saved announcements and queues their
// releases again. Call it once the PeerSource can answer: NewNode does not,
// so that a restarted host does not start fetching before its membership
// is up.
func (n *Node) Resume() error {
	if n.cfg.Origin && n.cfg.OffloadAfter > 0 {
		n.wg.Add(1)
		go n.offloadLoop()
	}
	entries, err := os.ReadDir(n.cfg.DataDir)
	if errors.Is(err, fs.ErrNotExist) {
		return os.MkdirAll(n.cfg.DataDir, 0o755)
	}
	if err != nil {
		return fmt.Errorf("swarm: %w", err)
	}
	for _, de := range entries {
		if !de.IsDir() || artifact.ValidName("repo", de.Name()) != nil {
			continue
		}
		dir := datadir.Data(n.cfg.DataDir).Repo(de.Name()).Announcements()
		names, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, f := range names {
			b, err := os.ReadFile(filepath.Join(dir, f.Name()))
			if err == nil {
				_, err = n.Announce(b)
			}
			if err != nil {
				n.cfg.Log.Warn("dropping saved announcement", "repo", de.Name(), "file", f.Name(), "err", err)
			}
		}
	}
	return nil
}

// Announce takes a signed announcement from gossip, a peer's state or the
// local publisher. It reports whether the release is new to this node; a
// new release is queued for fetching. Anything that does not verify is
// refused with an error and changes nothing.
func (n *Node) Announce(signed []byte) (bool, error) {
	a, err := OpenAnnouncement(signed, n.cfg.PubKey)
	if err != nil {
		return false, err
	}
	if err := artifact.ValidName("repo", a.Repo); err != nil {
		return false, fmt.Errorf("%w: %v", ErrBadAnnouncement, err)
	}
	n.mu.Lock()
	r, err := n.repoLocked(a.Repo)
	if err != nil {
		n.mu.Unlock()
		return false, err
	}
	if _, ok := r.rels[a.Release]; ok {
		n.mu.Unlock()
		return false, nil
	}
	if n.retiredLocked(r, a) {
		n.mu.Unlock()
		return false, nil
	}
	r.rels[a.Release] = &release{ann: a, signed: signed, state: "queued"}
	n.mu.Unlock()
	path := r.dir.Announcement(a.Release)
	err = writeFileAtomic(path, signed)
	select {
	case r.wake <- struct{}{}:
	default:
	}
	if err != nil {
		// Fetched all the same; only a restart forgets it.
		return true, fmt.Errorf("save announcement: %w", err)
	}
	n.cfg.Log.Info("release announced", "repo", a.Repo, "release", a.Release, "version", a.Version)
	n.cfg.OnChange()
	return true, nil
}

// retiredLocked reports whether a is older than the newest Keep releases
// the node already knows of: a late joiner needs only what is retained.
func (n *Node) retiredLocked(r *repo, a *Announcement) bool {
	newer := 0
	for _, rel := range r.rels {
		if rel.ann.Time.After(a.Time) {
			newer++
		}
	}
	return newer >= n.cfg.Keep
}

func (n *Node) repoLocked(name string) (*repo, error) {
	if r, ok := n.repos[name]; ok {
		return r, nil
	}
	dir := datadir.Data(n.cfg.DataDir).Repo(name)
	for _, sub := range []string{dir.Announcements(), dir.Torrents(), dir.Releases()} {
		if err := os.MkdirAll(sub, 0o755); err != nil {
			return nil, fmt.Errorf("swarm: repo %s: %w", name, err)
		}
	}
	st, err := artifact.OpenStore(dir.Dir(), n.cfg.Log.With("repo", name))
	if err != nil {
		return nil, err
	}
	// A crash during materialize leaves a hidden partial tree: remove it.
	for _, err := range artifact.RemovePartialTrees(dir.Releases()) {
		n.cfg.Log.Warn("startup cleanup", "err", err)
	}
	r := &repo{name: name, dir: dir, st: st, rels: map[core.ReleaseID]*release{}, wake: make(chan struct{}, 1)}
	n.repos[name] = r
	n.wg.Add(1)
	go n.fetchLoop(r)
	return r, nil
}

// Announcements returns the signed announcements of the retained releases,
// oldest first, for gossip state.
func (n *Node) Announcements() [][]byte {
	n.mu.Lock()
	defer n.mu.Unlock()
	var rels []*release
	for _, r := range n.repos {
		for _, rel := range r.rels {
			rels = append(rels, rel)
		}
	}
	sort.Slice(rels, func(i, j int) bool { return rels[i].ann.Time.Before(rels[j].ann.Time) })
	out := make([][]byte, len(rels))
	for i, rel := range rels {
		out[i] = rel.signed
	}
	return out
}

// fetchLoop fetches a repo's releases one at a time, oldest first, so each
// can use the previous one as its delta base.
func (n *Node) fetchLoop(r *repo) {
	defer n.wg.Done()
	for {
		rel := n.nextQueued(r)
		if rel == nil {
			select {
			case <-r.wake:
				continue
			case <-n.ctx.Done():
				return
			}
		}
		err := n.fetch(r, rel)
		n.mu.Lock()
		rel.x = nil
		if err != nil {
			rel.state, rel.err = "failed", err
		} else {
			rel.state, rel.err, rel.stuck, rel.reason = "staged", nil, "", ""
		}
		rel.done = time.Now()
		n.mu.Unlock()
		if err != nil {
			if n.ctx.Err() != nil {
				return
			}
			n.cfg.Log.Error("fetch failed", "repo", r.name, "release", rel.ann.Release, "err", err)
			// Retry later: peers may come, a partition may heal.
			go func() {
				select {
				case <-time.After(5 * time.Second):
					n.mu.Lock()
					if rel.state == "failed" {
						rel.state = "queued"
					}
					n.mu.Unlock()
					select {
					case r.wake <- struct{}{}:
					default:
					}
				case <-n.ctx.Done():
				}
			}()
		} else {
			n.collect(r)
		}
		n.cfg.OnChange()
	}
}

func (n *Node) nextQueued(r *repo) *release {
	n.mu.Lock()
	defer n.mu.Unlock()
	var next *release
	for _, rel := range r.rels {
		if rel.state == "queued" && (next == nil || rel.ann.Time.Before(next.ann.Time)) {
			next = rel
		}
	}
	if next != nil {
		next.state, next.started = "fetching", time.Now()
	}
	return next
}

// fetch gets, verifies, stages and starts seeding one release.
func (n *Node) fetch(r *repo, rel *release) error {
	a := rel.ann
	// A local publisher may have added packs since the store was opened.
	if err := r.st.Refresh(); err != nil {
		return err
	}
	t, err := n.manifest(r, a)
	if err != nil {
		return err
	}
	kind := Full
	if !a.Parent.IsZero() && n.holds(r, a.Parent) {
		kind = Delta
	}
	tor, err := n.torrent(r, a, t, kind)
	if err != nil {
		return err
	}
	x, err := n.e.Add(r.st, tor.Layout, tor.Info, r.dir)
	if err != nil {
		return err
	}
	n.mu.Lock()
	rel.x, rel.kind, rel.total = x, kind, tor.Layout.Length
	n.mu.Unlock()
	x.Download()
	stripeDone := make(chan struct{})
	stripeCtx, stopStripe := context.WithCancel(n.ctx)
	defer stopStripe()
	slot, slots := n.stripe(a, kind)
	if origin, ok := n.originPeer(); ok && !n.cfg.Origin && slots > 1 {
		go func() {
			defer close(stripeDone)
			if err := n.fetchStripe(stripeCtx, x, a, kind, origin, slot, slots); err != nil && stripeCtx.Err() == nil {
				n.cfg.Log.Warn("stripe from the origin failed; fetching it from the swarm", "release", a.Release, "err", err)
				n.setFallback(rel)
			}
		}()
	} else {
		close(stripeDone)
		if slots == 1 || n.cfg.Origin {
			// The origin itself, or a host alone in fetching this
			// torrent: stripes would save nothing, and the peer wire is
			// faster. (slots 0: a host outside the origin's datacenter
			// waits for its neighbours, unless it stalls.)
			n.setFallback(rel)
		}
	}
	hadStripe := slots > 1 && !n.cfg.Origin
	err = n.wait(rel, x, stripeDone, hadStripe)
	stopStripe()
	<-stripeDone
	if err != nil {
		x.Drop()
		return err
	}
	n.mu.Lock()
	rel.held, rel.heldAt = true, time.Now()
	n.mu.Unlock()
	n.cfg.OnChange()
	seeds := []*Transfer{x}
	// Serve the other torrent too, from the same chunks.
	other := Full
	if kind == Full {
		other = Delta
	}
	if other == Full || !a.Parent.IsZero() {
		if parentOK := other == Full || n.holds(r, a.Parent); parentOK {
			if t2, err := n.torrent(r, a, t, other); err != nil {
				n.cfg.Log.Warn("cannot serve the other torrent", "release", a.Release, "kind", other, "err", err)
			} else if x2, err := n.e.Add(r.st, t2.Layout, t2.Info, r.dir); err == nil {
				seeds = append(seeds, x2)
			} else {
				n.cfg.Log.Warn("cannot serve the other torrent", "release", a.Release, "kind", other, "err", err)
			}
		}
	}
	if !n.cfg.Origin && !n.cfg.SkipStage {
		if err := n.stage(r, t); err != nil {
			for _, s := range seeds {
				s.Drop()
			}
			return err
		}
	}
	n.mu.Lock()
	rel.seeds = seeds
	n.mu.Unlock()
	n.cfg.Log.Info("release staged", "repo", r.name, "release", a.Release, "kind", kind)
	return nil
}

// stripe returns this host's slot among the hosts that lack the release and
// fetch the same torrent: its place in the sorted names of those hosts and
// itself.
//
// With datacenter labels only hosts in the origin's datacenter take
// stripes (see topology.go); elsewhere slots is 0. Once a host holds the
// whole release, slots is 0 too: the release is in the swarm, and a host
// that starts late (its metadata came later than its peers') would
// otherwise take a stripe the others already fetched, in slots they
// counted differently, and receive those pieces twice.
func (n *Node) stripe(a *Announcement, kind Kind) (slot, slots int) {
	peers := n.cfg.Peers.Peers()
	for _, p := range peers {
		if !p.Origin && slices.Contains(p.Holds, a.Release) {
			return 0, 0
		}
	}
	dc := n.stripeDC(peers)
	if dc != "" && n.cfg.DC != dc {
		return 0, 0
	}
	names := []string{n.cfg.Name}
	for _, p := range peers {
		if dc != "" && p.DC != dc {
			continue
		}
		// Hosts holding the parent fetch the delta, the others the full
		// torrent: only hosts fetching the same torrent share its stripes.
		sameKind := (!a.Parent.IsZero() && slices.Contains(p.Holds, a.Parent)) == (kind == Delta)
		if !p.Origin && !slices.Contains(p.Holds, a.Release) && sameKind {
			names = append(names, p.Name)
		}
	}
	sort.Strings(names)
	return slices.Index(names, n.cfg.Name), len(names)
}

// wait follows a transfer, adding peers as membership finds them and
// noting why it stalls, until it completes.
//
// A transfer that makes no progress while a connected peer holds a piece
// it lacks closes its connections and dials them again (see
// Transfer.Reconnect): after reconnectAfter (or StallAfter, if shorter)
// when peers rejected requests during the stall, after StallAfter
// otherwise, and again as often while the stall lasts. Not while
// downloads pause after a failed write: fresh connections would not help.
//
// A host whose own stripe is done and which then makes no progress for
// orphanAfter falls back to the origin at once instead of after
// StallAfter: what it misses is most likely a stripe nobody took — its
// host left, or, for a delta, hosts disagreed for a moment on who fetches
// which torrent — and no peer will ever have it.
func (n *Node) wait(rel *release, x *Transfer, stripeDone <-chan struct{}, hadStripe bool) error {
	done := make(chan error, 1)
	go func() { done <- x.Wait(n.ctx) }()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last, _ := x.Progress()
	lastProgress := time.Now()
	rejectedBefore := x.Rejected() // rejects counted before the stall
	var lastReconnect time.Time
	for {
		n.mu.Lock()
		withOrigin := rel.fallback
		n.mu.Unlock()
		addrs := n.peerAddrsFor(withOrigin)
		if !n.cfg.Origin {
			// The origin never dials hosts: a connection it opened would let
			// them ask it for anything, and each piece should leave it once,
			// as a stripe.
			x.AddPeers(addrs)
		}
		select {
		case err := <-done:
			n.reportBadPeers()
			return err
		case <-tick.C:
		}
		got, _ := x.Progress()
		if got != last {
			last, lastProgress, rejectedBefore = got, time.Now(), x.Rejected()
			n.setStuck(rel, x, "", "")
			continue
		}
		stalled := time.Since(lastProgress)
		if hadStripe && !withOrigin && stalled > min(orphanAfter, n.cfg.StallAfter) && closed(stripeDone) {
			n.cfg.Log.Info("own stripe done, no progress: fetching what is left from the origin too",
				"release", rel.ann.Release, "stalled", stalled.Round(time.Millisecond))
			n.setFallback(rel)
		}
		rejected := x.Rejected() - rejectedBefore
		every := min(reconnectAfter, n.cfg.StallAfter)
		holding := -1 // peers holding a missing piece, counted once a tick when needed
		if stalled >= every {
			holding = x.PeersWithMissing()
		}
		if stalled >= n.cfg.StallAfter {
			n.setFallback(rel)
			// Right after a reconnect the host is briefly unconnected: not
			// a reason worth reporting.
			if time.Since(lastReconnect) >= reconnectGrace {
				reason, why := n.diagnose(x, len(addrs), holding, rejected, lastProgress)
				n.setStuck(rel, x, reason, why)
			}
		}
		evidence := rejected > 0 || stalled >= n.cfg.StallAfter
		if stalled >= every && time.Since(lastReconnect) >= every && evidence && !x.Paused() {
			if holding > 0 {
				n.cfg.Log.Info("no progress although peers hold missing pieces: reconnecting to them",
					"release", rel.ann.Release, "stalled", stalled.Round(time.Millisecond),
					"peers_holding", holding, "rejected_requests", rejected)
				x.Reconnect()
				x.AddPeers(n.peerAddrsFor(withOrigin))
				lastReconnect = time.Now()
			}
		}
		n.reportBadPeers()
	}
}

// orphanAfter, reconnectAfter and reconnectGrace: see wait.
const (
	orphanAfter    = 3 * time.Second
	reconnectAfter = 5 * time.Second
	reconnectGrace = 2 * time.Second
)

func closed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// setStuck records why rel's transfer x makes no progress ("" once it
// moves again) and logs each new reason. When a stall begins it also logs
// the transfer's state in the engine (each connection's choke and
// interest flags, requests in flight either way, pieces held): what tells
// a peer that will not send from a host that does not ask.
func (n *Node) setStuck(rel *release, x *Transfer, reason StallReason, why string) {
	n.mu.Lock()
	was, wasReason := rel.stuck, rel.reason
	rel.stuck, rel.reason = why, reason
	if reason != "" && reason != wasReason {
		n.stalls[reason]++
	}
	n.mu.Unlock()
	if why == was {
		return
	}
	if why != "" {
		n.cfg.Log.Warn("fetch stalled", "release", rel.ann.Release, "why", why)
		if was == "" {
			n.cfg.Log.Info("engine state at the stall", "release", rel.ann.Release, "state", x.Status())
		}
	}
	n.cfg.OnChange()
}

// StallReason is the kind of a stall: a short, fixed name for counting
// (metrics label them by it), where ReleaseStatus.Stuck says it in words.
type StallReason string

// The reasons a fetch stalls, in the order diagnose tries them.
const (
	StallNoPeers      StallReason = "no_peers"      // membership knows no other host
	StallWriteFailed  StallReason = "write_failed"  // received blocks cannot be written
	StallPeersBanned  StallReason = "peers_banned"  // every peer sent bad data
	StallNotConnected StallReason = "not_connected" // peers known, none reachable
	StallNoHolder     StallReason = "no_holder"     // connected, none holds a missing piece
	StallBadPieces    StallReason = "bad_pieces"    // pieces failed verification
	StallRejected     StallReason = "rejected"      // holders reject our requests
	StallNotSending   StallReason = "not_sending"   // holders choke, are capped, or do not answer
)

// StallReasons lists every StallReason.
var StallReasons = []StallReason{StallNoPeers, StallWriteFailed, StallPeersBanned, StallNotConnected,
	StallNoHolder, StallBadPieces, StallRejected, StallNotSending}

// diagnose says why a transfer makes no progress, as a kind and in words.
// holding is how many connected peers hold a piece it lacks, rejected how
// many Reject messages peers sent since progress stopped at since.
func (n *Node) diagnose(x *Transfer, known, holding int, rejected int64, since time.Time) (StallReason, string) {
	st := x.Stats()
	bad := len(n.e.cl.BadPeerIPs())
	werr, werrAt := x.WriteErr()
	switch {
	case known == 0:
		return StallNoPeers, "no peers: membership knows no other host"
	case werr != nil && werrAt.After(since):
		return StallWriteFailed, fmt.Sprintf("writing received blocks fails (downloads pause %s, then retry): %v", writeRetry, werr)
	case st.ActivePeers == 0 && bad > 0:
		return StallPeersBanned, fmt.Sprintf("no usable peers: %d banned for sending data that failed verification", bad)
	case st.ActivePeers == 0:
		return StallNotConnected, fmt.Sprintf("not connected to any of %d known peers", known)
	case holding == 0:
		return StallNoHolder, fmt.Sprintf("connected to %d peers, none holds a missing piece", st.ActivePeers)
	case st.PiecesDirtiedBad.Int64() > 0:
		return StallBadPieces, fmt.Sprintf("%d pieces failed verification", st.PiecesDirtiedBad.Int64())
	case rejected > 0:
		return StallRejected, fmt.Sprintf("%d peers hold missing pieces but none is sending; they sent %d rejects since the stall began "+
			"(failed reads, or answers to our cancels); reconnecting about every %s",
			holding, rejected, min(reconnectAfter, n.cfg.StallAfter))
	default:
		return StallNotSending, fmt.Sprintf("%d peers hold missing pieces but none is sending: choking, rate-limited, or not answering "+
			"(reconnecting about every %s)", holding, min(reconnectAfter, n.cfg.StallAfter))
	}
}

// reportBadPeers logs, once each, peers banned for failed piece hashes.
func (n *Node) reportBadPeers() {
	for _, ip := range n.e.cl.BadPeerIPs() {
		n.mu.Lock()
		seen := n.bad[ip]
		n.bad[ip] = true
		n.mu.Unlock()
		if !seen {
			n.cfg.Log.Error("peer sent data that failed verification; banned", "peer", n.peerName(ip), "ip", ip)
			n.cfg.OnChange()
		}
	}
}

func (n *Node) peerName(ip string) string {
	for _, p := range n.cfg.Peers.Peers() {
		if h, _, err := net.SplitHostPort(p.BT); err == nil && h == ip {
			return p.Name
		}
	}
	return ip
}

func (n *Node) peerAddrs() []string { return n.peerAddrsFor(true) }

// peerAddrsFor lists peer-wire addresses, the origin's only if withOrigin.
func (n *Node) peerAddrsFor(withOrigin bool) []string {
	var out []string
	for _, p := range n.reachable(n.cfg.Peers.Peers()) {
		if p.BT != "" && (withOrigin || !p.Origin) {
			out = append(out, p.BT)
		}
	}
	return out
}

func (n *Node) originPeer() (Peer, bool) {
	for _, p := range n.cfg.Peers.Peers() {
		if p.Origin && p.HTTP != "" {
			return p, true
		}
	}
	return Peer{}, false
}

func (n *Node) setFallback(rel *release) {
	n.mu.Lock()
	rel.fallback = true
	n.mu.Unlock()
}

// fetchStripe fetches this host's share of the torrent from the origin's
// metadata server and hands it to the engine piece by piece. Hosts take
// disjoint stripes, so every piece leaves the origin once; the hosts trade
// the rest over the peer wire, starting as soon as each piece lands. (With
// the origin as an ordinary peer, hosts all ask it for the rarest pieces
// and it sends many twice: 32 hosts took 1.56 S/U, see the README.)
func (n *Node) fetchStripe(ctx context.Context, x *Transfer, a *Announcement, kind Kind, origin Peer, slot, slots int) error {
	first, end := slot*x.Pieces()/slots, (slot+1)*x.Pieces()/slots
	for first < end && x.HasPiece(first) {
		first++
	}
	if first >= end {
		return nil
	}
	off, size := x.PieceRange(first, end)
	url := fmt.Sprintf("http://%s/v1/repos/%s/releases/%s/data/%s?off=%d&n=%d", origin.HTTP, a.Repo, a.Release, kind, off, size)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{}).Do(req) // no overall timeout: a stripe takes S/U
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("origin: %s", resp.Status)
	}
	ip, _ := netip.ParseAddrPort(origin.HTTP)
	// Verifying a piece is a round trip through anacrolix's hasher; keep a
	// few in flight so the stream from the origin never waits on it.
	const inFlight = 8
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	bufs := make(chan []byte, inFlight)
	for range inFlight {
		bufs <- make([]byte, x.Layout.PieceLen)
	}
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
	}
	failed := func() error {
		mu.Lock()
		defer mu.Unlock()
		return firstErr
	}
	defer wg.Wait()
	for i := first; i < end && failed() == nil; i++ {
		_, k := x.PieceRange(i, i+1)
		var buf []byte
		select {
		case buf = <-bufs:
		case <-ctx.Done():
			return ctx.Err()
		}
		b := buf[:k]
		if _, err := io.ReadFull(resp.Body, b); err != nil {
			bufs <- buf
			return fmt.Errorf("stripe piece %d: %w", i, err)
		}
		n.e.addReceived(ip.Addr(), k)
		if x.HasPiece(i) {
			bufs <- buf
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := x.PutPiece(ctx, i, b); err != nil {
				fail(err)
			}
			bufs <- buf
		}()
	}
	wg.Wait()
	return failed()
}

// holds reports whether the store has the manifest and every chunk of id.
func (n *Node) holds(r *repo, id core.ReleaseID) bool {
	n.mu.Lock()
	rel := r.rels[id]
	held := rel != nil && rel.held
	n.mu.Unlock()
	if held {
		// Kept releases' chunks are pinned: no need to decode a manifest
		// of megabytes to ask the store about each of them.
		return true
	}
	t, err := r.st.Table(id, n.cfg.PubKey)
	if err != nil {
		return false
	}
	defer t.Close()
	for i := range t.Len() {
		if c, err := t.Ref(i); err != nil || !r.st.HasChunk(c.ID) {
			return false
		}
	}
	return true
}

// manifest returns the release's chunk table from the store or, failing
// that, from a peer, verified by the deploy key and the release ID. The
// entries are checked but not kept: staging reads them again from the
// stored manifest (artifact.MaterializeStored), and holding them for the
// whole fetch was most of a large release's memory.
func (n *Node) manifest(r *repo, a *Announcement) (*artifact.Table, error) {
	if t, err := r.st.Table(a.Release, n.cfg.PubKey); err == nil {
		return t, nil
	}
	var t *artifact.Table
	// The envelope goes to disk as it arrives: PutFetched checks it from
	// there.
	err := n.fromPeers(fmt.Sprintf("/v1/repos/%s/releases/%s/manifest", a.Repo, a.Release), func(body io.Reader) error {
		got, err := r.st.PutFetched(body, n.cfg.PubKey, a.Release)
		t = got
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("fetch manifest: %w", err)
	}
	return t, nil
}

// torrent returns the release's torrent of the given kind from disk or a
// peer, checked against the signed info hash.
func (n *Node) torrent(r *repo, a *Announcement, t *artifact.Table, kind Kind) (*Torrent, error) {
	want := a.Full
	if kind == Delta {
		want = a.Delta
	}
	path := r.dir.Torrent(a.Release, kind.String())
	info, err := os.ReadFile(path)
	if err != nil || InfoHash(info) != want {
		err = n.fromPeers(fmt.Sprintf("/v1/repos/%s/releases/%s/torrent/%s", a.Repo, a.Release, kind), func(body io.Reader) error {
			b, err := readAtMost(body, maxInfoSize)
			if err != nil {
				return err
			}
			if InfoHash(b) != want {
				return errors.New("info hash does not match the announcement")
			}
			info = b
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("fetch %s torrent: %w", kind, err)
		}
		if err := writeFileAtomic(path, info); err != nil {
			return nil, err
		}
	}
	l, err := ParseInfo(info, t)
	if err != nil {
		return nil, err
	}
	if l.Kind != kind {
		return nil, fmt.Errorf("torrent is a %s layout, want %s", l.Kind, kind)
	}
	return &Torrent{Layout: l, Info: info}, nil
}

// stage materializes the release under releases/<id>, reusing the newest
// staged tree. Both manifests are read from the store as the tree is
// written, not decoded whole.
func (n *Node) stage(r *repo, t *artifact.Table) error {
	id := t.ID
	dest := r.dir.Release(id)
	if _, err := os.Stat(dest); err == nil {
		return nil
	}
	opt := artifact.MaterializeOptions{Log: n.cfg.Log}
	if prev := n.newestStaged(r, id); prev != nil {
		opt.Previous = prev
	}
	_, err := artifact.MaterializeStored(n.ctx, r.st, t, dest, opt)
	return err
}

func (n *Node) newestStaged(r *repo, except core.ReleaseID) *artifact.Previous {
	n.mu.Lock()
	var best *release
	for id, rel := range r.rels {
		if id != except && (rel.state == "staged") && (best == nil || rel.ann.Time.After(best.ann.Time)) {
			best = rel
		}
	}
	n.mu.Unlock()
	if best == nil {
		return nil
	}
	return &artifact.Previous{Release: best.ann.Release, Dir: r.dir.Release(best.ann.Release)}
}

// collect keeps the newest Keep releases of the repo and removes the rest:
// their torrents, trees, announcements, and chunks no kept release uses.
func (n *Node) collect(r *repo) {
	n.mu.Lock()
	var rels []*release
	for _, rel := range r.rels {
		rels = append(rels, rel)
	}
	sort.Slice(rels, func(i, j int) bool { return rels[i].ann.Time.After(rels[j].ann.Time) })
	var drop []*release
	live := linkedReleases(r.dir)
	for i, rel := range rels {
		if i >= n.cfg.Keep && rel.state != "fetching" && !live[rel.ann.Release.String()] {
			drop = append(drop, rel)
			delete(r.rels, rel.ann.Release)
		}
	}
	n.mu.Unlock()
	if len(drop) == 0 {
		return
	}
	for _, rel := range drop {
		for _, s := range rel.seeds {
			s.Drop()
		}
		rid := rel.ann.Release
		id := rid.String()
		n.mu.Lock()
		delete(n.layouts, id+".full")
		delete(n.layouts, id+".delta")
		n.mu.Unlock()
		for _, kind := range []Kind{Full, Delta} {
			os.Remove(r.dir.PartialFile(rid, kind.String(), "partial"))
			os.Remove(r.dir.PartialFile(rid, kind.String(), "done"))
			os.Remove(r.dir.Torrent(rid, kind.String()))
		}
		os.Remove(r.dir.Announcement(rid))
		if err := artifact.RemoveTree(r.dir.Release(rid)); err != nil {
			n.cfg.Log.Warn("remove old release tree", "release", id, "err", err)
		}
	}
	// Keep what the node keeps (the newest announcements), whatever the
	// build times say: on the origin, newer builds may not be announced yet.
	n.mu.Lock()
	var pin []core.ReleaseID
	for id := range r.rels {
		pin = append(pin, id)
	}
	n.mu.Unlock()
	res, err := r.st.GC(artifact.GCOptions{Pin: pin, PinnedOnly: true})
	if err != nil {
		n.cfg.Log.Warn("gc", "repo", r.name, "err", err)
		return
	}
	n.cfg.Log.Info("collected old releases", "repo", r.name, "releases", len(drop), "freed_bytes", res.FreedBytes)
}

// linkedReleases names the releases that the repo's current and previous
// links point at (set by the deploy agent): collection never removes what
// runs, or what a rollback returns to.
func linkedReleases(repo datadir.Repo) map[string]bool {
	out := map[string]bool{}
	for _, link := range []string{datadir.CurrentLink, datadir.PreviousLink} {
		if t, err := os.Readlink(repo.Link(link)); err == nil {
			out[filepath.Base(t)] = true
		}
	}
	return out
}

// Close stops fetching and serving.
func (n *Node) Close() error {
	n.stop()
	n.srv.Close()
	err := n.e.Close()
	n.wg.Wait()
	n.mu.Lock()
	for _, r := range n.repos {
		r.st.Close()
	}
	n.mu.Unlock()
	return err
}
