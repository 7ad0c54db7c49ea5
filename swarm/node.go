package swarm

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"scatter/artifact"
	"scatter/artifact/datadir"
	"scatter/swarm/clock"
	"sync"
	"time"
)

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
	// AllowClients are networks whose addresses may use the data plane
	// although they are not hosts: stock BitTorrent clients, opted in per
	// daemon (`seed --allow-clients`). Hosts need no entry: PeerSource's
	// hosts are let in (allow.go).
	AllowClients []netip.Prefix
	// Clock is the node's time: stalls, reconnects, fallbacks, retries and
	// metadata slots follow it. Default: the wall clock; tests pass a
	// clock.Fake. The engine uses the same clock.
	Clock clock.Clock
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
	if c.Clock == nil {
		c.Clock = clock.Real{}
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
//
// A Node is the wiring of its parts (see the package doc, "Who owns
// what"); each keeps its own state under its own lock or goroutine.
type Node struct {
	cfg  Config
	e    *Engine
	ctx  context.Context // ends when the node closes
	stop context.CancelFunc
	wg   sync.WaitGroup // every goroutine the node started

	reg     *registry   // the repos and their releases (registry.go)
	fetcher *fetcher    // fetches them (fetch.go, follow.go, stripe.go)
	srv     *metaServer // answers peers (metaserver.go)
	allow   *allowlist  // who may use the data plane (allow.go)
	peers   peerView    // this host's view of the others (peers.go)
	stalls  *stalls     // stalls and banned peers counted (stalls.go)
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
	cfg.Engine.Clock = cfg.Clock
	// This host's address, which it dials from: peers let it in by it.
	var self netip.Addr
	if h, _, err := net.SplitHostPort(cfg.HTTPAddr); err == nil {
		if ip, err := netip.ParseAddr(h); err == nil && !ip.IsUnspecified() {
			self = ip.Unmap()
		}
	}
	allow := newAllowlist(self, cfg.AllowClients, cfg.Peers)
	cfg.Engine.Allow = allow.engine
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
	n := &Node{cfg: cfg, e: e, ctx: ctx, stop: stop, allow: allow,
		reg:   newRegistry(cfg.DataDir, cfg.PubKey, cfg.Keep, cfg.Log),
		peers: peerView{self: cfg.Name, dc: cfg.DC, origin: cfg.Origin, bridges: cfg.Bridges, src: cfg.Peers},
	}
	n.stalls = &stalls{log: cfg.Log, onChange: cfg.OnChange, bannedIPs: e.cl.BadPeerIPs, name: n.peers.name,
		counts: map[StallReason]int64{}, bad: map[string]bool{}}
	n.srv = newMetaServer(n.reg, e.up, e.addSent, e.addMetaSent, cfg.Clock, cfg.Log, ctx.Done())
	meta := &metaClient{http: metaHTTP(self), peers: cfg.Peers, dc: cfg.DC, clock: cfg.Clock, ctx: ctx, receiving: n.srv.receiving}
	n.fetcher = &fetcher{cfg: &n.cfg, reg: n.reg, e: e, meta: meta, peers: n.peers, stalls: n.stalls, self: self, ctx: ctx, wg: &n.wg}

	mux := http.NewServeMux()
	mux.Handle("GET /announce", tracker{knows: n.reg.knows, peers: func() []string { return append(n.peers.addrs(true), n.BTAddr()) }})
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(n.Status())
	})
	n.srv.start(ln, allow.admit, mux, &n.wg)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		allow.loop(ctx, cfg.Clock)
	}()
	return n, nil
}

// Resume re-reads every repo's saved announcements and queues their
// releases again. Call it once the PeerSource can answer: NewNode does not,
// so that a restarted host does not start fetching before its membership
// is up. Until it is called the node lets no host in (allow.go).
func (n *Node) Resume() error {
	// PeerSource may be asked from now on (its owner is up): let the
	// hosts it lists in.
	n.allow.open()
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
	r, opened, err := n.reg.open(a.Repo)
	if err != nil {
		return false, err
	}
	if opened {
		n.wg.Add(1)
		go n.fetcher.fetchLoop(r)
	}
	if !n.reg.add(r, a, signed) {
		return false, nil
	}
	err = writeFileAtomic(r.dir.Announcement(a.Release), signed)
	r.poke()
	if err != nil {
		// Fetched all the same; only a restart forgets it.
		return true, fmt.Errorf("save announcement: %w", err)
	}
	n.cfg.Log.Info("release announced", "repo", a.Repo, "release", a.Release, "version", a.Version)
	n.cfg.OnChange()
	return true, nil
}

// Announcements returns the signed announcements of the retained releases,
// oldest first, for gossip state.
func (n *Node) Announcements() [][]byte { return n.reg.announcements() }

// BTAddr and HTTPAddr are what membership advertises.
func (n *Node) BTAddr() string   { return n.e.Addr() }
func (n *Node) HTTPAddr() string { return n.srv.addr() }

// Engine exposes the engine, for counters.
func (n *Node) Engine() *Engine { return n.e }

// Close stops fetching and serving.
func (n *Node) Close() error {
	n.stop()
	n.srv.close()
	err := n.e.Close()
	n.wg.Wait()
	n.reg.close()
	return err
}
