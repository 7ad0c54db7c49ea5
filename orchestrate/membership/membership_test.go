package membership

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// 1. An encrypted cluster forms through one seed.
func TestClusterConverges(t *testing.T) {
	n := size(12, 20)
	base := Config{SecretKey: testKey, Label: "scatter-test", Meta: Meta{Role: "host"}}
	nodes, took := startCluster(t, n, base, nil)
	t.Logf("%d encrypted members: full view %v after the joins started", n, took)

	for _, nd := range nodes {
		ms := nd.Members()
		for i, m := range ms {
			if want := fmt.Sprintf("n%03d", i); m.Name != want {
				t.Fatalf("%s: Members()[%d] = %s, want %s (sorted, self included)", nd.Name(), i, m.Name, want)
			}
			if !m.Alive || m.Meta.Role != "host" {
				t.Fatalf("%s: member %+v", nd.Name(), m)
			}
			if got := netip.AddrPortFrom(m.Addr, uint16(m.Port)).String(); got != nodes[i].Addr() {
				t.Fatalf("%s: member %s at %s, node says %s", nd.Name(), m.Name, got, nodes[i].Addr())
			}
		}
	}
}

// 2. A broadcast reaches every other member exactly once although its
// sender shuts down right after sending it: the members relay it.
//
// Epidemic delivery is probabilistic: with the default RetransmitMult of 4
// a member misses a message with probability ~2e-4 at N=20 (see
// BenchmarkBroadcastLoss), which over this test's 400 deliveries would
// fail one run in ten. RetransmitMult 8 doubles the copies and makes a miss
// about e^-17, so a failure here means a bug, not bad luck.
func TestBroadcastReachesAllOnce(t *testing.T) {
	receivers := size(12, 20)
	nodes, _ := startCluster(t, receivers+1, Config{SecretKey: testKey, RetransmitMult: 8}, nil)
	sender, rest := nodes[receivers], nodes[:receivers]

	msg := "stage release 42"
	if err := sender.Broadcast([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	if err := sender.Shutdown(); err != nil {
		t.Fatal(err)
	}
	took := waitFor(t, 20*time.Second, "all receivers got the broadcast", func() bool {
		for _, nd := range rest {
			if nd.rec.count(msg) == 0 {
				return false
			}
		}
		return true
	})
	t.Logf("broadcast reached %d receivers in %v (sender shut down at once)", receivers, took)

	// Once no queue holds the message any more, no copy is in flight, so
	// the counts are final.
	waitQuiet(t, rest)
	var dups uint64
	for _, nd := range rest {
		if c := nd.rec.count(msg); c != 1 {
			t.Errorf("%s delivered the broadcast %d times, want 1", nd.Name(), c)
		}
		s := nd.Stats()
		if s.Relayed != 1 || s.Delivered != 1 || s.MessagesDropped != 0 {
			t.Errorf("%s stats %+v, want exactly one relayed and delivered, none dropped", nd.Name(), s)
		}
		dups += s.Duplicates
	}
	t.Logf("duplicates dropped across the cluster: %d", dups)

	if err := sender.Broadcast([]byte("late")); !errors.Is(err, ErrShutdown) {
		t.Errorf("Broadcast after Shutdown: %v, want ErrShutdown", err)
	}
	if err := rest[0].Broadcast([]byte(msg)); !errors.Is(err, ErrDuplicate) {
		t.Errorf("re-broadcast of a seen payload: %v, want ErrDuplicate", err)
	}

	// Every member broadcasts at once; everyone gets every other message once.
	for _, nd := range rest {
		if err := nd.Broadcast([]byte("from " + nd.Name())); err != nil {
			t.Fatal(err)
		}
	}
	missing := func() []string {
		var out []string
		for _, nd := range rest {
			for _, from := range rest {
				if from != nd && nd.rec.count("from "+from.Name()) == 0 {
					out = append(out, nd.Name()+"<-"+from.Name())
				}
			}
		}
		return out
	}
	defer func() {
		if t.Failed() {
			t.Logf("missing deliveries: %v", missing())
			for _, nd := range rest {
				t.Logf("%s: members %d, stats %+v", nd.Name(), len(nd.Members()), nd.Stats())
			}
		}
	}()
	took = waitFor(t, 20*time.Second, "all-to-all broadcasts delivered", func() bool {
		return len(missing()) == 0
	})
	t.Logf("%d concurrent broadcasts reached everyone in %v", len(rest), took)
	waitQuiet(t, rest)
	for _, nd := range rest {
		for _, from := range rest {
			want := 1
			if from == nd {
				want = 0 // no self-delivery
			}
			if c := nd.rec.count("from " + from.Name()); c != want {
				t.Errorf("%s got %s's message %d times, want %d", nd.Name(), from.Name(), c, want)
			}
		}
	}
}

// A member that gossip missed gets a broadcast from the push/pull repair;
// here the member is one that joins after the gossip is over.
func TestBroadcastRepair(t *testing.T) {
	base := Config{SecretKey: testKey, PushPullInterval: 200 * time.Millisecond}
	nodes, _ := startCluster(t, 4, base, nil)
	if err := nodes[1].Broadcast([]byte("before you came")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "members got the broadcast", func() bool {
		for _, nd := range nodes[2:] {
			if nd.rec.count("before you came") != 1 {
				return false
			}
		}
		return nodes[0].rec.count("before you came") == 1
	})
	waitQuiet(t, nodes)

	late := startNode(t, Config{Name: "late", SecretKey: testKey, PushPullInterval: 200 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := late.Join(ctx, []string{nodes[0].Addr()}); err != nil {
		t.Fatal(err)
	}
	took := waitFor(t, 10*time.Second, "late joiner repaired", func() bool {
		return late.rec.count("before you came") == 1
	})
	t.Logf("repair delivered the missed broadcast %v after Join", took)
	all := append(nodes, late)
	waitFullView(t, all, 10*time.Second)
	waitQuiet(t, all)
	// More exchanges carry the message again; it stays delivered once.
	start := late.Stats().StatesReceived
	waitFor(t, 10*time.Second, "more push/pull exchanges", func() bool {
		return late.Stats().StatesReceived >= start+5
	})
	if c := late.rec.count("before you came"); c != 1 {
		t.Errorf("delivered %d times", c)
	}
	if s := late.Stats(); s.Repaired != 1 || s.Relayed != 1 {
		t.Errorf("late joiner stats %+v, want one repaired", s)
	}
	for _, nd := range nodes[2:] {
		if c := nd.rec.count("before you came"); c != 1 {
			t.Errorf("%s delivered it %d times", nd.Name(), c)
		}
	}
}

// waitQuiet waits until no node has a broadcast left to transmit.
func waitQuiet(t testing.TB, nodes []*tnode) {
	t.Helper()
	waitFor(t, 20*time.Second, "broadcast queues drained", func() bool {
		for _, nd := range nodes {
			if nd.Stats().QueueDepth != 0 {
				return false
			}
		}
		return true
	})
}

// 3. A late joiner receives every member's state blob by push/pull, and
// every member receives its; a changed blob propagates.
func TestStatePushPull(t *testing.T) {
	n := size(6, 10)
	base := Config{SecretKey: testKey, PushPullInterval: 100 * time.Millisecond}
	nodes, _ := startCluster(t, n, base, nil)
	for _, nd := range nodes {
		if err := nd.SetState([]byte("holds " + nd.Name() + " v1")); err != nil {
			t.Fatal(err)
		}
	}
	late := startNode(t, Config{Name: "late", SecretKey: testKey, PushPullInterval: 100 * time.Millisecond})
	if err := late.SetState([]byte("holds late v1")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := late.Join(ctx, []string{nodes[0].Addr()}); err != nil {
		t.Fatal(err)
	}
	// The join itself is a push/pull with the seed; its OnState is queued
	// before Join returns and runs on the callback goroutine.
	waitFor(t, 5*time.Second, "seed's state from the join", func() bool {
		s, _ := late.rec.state(nodes[0].Name())
		return s == "holds n000 v1"
	})
	took := waitFor(t, 20*time.Second, "late joiner and members exchanged states", func() bool {
		for _, nd := range nodes {
			if s, _ := late.rec.state(nd.Name()); s != "holds "+nd.Name()+" v1" {
				return false
			}
			if s, _ := nd.rec.state("late"); s != "holds late v1" {
				return false
			}
		}
		return true
	})
	t.Logf("state exchange with a late joiner among %d: %v at a 100ms push/pull interval", n, took)

	changed := nodes[n/2]
	if err := changed.SetState([]byte("holds v2")); err != nil {
		t.Fatal(err)
	}
	took = waitFor(t, 20*time.Second, "changed state reached the late joiner", func() bool {
		s, _ := late.rec.state(changed.Name())
		return s == "holds v2"
	})
	t.Logf("SetState change reached one given peer in %v", took)

	big := make([]byte, defaultMaxStateSize+1)
	if err := changed.SetState(big); !errors.Is(err, ErrTooLarge) {
		t.Errorf("SetState over MaxStateSize: %v, want ErrTooLarge", err)
	}
	if late.Stats().StatesDropped != 0 {
		t.Errorf("valid states dropped: %+v", late.Stats())
	}
}

// 4. Meta travels in both directions and updates; an oversized Meta is an
// error, not a memberlist panic.
func TestMeta(t *testing.T) {
	meta := Meta{Role: "origin", DC: "eqiad", Rack: "A1", Ports: map[string]int{"bt": 6881, "http": 8080}}
	nodes, _ := startCluster(t, 3, Config{SecretKey: testKey}, func(i int, c *Config) {
		if i == 0 {
			c.Meta = meta
		}
	})
	origin, other := nodes[0], nodes[2]
	m, ok := other.Member(origin.Name())
	if !ok || !metaEqual(m.Meta, meta) {
		t.Fatalf("origin's meta at a peer: %+v, %v", m, ok)
	}
	m.Meta.Ports["bt"] = 1 // a caller's copy must not alias the node's
	if m, _ := other.Member(origin.Name()); m.Meta.Ports["bt"] != 6881 {
		t.Fatal("Member returned an aliased Ports map")
	}

	updated := Meta{Role: "origin", DC: "codfw", Ports: map[string]int{"bt": 7000}}
	if err := origin.UpdateMeta(updated); err != nil {
		t.Fatal(err)
	}
	took := waitFor(t, 10*time.Second, "updated meta visible at every peer", func() bool {
		for _, nd := range nodes {
			m, ok := nd.Member(origin.Name())
			if !ok || !metaEqual(m.Meta, updated) {
				return false
			}
		}
		return true
	})
	t.Logf("UpdateMeta visible everywhere %v after it returned", took)
	waitFor(t, 5*time.Second, "OnUpdate at a peer", func() bool {
		other.rec.mu.Lock()
		defer other.rec.mu.Unlock()
		for _, u := range other.rec.updates {
			if u.Name == origin.Name() && metaEqual(u.Meta, updated) {
				return true
			}
		}
		return false
	})

	huge := Meta{DC: strings.Repeat("x", MetaMaxSize)}
	if err := origin.UpdateMeta(huge); !errors.Is(err, ErrMetaTooLarge) {
		t.Errorf("UpdateMeta(huge): %v, want ErrMetaTooLarge", err)
	}
	if _, err := New(Config{Name: "big", BindAddr: loopbackIP(), Meta: huge}); !errors.Is(err, ErrMetaTooLarge) {
		t.Errorf("New with huge meta: %v, want ErrMetaTooLarge", err)
	}
	if m, _ := origin.Member(origin.Name()); !metaEqual(m.Meta, updated) {
		t.Errorf("refused update changed the meta: %+v", m.Meta)
	}
}

func metaEqual(a, b Meta) bool {
	if a.Role != b.Role || a.DC != b.DC || a.Rack != b.Rack || len(a.Ports) != len(b.Ports) {
		return false
	}
	for k, v := range a.Ports {
		if w, ok := b.Ports[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// 5. Garbage on every input path is dropped and counted, the node keeps
// working, and a node with another key cannot join.
func TestGarbage(t *testing.T) {
	base := Config{SecretKey: testKey, PushPullInterval: 100 * time.Millisecond}
	nodes, _ := startCluster(t, 3, base, func(i int, c *Config) {
		if i == 0 {
			c.MaxStateSize = 64
		}
	})
	target, sender, third := nodes[0], nodes[1], nodes[2]
	tm, _ := sender.Member(target.Name())
	to := tm.mlNode()

	rng := rand.New(rand.NewPCG(1, 2))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		b[0] = 0xFF // never a valid version
		return b
	}
	cfg := target.cfg
	garbage := [][]byte{
		random(1),
		random(100),
		random(5000),
		{frameVersion}, // truncated header
		{frameVersion + 1, byte(kindBroadcast), 'x'},          // unknown version
		{frameVersion, 0x7F, 'x'},                             // unknown kind
		{frameVersion, byte(kindBroadcast)},                   // empty payload
		{frameVersion, byte(kindDirect)},                      // empty payload
		appendStateFrame(nil, "n001", true, []byte("s"), nil), // state outside push/pull
		appendFrame(nil, kindBroadcast, make([]byte, cfg.MaxMessageSize+1)),
		appendFrame(nil, kindDirect, make([]byte, cfg.MaxDirectSize+1)),
	}
	for _, g := range garbage {
		if err := sender.ml.SendReliable(to, g); err != nil {
			t.Fatalf("raw send: %v", err)
		}
	}
	udp := [][]byte{random(1), random(300), {frameVersion, 0x7F}}
	for _, g := range udp {
		if err := sender.ml.SendBestEffort(to, g); err != nil {
			t.Fatalf("raw UDP send: %v", err)
		}
	}
	want := uint64(len(garbage) + len(udp))
	waitFor(t, 10*time.Second, "garbage counted as dropped", func() bool {
		return target.Stats().MessagesDropped >= want
	})

	// Below memberlist: random datagrams and streams that do not even
	// decrypt. memberlist drops these itself; the node must shrug them off.
	taddr, err := net.ResolveUDPAddr("udp", target.Addr())
	if err != nil {
		t.Fatal(err)
	}
	local := &net.UDPAddr{IP: net.ParseIP(loopbackIP())}
	uc, err := net.DialUDP("udp", local, taddr)
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		_, _ = uc.Write(random(1 + rng.IntN(1400)))
	}
	_ = uc.Close()
	for range 5 {
		tc, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: local.IP}}).Dial("tcp", target.Addr())
		if err != nil {
			t.Fatal(err)
		}
		_, _ = tc.Write(random(1 + rng.IntN(4096)))
		_ = tc.Close()
	}

	// Broken state frames, handed over the way memberlist's push/pull does,
	// and an oversized blob (target's limit is 64) through real push/pull.
	for _, g := range [][]byte{random(50), {frameVersion, byte(kindState), 1, 'x', 1, 0x80, 0}, appendFrame(nil, kindBroadcast, []byte("x"))} {
		delegate{target.Node}.MergeRemoteState(g, false)
	}
	if err := third.SetState(make([]byte, 65)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "bad states counted as dropped", func() bool {
		return target.Stats().StatesDropped >= 4
	})
	if _, ok := target.rec.state(third.Name()); ok {
		t.Error("oversized state was delivered")
	}

	// Still working: a broadcast and a direct message get through.
	if err := third.Broadcast([]byte("still alive?")); err != nil {
		t.Fatal(err)
	}
	if err := sender.SendTo(target.Name(), []byte("direct")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "target still receives", func() bool {
		return target.rec.count("still alive?") == 1 && target.rec.count("direct") == 1
	})
	if got := len(target.Members()); got != 3 {
		t.Errorf("target sees %d members, want 3", got)
	}
	s := target.Stats()
	t.Logf("target stats after garbage: %+v", s)
	if s.MessagesDropped != want {
		t.Errorf("MessagesDropped = %d, want %d", s.MessagesDropped, want)
	}

	// The sending side refuses bad input with errors.
	for _, c := range []struct {
		name string
		err  error
		want error
	}{
		{"SendTo too large", sender.SendTo(target.Name(), make([]byte, cfg.MaxDirectSize+1)), ErrTooLarge},
		{"SendTo empty", sender.SendTo(target.Name(), nil), ErrEmpty},
		{"SendTo unknown", sender.SendTo("nobody", []byte("x")), ErrUnknownMember},
		{"Broadcast too large", sender.Broadcast(make([]byte, cfg.MaxMessageSize+1)), ErrTooLarge},
		{"Broadcast empty", sender.Broadcast(nil), ErrEmpty},
	} {
		if !errors.Is(c.err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, c.err, c.want)
		}
	}

	// Another key, or another label, cannot join.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, c := range []Config{
		{Name: "intruder-key", SecretKey: []byte("fedcba9876543210fedcba9876543210")},
		{Name: "no-key"},
		{Name: "intruder-label", SecretKey: testKey, Label: "other-cluster"},
	} {
		x := startNode(t, c)
		if _, err := x.Join(ctx, []string{target.Addr()}); err == nil {
			t.Errorf("%s joined the cluster", c.Name)
		}
		if got := len(x.Members()); got != 1 {
			t.Errorf("%s sees %d members", c.Name, got)
		}
		if _, ok := target.Member(c.Name); ok {
			t.Errorf("%s appears in the cluster", c.Name)
		}
	}
	if got := len(target.Members()); got != 3 {
		t.Errorf("target sees %d members after intrusion attempts, want 3", got)
	}
}

// Join gives up when its context ends, although memberlist's Join would
// wait for TCPTimeout.
func TestJoinRespectsContext(t *testing.T) {
	// A peer that accepts connections and never answers.
	ln, err := net.Listen("tcp", net.JoinHostPort(loopbackIP(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	var conns sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			t.Cleanup(func() { _ = c.Close() })
			conns.Done()
		}
	}()

	nd := startNode(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = nd.Join(ctx, []string{ln.Addr().String()})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Join: %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Join returned after %v", d)
	}
	cctx, ccancel := context.WithCancel(context.Background())
	ccancel()
	if _, err := nd.Join(cctx, []string{ln.Addr().String()}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Join with cancelled ctx: %v", err)
	}
	if _, err := nd.Join(context.Background(), nil); err == nil {
		t.Fatal("Join without seeds succeeded")
	}
}

// Leave is seen by the others; methods after Leave and Shutdown return
// errors, never panic.
func TestLifecycle(t *testing.T) {
	nodes, _ := startCluster(t, 3, Config{}, nil)
	leaver := nodes[2]
	if err := leaver.Broadcast([]byte("bye")); err != nil {
		t.Fatal(err)
	}
	if err := leaver.Leave(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "others see the leave", func() bool {
		for _, nd := range nodes[:2] {
			if _, ok := nd.Member(leaver.Name()); ok {
				return false
			}
		}
		return true
	})
	for _, nd := range nodes[:2] {
		if nd.rec.count("bye") != 1 {
			t.Errorf("%s missed the broadcast sent before Leave", nd.Name())
		}
		nd.rec.mu.Lock()
		var left []Member
		for _, m := range nd.rec.leaves {
			if m.Name == leaver.Name() {
				left = append(left, m)
			}
		}
		nd.rec.mu.Unlock()
		if len(left) != 1 || left[0].Alive {
			t.Errorf("%s OnLeave for the leaver: %+v", nd.Name(), left)
		}
	}
	if err := leaver.Leave(time.Second); err != nil {
		t.Errorf("second Leave: %v", err)
	}
	if err := leaver.Broadcast([]byte("x")); !errors.Is(err, ErrLeft) {
		t.Errorf("Broadcast after Leave: %v", err)
	}
	if err := leaver.UpdateMeta(Meta{}); !errors.Is(err, ErrLeft) {
		t.Errorf("UpdateMeta after Leave: %v", err)
	}
	if err := leaver.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := leaver.Shutdown(); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
	if err := leaver.Leave(time.Second); !errors.Is(err, ErrShutdown) {
		t.Errorf("Leave after Shutdown: %v", err)
	}
	for name, err := range map[string]error{
		"SetState":   leaver.SetState([]byte("x")),
		"UpdateMeta": leaver.UpdateMeta(Meta{}),
		"SendTo":     leaver.SendTo(nodes[0].Name(), []byte("x")),
	} {
		if !errors.Is(err, ErrShutdown) {
			t.Errorf("%s after Shutdown: %v", name, err)
		}
	}
	if _, err := leaver.Join(context.Background(), []string{nodes[0].Addr()}); !errors.Is(err, ErrShutdown) {
		t.Errorf("Join after Shutdown: %v", err)
	}
}

// Callbacks run outside memberlist's locks, so they may call back into the
// node, even Shutdown.
func TestCallbacksMayCallNode(t *testing.T) {
	a := startNode(t, Config{})
	done := make(chan error, 1)
	b := startNode(t, Config{})
	b.rec.mu.Lock()
	b.rec.onMsg = func(msg []byte) {
		// UpdateMeta takes memberlist's node lock; Shutdown stops the
		// dispatcher that is running this very callback.
		err := b.UpdateMeta(Meta{Role: "host"})
		if err == nil {
			err = b.Shutdown()
		}
		done <- err
	}
	b.rec.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := b.Join(ctx, []string{a.Addr()}); err != nil {
		t.Fatal(err)
	}
	// The seed answers a join before it merges the joiner's state.
	waitFor(t, 10*time.Second, "a sees b", func() bool { _, ok := a.Member(b.Name()); return ok })
	if err := a.SendTo(b.Name(), []byte("go")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("callback deadlocked")
	}
}

func TestConfigValidate(t *testing.T) {
	ok := Config{Name: "a", BindAddr: "127.0.0.1"}
	if err := ok.Validate(); err != nil {
		t.Fatalf("minimal config: %v", err)
	}
	for name, mut := range map[string]func(*Config){
		"no name":        func(c *Config) { c.Name = "" },
		"long name":      func(c *Config) { c.Name = strings.Repeat("n", 256) },
		"no addr":        func(c *Config) { c.BindAddr = "" },
		"bad addr":       func(c *Config) { c.BindAddr = "localhost" },
		"wildcard addr":  func(c *Config) { c.BindAddr = "0.0.0.0" },
		"bad port":       func(c *Config) { c.BindPort = 70000 },
		"bad key":        func(c *Config) { c.SecretKey = []byte("short") },
		"long label":     func(c *Config) { c.Label = strings.Repeat("l", 256) },
		"huge meta":      func(c *Config) { c.Meta.Rack = strings.Repeat("r", 600) },
		"neg interval":   func(c *Config) { c.GossipInterval = -time.Second },
		"neg size":       func(c *Config) { c.MaxStateSize = -1 },
		"msg over udp":   func(c *Config) { c.MaxMessageSize = MaxBroadcastLimit("") + 1 },
		"msg over label": func(c *Config) { c.Label = strings.Repeat("l", 255); c.MaxMessageSize = 1200 },
		"state too big":  func(c *Config) { c.MaxStateSize = 30 << 20 },
		"state+repair":   func(c *Config) { c.MaxStateSize = 16 << 20; c.RepairBytes = 8 << 20 },
		"repair>dedupe":  func(c *Config) { c.RepairWindow = time.Hour },
	} {
		c := ok
		mut(&c)
		before := fmt.Sprintf("%+v", c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: Validate accepted %+v", name, c)
		}
		if after := fmt.Sprintf("%+v", c); after != before {
			t.Errorf("%s: Validate changed the config", name)
		}
		if _, err := New(c); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
	c := ok
	c.MaxMessageSize = MaxBroadcastLimit("")
	if err := c.Validate(); err != nil {
		t.Errorf("largest broadcast size: %v", err)
	}
}

func TestSeenSet(t *testing.T) {
	now := time.Unix(0, 0)
	s := newSeenSet(time.Minute, 3, func() time.Time { return now })
	id := func(i int) msgID { return idOf([]byte{byte(i)}) }
	if !s.add(id(1)) || s.add(id(1)) {
		t.Fatal("first add must be new, second a duplicate")
	}
	now = now.Add(59 * time.Second)
	if s.add(id(1)) {
		t.Fatal("forgotten before the window ended")
	}
	now = now.Add(time.Second)
	if !s.add(id(1)) {
		t.Fatal("remembered after the window")
	}
	for i := 2; i <= 4; i++ {
		s.add(id(i))
	}
	if s.len() != 3 {
		t.Fatalf("len %d, cap 3", s.len())
	}
	if !s.add(id(1)) {
		t.Fatal("oldest entry survived the cap")
	}
	if s.add(id(4)) {
		t.Fatal("newest entry evicted")
	}
	// Many entries: bounded and compacted.
	big := newSeenSet(time.Hour, 1000, func() time.Time { return now })
	for i := range 100_000 {
		big.add(idOf(fmt.Appendf(nil, "%d", i)))
	}
	if big.len() != 1000 || len(big.order)-big.head != 1000 || cap(big.order) > 8000 {
		t.Fatalf("len %d, order %d/%d head %d", big.len(), len(big.order), cap(big.order), big.head)
	}
}

func TestRecentLog(t *testing.T) {
	now := time.Unix(0, 0)
	r := newRecentLog(time.Minute, 3*entryCost([]byte("aaaa")), func() time.Time { return now })
	for _, p := range []string{"aaaa", "bbbb", "cccc", "dddd"} {
		r.add([]byte(p))
		now = now.Add(10 * time.Second)
	}
	got := r.snapshot()
	if len(got) != 3 || string(got[0]) != "bbbb" || string(got[2]) != "dddd" {
		t.Fatalf("byte budget: %q", got)
	}
	now = now.Add(35 * time.Second) // bbbb is 65s old, cccc 55s
	if got := r.snapshot(); len(got) != 2 || string(got[0]) != "cccc" {
		t.Fatalf("window: %q", got)
	}
	now = now.Add(time.Hour)
	if got := r.snapshot(); len(got) != 0 || r.bytes != 0 {
		t.Fatalf("all expired: %q, %d bytes", got, r.bytes)
	}
	for i := range 10_000 {
		r.add(fmt.Appendf(nil, "%04d", i))
	}
	if got := r.snapshot(); len(got) != 3 || cap(r.entries) > 2048 {
		t.Fatalf("churn: %d live, cap %d", len(got), cap(r.entries))
	}
}

func TestLogAdapter(t *testing.T) {
	w := &lockedBuffer{}
	startNode(t, Config{Log: slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if out := w.String(); !strings.Contains(out, "ml_level=DEBUG") || !strings.Contains(out, "component=memberlist") {
		t.Fatalf("memberlist log lines not routed: %q", out)
	}
}

// A frame of a format version this build does not read (say, from a newer
// scatter) is refused whole, never handed to OnMessage or OnState half
// understood, and the node says so: a warning naming the version, once,
// and the count and versions in Stats, which `scatter status` shows.
func TestFutureFormatIsRefusedAndSaid(t *testing.T) {
	var logs lockedBuffer
	base := Config{SecretKey: testKey, PushPullInterval: 100 * time.Millisecond}
	nodes, _ := startCluster(t, 2, base, func(i int, c *Config) {
		if i == 0 {
			c.Log = slog.New(slog.NewTextHandler(&logs, nil))
		}
	})
	target, sender := nodes[0], nodes[1]
	tm, _ := sender.Member(target.Name())
	future := []byte{frameVersion + 1, byte(kindBroadcast), 'n', 'e', 'w'}
	for range 3 {
		if err := sender.ml.SendReliable(tm.mlNode(), future); err != nil {
			t.Fatal(err)
		}
	}
	// A state frame of the future too, as push/pull hands it over.
	target.receiveState([]byte{frameVersion + 1, byte(kindState), 1, 'x', 0, 0, 0}, false)
	waitFor(t, 10*time.Second, "future frames refused", func() bool { return target.Stats().FormatRefused >= 4 })
	st := target.Stats()
	if !slices.Equal(st.FormatVersions, []int{frameVersion + 1}) {
		t.Errorf("FormatVersions = %v, want [%d]", st.FormatVersions, frameVersion+1)
	}
	if target.rec.count("new") != 0 || target.rec.count("\x01new") != 0 {
		t.Errorf("a frame of an unknown format reached OnMessage")
	}
	out := logs.String()
	if n := strings.Count(out, "unknown format version"); n != 1 || !strings.Contains(out, "version=2") || !strings.Contains(out, "level=WARN") {
		t.Errorf("want one warning naming version 2, got %d:\n%s", n, out)
	}
	// The same node still reads current frames.
	if err := sender.Broadcast([]byte("current")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "a current broadcast delivered", func() bool { return target.rec.count("current") == 1 })
}
