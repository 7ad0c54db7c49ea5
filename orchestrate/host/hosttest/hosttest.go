// Package hosttest starts clusters of real hosts (package host) in one
// process for tests and benchmarks: each host on its own loopback address
// (anacrolix bans by IP), real gossip, real swarm, real stores in
// temporary directories, all closed by t.Cleanup.
//
// Hosts are enrolled as an operator's config management would: each
// host's key is generated before its first start and written to its data
// directory, and the deploy key signs a roster naming it, which the new
// host starts with and every running host is handed (SyncRoster).
// StartPending starts a host the roster does not name, for tests of
// enrolment.
package hosttest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"scatter/artifact"
	"scatter/artifact/datadir"
	"scatter/orchestrate/config"
	"scatter/orchestrate/fleet"
	"scatter/orchestrate/host"
	"scatter/orchestrate/trust"
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
	// HostKeys are the hosts' own keys, generated before their first
	// start.
	HostKeys  map[string]ed25519.PrivateKey
	roster    *trust.Roster
	rosterRaw []byte
	seed      string
	logs      *logBuffer
}

// New returns an empty cluster with fresh keys.
func New(t testing.TB) *Cluster {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	ckey := make([]byte, 32)
	rand.Read(ckey)
	c := &Cluster{T: t, Key: key, CKey: ckey, Hosts: map[string]*host.Host{}, Dirs: map[string]string{}, logs: &logBuffer{},
		HostKeys: map[string]ed25519.PrivateKey{}, roster: &trust.Roster{}}
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

// Start starts (or restarts, keeping its data directory) an enrolled host
// on 127.0.0.<ip>: the roster names it with its key and labels (and the
// origin role if origin) before it starts.
func (c *Cluster) Start(name string, ip int, origin bool) *host.Host {
	c.T.Helper()
	return c.start(name, ip, origin, true)
}

// StartPending starts (or restarts) a host that the roster does not name:
// it creates its own key and gossips, pending, until Enroll.
func (c *Cluster) StartPending(name string, ip int) *host.Host {
	c.T.Helper()
	return c.start(name, ip, false, false)
}

func (c *Cluster) start(name string, ip int, origin, enrol bool) *host.Host {
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
	if enrol {
		c.enrolConfig(cfg, origin)
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
	if enrol {
		// The deploy host learns of each host at once, as from `scatter
		// hosts add`; the others by gossip, or SyncRoster.
		for _, first := range []string{"origin", name} {
			if o := c.Hosts[first]; o != nil {
				if err := o.SetRoster(c.rosterRaw); err != nil && !errors.Is(err, trust.ErrOlderRoster) {
					c.T.Fatalf("hand roster to %s: %v", first, err)
				}
			}
		}
	}
	c.T.Cleanup(func() {
		if c.T.Failed() {
			// Before it closes: which connection waits on what.
			c.T.Logf("%s's engine:\n%s", name, h.Swarm().Engine().Status())
		}
		h.Close()
	})
	return h
}

// enrolConfig puts a host on the roster before its first start: its key
// pre-generated into its data directory, its labels as the operator
// vouches for them, and the roster saved where the host reads it.
func (c *Cluster) enrolConfig(cfg host.Config, origin bool) {
	c.T.Helper()
	dd := datadir.Data(cfg.DataDir)
	key := c.HostKeys[cfg.Name]
	if key == nil {
		_, key, _ = ed25519.GenerateKey(rand.Reader)
		if err := trust.WriteHostKey(dd.HostKey(), key); err != nil {
			c.T.Fatal(err)
		}
		c.HostKeys[cfg.Name] = key
	}
	e := trust.Entry{Name: cfg.Name, Key: key.Public().(ed25519.PublicKey), DC: cfg.DC, Rack: cfg.Rack}
	if origin {
		e.Role = trust.RoleOrigin
	}
	if old, ok := c.roster.Lookup(cfg.Name); !ok || !old.Key.Equal(e.Key) || old.DC != e.DC || old.Rack != e.Rack || old.Role != e.Role {
		c.roster.Put(e)
		c.resign()
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		c.T.Fatal(err)
	}
	// A restarted host may hold a newer roster than the helper's (a test
	// signed one itself): never go back.
	book, err := trust.NewBook(c.Key.Public().(ed25519.PublicKey), dd.Roster())
	if err == nil {
		_, err = book.Offer(c.rosterRaw)
	}
	if err != nil && !errors.Is(err, trust.ErrOlderRoster) {
		c.T.Fatal(err)
	}
}

func (c *Cluster) resign() {
	c.T.Helper()
	c.roster = trust.Next(c.roster, time.Now())
	raw, err := trust.SignRoster(c.roster, c.Key)
	if err != nil {
		c.T.Fatal(err)
	}
	c.rosterRaw = raw
}

// RosterBytes returns the current signed roster.
func (c *Cluster) RosterBytes() []byte { return c.rosterRaw }

// Enroll puts running hosts on the roster with the keys they advertise
// (trust on first use, as `scatter hosts approve` does) and hands the
// roster to every running host.
func (c *Cluster) Enroll(names ...string) {
	c.T.Helper()
	for _, n := range names {
		h := c.Hosts[n]
		if h == nil {
			c.T.Fatalf("enroll %s: not started", n)
		}
		c.roster.Put(trust.Entry{Name: n, Key: h.HostKey()})
	}
	c.resign()
	c.SyncRoster()
}

// Add puts an entry on the roster (a host enrolled from config
// management, or a hostile member the test enrols) and hands the roster to
// every running host.
func (c *Cluster) Add(e trust.Entry) {
	c.T.Helper()
	c.roster.Put(e)
	c.resign()
	c.SyncRoster()
}

// Revoke takes hosts off the roster and hands it to every running host.
func (c *Cluster) Revoke(names ...string) {
	c.T.Helper()
	for _, n := range names {
		c.roster.Remove(n)
	}
	c.resign()
	c.SyncRoster()
}

// SyncRoster hands the current roster to every running host, as gossip
// would a little later.
func (c *Cluster) SyncRoster() {
	c.T.Helper()
	if c.rosterRaw == nil {
		return
	}
	for name, h := range c.Hosts {
		if err := h.SetRoster(c.rosterRaw); err != nil && !errors.Is(err, trust.ErrOlderRoster) {
			c.T.Fatalf("hand roster to %s: %v", name, err)
		}
	}
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

// WaitMembers hands every host the current roster and waits until every
// host sees n members.
func (c *Cluster) WaitMembers(n int, timeout time.Duration) {
	c.T.Helper()
	c.SyncRoster()
	c.WaitFor(fmt.Sprintf("%d members everywhere", n), timeout, func() bool {
		for _, h := range c.Hosts {
			if len(h.Members()) != n {
				return false
			}
		}
		return true
	})
}
