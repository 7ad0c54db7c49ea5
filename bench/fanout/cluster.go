package fanout

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"sync"
	"time"

	"scatter/artifact"
	"scatter/orchestrate/config"
	"scatter/orchestrate/host"
	"scatter/swarm"
)

const repo = "mw"

// node is one host of the cluster, running or not.
type node struct {
	name string
	ip   string
	dir  string
	up   int64  // upload cap
	dc   string // 2dc only
	note string
	h    *host.Host
	app  net.Listener // what the TCP health check dials
	// banked holds the counters of earlier incarnations (churn).
	banked  swarm.Status
	bankedX int64
}

// cluster is the origin and the hosts, all in this process.
type cluster struct {
	key   ed25519.PrivateKey
	ckey  []byte
	dir   string
	seed  string
	orig  *node
	hosts []*node
	byIP  map[netip.Addr]*node
	mu    sync.Mutex
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
	n := &node{name: name, ip: addr(i), dir: filepath.Join(c.dir, "hosts", name), up: up}
	c.byIP[netip.MustParseAddr(n.ip)] = n
	return n
}

// start starts (or restarts, keeping its data directory) a node.
func (c *cluster) start(ctx context.Context, n *node, origin bool) error {
	if n.app == nil && !origin {
		ln, err := net.Listen("tcp", net.JoinHostPort(n.ip, "0"))
		if err != nil {
			return fmt.Errorf("start %s: app listener: %w", n.name, err)
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
		BindAddr: n.ip, ClusterKey: c.ckey, Label: "scatter-bench", DC: n.dc,
		UploadRate: n.up,
	}
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
		return fmt.Errorf("start %s: %w", n.name, err)
	}
	if c.seed == "" {
		c.seed = h.GossipAddr()
	}
	c.mu.Lock()
	n.h = h
	c.mu.Unlock()
	return nil
}

// stop closes a node's host, keeping what it counted so far.
func (c *cluster) stop(n *node) error {
	c.mu.Lock()
	h := n.h
	n.h = nil
	c.mu.Unlock()
	if h == nil {
		return nil
	}
	st := h.Swarm().Status()
	n.banked.ReceivedFromOrigin += st.ReceivedFromOrigin
	n.banked.ReceivedFromPeers += st.ReceivedFromPeers
	n.banked.Uploaded += st.Uploaded
	n.bankedX += c.crossDC(n, h)
	return h.Close()
}

func (c *cluster) running(n *node) *host.Host {
	c.mu.Lock()
	defer c.mu.Unlock()
	return n.h
}

// counters are a node's cumulative counters over all its incarnations.
type counters struct {
	fromOrigin, fromPeers, uploaded, crossDC int64
}

func (c *cluster) counters(n *node) counters {
	k := counters{n.banked.ReceivedFromOrigin, n.banked.ReceivedFromPeers, n.banked.Uploaded, n.bankedX}
	if h := c.running(n); h != nil {
		st := h.Swarm().Status()
		k.fromOrigin += st.ReceivedFromOrigin
		k.fromPeers += st.ReceivedFromPeers
		k.uploaded += st.Uploaded
		k.crossDC += c.crossDC(n, h)
	}
	return k
}

// crossDC is what h received from nodes in another datacenter, from its
// engine's per-IP counters (peer wire and stripes).
func (c *cluster) crossDC(n *node, h *host.Host) int64 {
	if n.dc == "" {
		return 0
	}
	var x int64
	for ip, b := range h.Swarm().Engine().ReceivedFrom() {
		if p := c.byIP[ip]; p != nil && p.dc != n.dc {
			x += b
		}
	}
	return x
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
}

// waitMembers waits until every running host sees n live members.
func (c *cluster) waitMembers(ctx context.Context, want int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ok := true
		for _, n := range append([]*node{c.orig}, c.hosts...) {
			h := c.running(n)
			if h == nil {
				continue
			}
			alive := 0
			for _, m := range h.Members() {
				if m.Alive {
					alive++
				}
			}
			if alive != want {
				ok = false
				break
			}
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gossip: not every host sees %d members after %s", want, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// build builds src into the origin's store and prepares its torrents and
// signed announcement, as `scatter publish` does.
// S is the bytes of the release's full torrent.
func (c *cluster) build(ctx context.Context, src, version string) (res *artifact.BuildResult, ann []byte, S int64, err error) {
	st, err := artifact.OpenStore(filepath.Join(c.orig.dir, repo), nil)
	if err != nil {
		return nil, nil, 0, err
	}
	defer st.Close()
	res, err = artifact.Build(ctx, st, src, c.key, artifact.BuildOptions{Repo: repo, Version: version, Message: "scatter bench"})
	if err != nil {
		return nil, nil, 0, fmt.Errorf("build %s: %w", version, err)
	}
	ann, err = swarm.Prepare(c.orig.dir, st, res.Signed, c.key)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("prepare %s: %w", version, err)
	}
	full, err := swarm.MakeTorrent(st, res.Signed, nil, swarm.Full)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("prepare %s: %w", version, err)
	}
	return res, ann, full.Layout.Length, nil
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
