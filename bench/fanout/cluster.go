package fanout

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"scatter/artifact"
	"scatter/artifact/core"
	"scatter/artifact/datadir"
	"scatter/orchestrate/config"
	"scatter/orchestrate/deploy"
	"scatter/orchestrate/fleet"
	"scatter/orchestrate/host"
	"scatter/orchestrate/trust"
	"scatter/swarm"
)

const repo = "mw"

// node is one host of the cluster, running or not.
type node struct {
	name string
	i    int // 0: the origin
	ip   string
	dir  string
	up   int64  // upload cap
	dc   string // 2dc only
	note string
	m    member
	app  net.Listener // what the TCP health check dials (in-process)
	// banked holds the counters of earlier incarnations (churn).
	banked counters
}

// member is one running incarnation of a node: a host.Host in this
// process (inproc), or a `scatter seed` process in the node's network
// namespace (proc, netns.go). The harness calls its methods from one
// goroutine at a time; close is called once, last.
type member interface {
	// release is the node's state of one of repo's releases; ok is false
	// while it knows none. An error means the member is gone.
	release(ctx context.Context, id core.ReleaseID) (st swarm.ReleaseStatus, ok bool, err error)
	// counters are this incarnation's byte counters.
	counters(ctx context.Context) (counters, error)
	members(ctx context.Context) ([]string, error) // the live members it sees, itself included
	// The origin's side: announce, carry a deploy, serve the baseline.
	publish(ctx context.Context, ann []byte) error
	transport() deploy.Transport
	httpAddr() string
	gossipAddr() string
	close() error
}

// cluster is the origin and the hosts: in this process, or (nn not nil)
// as processes in network namespaces.
type cluster struct {
	key   ed25519.PrivateKey
	ckey  []byte
	dir   string
	seed  string
	orig  *node
	hosts []*node
	byIP  map[netip.Addr]*node
	nn    *netnsFleet
	// blind: nodes keep their datacenter (placement, counting) but get no
	// DC label (Config.DCBlind).
	blind bool
	// bridges: swarm.Config.Bridges of every node (0: the default).
	bridges int
	// log is the in-process hosts' log, each line naming its host
	// (Config.Log; `scatter --log-level info bench` shows their stalls and
	// fallbacks).
	log *slog.Logger
	mu  sync.Mutex
}

func newCluster(dir string) *cluster {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	ckey := make([]byte, 32)
	rand.Read(ckey)
	return &cluster{key: key, ckey: ckey, dir: dir, byIP: map[netip.Addr]*node{}}
}

// addr gives node i (0: the origin) its own loopback address: anacrolix
// bans by IP, so hosts must not share one. 127.77.0.0/16 keeps clear of
// the 127.0.0.x addresses tests use.
func addr(i int) string { return fmt.Sprintf("127.77.%d.%d", i/250, i%250+2) }

func (c *cluster) add(name string, i int, up int64) *node {
	n := &node{name: name, i: i, ip: addr(i), dir: filepath.Join(c.dir, "hosts", name), up: up}
	if c.nn != nil {
		n.ip = c.nn.net.Addr(i)
	}
	c.byIP[netip.MustParseAddr(n.ip)] = n
	return n
}

// enrol gives every node its host key and writes one roster naming them
// all, signed by the deploy key, into every data directory: the hosts
// start enrolled, the way an operator's config management enrols them.
func (c *cluster) enrol() error {
	r := &trust.Roster{Version: 1, Issued: time.Now().UTC()}
	nodes := append([]*node{c.orig}, c.hosts...)
	for _, n := range nodes {
		dd := datadir.Data(n.dir)
		_, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return err
		}
		if err := trust.WriteHostKey(dd.HostKey(), key); err != nil {
			return err
		}
		e := trust.Entry{Name: n.name, Key: key.Public().(ed25519.PublicKey)}
		if !c.blind {
			e.DC = n.dc
		}
		if n == c.orig {
			e.Role = trust.RoleOrigin
		}
		r.Put(e)
	}
	raw, err := trust.SignRoster(r, c.key)
	if err != nil {
		return fmt.Errorf("enrol: %w", err)
	}
	for _, n := range nodes {
		if err := os.WriteFile(datadir.Data(n.dir).Roster(), raw, 0o644); err != nil {
			return fmt.Errorf("enrol: %w", err)
		}
	}
	return nil
}

// start starts (or restarts, keeping its data directory) a node.
func (c *cluster) start(ctx context.Context, n *node, origin bool) error {
	var m member
	var err error
	if c.nn != nil {
		m, err = c.nn.start(ctx, c, n, origin)
	} else {
		m, err = c.startInproc(ctx, n, origin)
	}
	if err != nil {
		return fmt.Errorf("start %s: %w", n.name, err)
	}
	if c.seed == "" {
		c.seed = m.gossipAddr()
	}
	c.mu.Lock()
	n.m = m
	c.mu.Unlock()
	return nil
}

func (c *cluster) startInproc(ctx context.Context, n *node, origin bool) (member, error) {
	if n.app == nil && !origin {
		ln, err := net.Listen("tcp", net.JoinHostPort(n.ip, "0"))
		if err != nil {
			return nil, fmt.Errorf("app listener: %w", err)
		}
		n.app = ln
		go func() {
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				conn.Close()
			}
		}()
	}
	cfg := host.Config{
		Name: n.name, DataDir: n.dir, PubKey: c.key.Public().(ed25519.PublicKey), Origin: origin,
		BindAddr: n.ip, ClusterKey: c.ckey, Label: "scatter-bench", UploadRate: n.up,
	}
	if c.log != nil {
		cfg.Log = c.log // host.Start names the host on each line
	}
	if !c.blind {
		cfg.DC = n.dc
	}
	cfg.Bridges = c.bridges
	if !origin {
		cfg.Repos = actions(n.app.Addr().String())
	}
	if c.seed != "" {
		cfg.Join = []string{c.seed}
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	h, err := host.Start(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &inproc{h: h, c: c, n: n}, nil
}

// stop closes a node's member, keeping what it counted so far.
func (c *cluster) stop(n *node) error {
	c.mu.Lock()
	m := n.m
	n.m = nil
	c.mu.Unlock()
	if m == nil {
		return nil
	}
	k, err := m.counters(context.Background())
	if err == nil {
		n.banked = n.banked.plus(k)
	}
	return errors.Join(err, m.close())
}

func (c *cluster) running(n *node) member {
	c.mu.Lock()
	defer c.mu.Unlock()
	return n.m
}

// counters are a node's byte counters.
type counters struct {
	fromOrigin, fromPeers, uploaded, crossDC int64
}

func (k counters) plus(o counters) counters {
	return counters{k.fromOrigin + o.fromOrigin, k.fromPeers + o.fromPeers, k.uploaded + o.uploaded, k.crossDC + o.crossDC}
}

// counters are a node's cumulative counters over all its incarnations.
func (c *cluster) counters(ctx context.Context, n *node) (counters, error) {
	if m := c.running(n); m != nil {
		k, err := m.counters(ctx)
		return n.banked.plus(k), err
	}
	return n.banked, nil
}

// cpuSeconds is the CPU time of this process and, in netns mode, of every
// daemon process so far.
func (c *cluster) cpuSeconds() float64 {
	t := cpuSeconds()
	if c.nn != nil {
		t += c.nn.cpuSeconds()
	}
	return t
}

func (c *cluster) close() {
	var wg sync.WaitGroup
	for _, n := range append([]*node{c.orig}, c.hosts...) {
		if n == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.stop(n)
			if n.app != nil {
				n.app.Close()
			}
		}()
	}
	wg.Wait()
	if c.nn != nil {
		c.nn.close()
	}
}

// waitMembers waits until every running host sees want live members. From
// 10 s on it says, every 10 s, which hosts still see fewer and whom they
// miss, and a timeout names them too.
func (c *cluster) waitMembers(ctx context.Context, want int, timeout time.Duration, say func(string, ...any)) error {
	start := time.Now()
	deadline, next := start.Add(timeout), start.Add(10*time.Second)
	for {
		late := c.lagging(ctx, want, time.Now().After(next) || time.Now().After(deadline))
		if late == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gossip: not every host sees %d members after %s: %s", want, timeout, late)
		}
		if time.Now().After(next) {
			say("gossip: still converging after %.0f s: %s", time.Since(start).Seconds(), late)
			next = next.Add(10 * time.Second)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// lagging returns nil when every running host sees want members; else
// the first host that does not, or with all set every such host and the
// members it misses.
func (c *cluster) lagging(ctx context.Context, want int, all bool) error {
	nodes := append([]*node{c.orig}, c.hosts...)
	var late []string
	for _, n := range nodes {
		m := c.running(n)
		if m == nil {
			continue
		}
		seen, err := m.members(ctx)
		switch {
		case err != nil:
			late = append(late, fmt.Sprintf("%s: %v", n.name, err))
		case len(seen) != want:
			var missing []string
			for _, o := range nodes {
				if c.running(o) != nil && !slices.Contains(seen, o.name) {
					missing = append(missing, o.name)
				}
			}
			late = append(late, fmt.Sprintf("%s sees %d (missing %s)", n.name, len(seen), strings.Join(missing, " ")))
		default:
			continue
		}
		if !all {
			break
		}
	}
	if late == nil {
		return nil
	}
	return errors.New(strings.Join(late, "; "))
}

// inproc is a node running as a host.Host in this process.
type inproc struct {
	h *host.Host
	c *cluster
	n *node
}

var _ member = (*inproc)(nil)

func (m *inproc) release(_ context.Context, id core.ReleaseID) (swarm.ReleaseStatus, bool, error) {
	st, ok := m.h.Swarm().Release(repo, id)
	return st, ok, nil
}

func (m *inproc) counters(context.Context) (counters, error) {
	st := m.h.Swarm().Status()
	return counters{st.ReceivedFromOrigin, st.ReceivedFromPeers, st.Uploaded, m.crossDC()}, nil
}

// crossDC is what the host received from nodes in another datacenter,
// from its engine's per-IP counters (peer wire and stripes).
func (m *inproc) crossDC() int64 {
	if m.n.dc == "" {
		return 0
	}
	var x int64
	for ip, b := range m.h.Swarm().Engine().ReceivedFrom() {
		if p := m.c.byIP[ip]; p != nil && p.dc != m.n.dc {
			x += b
		}
	}
	return x
}

func (m *inproc) members(context.Context) ([]string, error) {
	var out []string
	for _, x := range m.h.Members() {
		if x.Alive {
			out = append(out, x.Name)
		}
	}
	return out, nil
}

func (m *inproc) publish(_ context.Context, ann []byte) error { return m.h.Publish(ann) }
func (m *inproc) transport() deploy.Transport                 { return m.h }
func (m *inproc) httpAddr() string                            { return m.h.Swarm().HTTPAddr() }
func (m *inproc) gossipAddr() string                          { return m.h.GossipAddr() }
func (m *inproc) close() error                                { return m.h.Close() }

// build builds src into the origin's store and prepares its torrents and
// signed announcement, as `scatter publish` does. S is the bytes of the
// release's full torrent.
func (c *cluster) build(ctx context.Context, src, version string) (res *artifact.BuildResult, ann []byte, S int64, err error) {
	b, err := fleet.Build(ctx, datadir.Data(c.orig.dir), src, c.key, artifact.BuildOptions{Repo: repo, Version: version, Message: "scatter bench"})
	if err != nil {
		return nil, nil, 0, fmt.Errorf("build %s: %w", version, err)
	}
	return b.BuildResult, b.Announcement, b.Size, nil
}

// actions are each host's local actions: a restart that does nothing, a
// check that the release tree is in place, and a TCP check of the host's
// "application" port.
func actions(app string) map[string]config.Repo {
	return map[string]config.Repo{repo: {Actions: map[string]config.Action{
		"restart": {Command: []string{"true"}, Timeout: 10 * time.Second},
		"tree":    {Command: []string{"/bin/sh", "-c", `test -d "$SCATTER_RELEASE_DIR"`}, Timeout: 10 * time.Second},
		"app":     {TCP: app, Timeout: 5 * time.Second},
	}}}
}
