// Package hosttest starts clusters of real hosts (package host) in one
// process for tests and benchmarks: each host on its own loopback address
// (anacrolix bans by IP), real gossip, real swarm, real stores in
// temporary directories, all closed by t.Cleanup.
package hosttest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"scatter/artifact"
	"scatter/artifact/datadir"
	"scatter/orchestrate/config"
	"scatter/orchestrate/fleet"
	"scatter/orchestrate/host"
)

// Cluster is a set of hosts joined through the first one started.
type Cluster struct {
	T     testing.TB
	Key   ed25519.PrivateKey // the deploy key
	CKey  []byte             // the gossip cluster key
	Hosts map[string]*host.Host
	Dirs  map[string]string // data directories by host name
	// Repos, if set, gives each host its actions (dir is its data dir).
	Repos func(name, dir string) map[string]config.Repo
	// Configure, if set, adjusts each host's config before it starts.
	Configure func(*host.Config)
	seed      string
	logs      *logBuffer
}

// New returns an empty cluster with fresh keys.
func New(t testing.TB) *Cluster {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	ckey := make([]byte, 32)
	rand.Read(ckey)
	c := &Cluster{T: t, Key: key, CKey: ckey, Hosts: map[string]*host.Host{}, Dirs: map[string]string{}, logs: &logBuffer{}}
	// Registered first, so it runs after every host has closed.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("hosts' logs (info and above):\n%s", c.logs)
		}
	})
	return c
}

// logBuffer keeps the hosts' logs, printed if the test fails: a failure
// seen once in CI must carry what the hosts said. It keeps the last
// logKeep bytes.
type logBuffer struct {
	mu  sync.Mutex
	buf []byte
}

const logKeep = 8 << 20

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > logKeep {
		b.buf = append(b.buf[:0], b.buf[len(b.buf)-logKeep/2:]...)
	}
	return len(p), nil
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

// Start starts (or restarts, keeping its data directory) a host on
// 127.0.0.<ip>.
func (c *Cluster) Start(name string, ip int, origin bool) *host.Host {
	c.T.Helper()
	if c.Dirs[name] == "" {
		c.Dirs[name] = filepath.Join(c.T.TempDir(), name)
	}
	cfg := host.Config{
		Name: name, DataDir: c.Dirs[name], PubKey: c.Key.Public().(ed25519.PublicKey), Origin: origin,
		BindAddr: fmt.Sprintf("127.0.0.%d", ip), ClusterKey: c.CKey, Label: "test",
		PushPullInterval: time.Second,
		Log:              slog.New(slog.NewTextHandler(c.logs, nil)),
	}
	if c.Repos != nil {
		cfg.Repos = c.Repos(name, c.Dirs[name])
	}
	if c.Configure != nil {
		c.Configure(&cfg)
	}
	if c.seed != "" {
		cfg.Join = []string{c.seed}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	h, err := host.Start(ctx, cfg)
	if err != nil {
		c.T.Fatal(err)
	}
	if c.seed == "" {
		c.seed = h.GossipAddr()
	}
	c.Hosts[name] = h
	c.T.Cleanup(func() {
		if c.T.Failed() {
			// Before it closes: which connection waits on what.
			c.T.Logf("%s's engine:\n%s", name, h.Swarm().Engine().Status())
		}
		h.Close()
	})
	return h
}

// Publish builds src into the origin's store for repo and publishes it
// through the host named "origin", as `scatter publish` does.
func (c *Cluster) Publish(repo, src, version string) *artifact.Signed {
	c.T.Helper()
	b, err := fleet.Build(context.Background(), datadir.Data(c.Dirs["origin"]), src, c.Key, artifact.BuildOptions{Repo: repo, Version: version})
	if err != nil {
		c.T.Fatal(err)
	}
	if err := c.Hosts["origin"].Publish(b.Announcement); err != nil {
		c.T.Fatal(err)
	}
	return b.Signed
}

// WaitFor polls ok every 50 ms until it holds, failing the test after
// timeout.
func (c *Cluster) WaitFor(what string, timeout time.Duration, ok func() bool) {
	c.T.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			c.T.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WaitMembers waits until every host sees n members.
func (c *Cluster) WaitMembers(n int, timeout time.Duration) {
	c.T.Helper()
	c.WaitFor(fmt.Sprintf("%d members everywhere", n), timeout, func() bool {
		for _, h := range c.Hosts {
			if len(h.Members()) != n {
				return false
			}
		}
		return true
	})
}
