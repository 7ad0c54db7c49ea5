package membership

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testKey is the cluster key of the tests' encrypted clusters.
var testKey = []byte("0123456789abcdef0123456789abcdef")

// ipCounter hands every node of the test binary its own loopback address,
// 127.0.0.10 upward (then 127.0.1.10 …), so that nodes of different tests
// never share one even if tests run in parallel.
var ipCounter atomic.Int64

func loopbackIP() string {
	i := ipCounter.Add(1) - 1
	return fmt.Sprintf("127.0.%d.%d", i/240, 10+i%240)
}

// recorder collects a node's callbacks.
type recorder struct {
	mu      sync.Mutex
	msgs    map[string]int    // payload -> deliveries
	states  map[string]string // from -> latest blob
	nstates int
	joins   []Member
	leaves  []Member
	updates []Member
	onMsg   func(msg []byte) // optional extra hook
}

func newRecorder() *recorder {
	return &recorder{msgs: map[string]int{}, states: map[string]string{}}
}

func (r *recorder) hook(c *Config) {
	c.OnMessage = func(msg []byte) {
		r.mu.Lock()
		r.msgs[string(msg)]++
		hook := r.onMsg
		r.mu.Unlock()
		if hook != nil {
			hook(msg)
		}
	}
	c.OnState = func(from string, state []byte) {
		r.mu.Lock()
		r.states[from] = string(state)
		r.nstates++
		r.mu.Unlock()
	}
	c.OnJoin = func(m Member) { r.mu.Lock(); r.joins = append(r.joins, m); r.mu.Unlock() }
	c.OnLeave = func(m Member) { r.mu.Lock(); r.leaves = append(r.leaves, m); r.mu.Unlock() }
	c.OnUpdate = func(m Member) { r.mu.Lock(); r.updates = append(r.updates, m); r.mu.Unlock() }
}

func (r *recorder) count(msg string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.msgs[msg]
}

func (r *recorder) state(from string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.states[from]
	return s, ok
}

type tnode struct {
	*Node
	rec *recorder
}

func testLogger() *slog.Logger {
	if os.Getenv("MEMBERSHIP_DEBUG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// startNode starts a node on a fresh loopback address, port 0, recording
// its callbacks, and shuts it down when the test ends.
func startNode(t testing.TB, cfg Config) *tnode {
	t.Helper()
	if cfg.BindAddr == "" {
		cfg.BindAddr = loopbackIP()
	}
	if cfg.Name == "" {
		cfg.Name = "node-" + cfg.BindAddr
	}
	if cfg.Log == nil {
		cfg.Log = testLogger()
	}
	rec := newRecorder()
	rec.hook(&cfg)
	n, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%s): %v", cfg.Name, err)
	}
	t.Cleanup(func() { _ = n.Shutdown() })
	return &tnode{Node: n, rec: rec}
}

// startCluster starts n nodes, configured by base and then tweak, joins
// every one to the first concurrently and waits until every node sees all
// n. It returns the nodes and how long convergence took after the joins.
//
// Unless base sets it, the push/pull interval is 2s instead of 30s:
// memberlist spreads a join by gossip that, like user broadcasts, misses a
// given member with probability about e^-(4·⌈log10(N+1)⌉) (measured ~2e-4
// at N=20), and only push/pull repairs such a miss.
func startCluster(t testing.TB, n int, base Config, tweak func(i int, c *Config)) ([]*tnode, time.Duration) {
	t.Helper()
	if base.PushPullInterval == 0 {
		base.PushPullInterval = 2 * time.Second
	}
	nodes := make([]*tnode, n)
	for i := range nodes {
		c := base
		c.Name = fmt.Sprintf("n%03d", i)
		if tweak != nil {
			tweak(i, &c)
		}
		nodes[i] = startNode(t, c)
	}
	start := time.Now()
	joinAll(t, nodes[1:], nodes[0].Addr())
	waitFullView(t, nodes, 20*time.Second)
	return nodes, time.Since(start)
}

func joinAll(t testing.TB, nodes []*tnode, seed string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errs := make(chan error, len(nodes))
	for _, nd := range nodes {
		go func() {
			_, err := nd.Join(ctx, []string{seed})
			errs <- err
		}()
	}
	for range nodes {
		if err := <-errs; err != nil {
			t.Fatalf("join: %v", err)
		}
	}
}

func waitFullView(t testing.TB, nodes []*tnode, timeout time.Duration) {
	t.Helper()
	defer func() {
		if t.Failed() {
			for _, nd := range nodes {
				names := []string{}
				for _, m := range nd.Members() {
					names = append(names, m.Name)
				}
				t.Logf("%s at %s: ours %d, memberlist %d: %v", nd.Name(), nd.Addr(), len(names), nd.ml.NumMembers(), names)
			}
		}
	}()
	waitFor(t, timeout, "every node sees every node", func() bool {
		for _, nd := range nodes {
			if len(nd.Members()) != len(nodes) {
				return false
			}
		}
		return true
	})
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for: %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

func size(short, long int) int {
	if testing.Short() {
		return short
	}
	return long
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
