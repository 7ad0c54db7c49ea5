package membership

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func member(name, addr string) Member {
	ap := netip.MustParseAddrPort(addr)
	return Member{Name: name, Addr: ap.Addr(), Port: int(ap.Port()), Alive: true}
}

// The rejoin policy, step by step: inputs are the member list and the
// clock, outputs the joins it asks for.
func TestRejoinPolicy(t *testing.T) {
	t0 := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	self := member("me", "10.0.0.1:7946")
	seed := "10.0.0.2:7946"
	known := []Known{
		{Name: "a", Addr: "10.0.0.3:7946", Seen: t0.Add(-time.Hour)},
		{Name: "b", Addr: "10.0.0.4:7946", Seen: t0.Add(-time.Hour)},
		{Name: "old", Addr: "10.0.0.9:7946", Seen: t0.Add(-100 * time.Hour)}, // past ForgetAfter
		{Name: "me", Addr: "10.0.0.1:7946", Seen: t0},                        // never ourselves
	}
	p := newRejoinPolicy("me", "10.0.0.1:7946", []string{seed}, known, time.Second, 5*time.Second, 2*time.Minute, 72*time.Hour, t0)
	if got := names(p.remembered()); got != "a b" {
		t.Fatalf("remembered %q, want the recent ones only", got)
	}

	// Alone at start: the seeds and the remembered members.
	a, ok := p.due(t0, []Member{self})
	if !ok || a.reason != "alone" || strings.Join(a.addrs, " ") != seed+" 10.0.0.3:7946 10.0.0.4:7946" {
		t.Fatalf("start: %v %+v", ok, a)
	}
	// Nobody answers: 1 s, 2 s, 4 s, then 5 s at most between attempts.
	now := t0
	var waits []time.Duration
	for range 5 {
		p.result(now, a, nil)
		waits = append(waits, p.next.Sub(now))
		if _, ok := p.due(p.next.Add(-time.Millisecond), []Member{self}); ok {
			t.Fatal("attempt before the backoff ran out")
		}
		now = p.next
		if a, ok = p.due(now, []Member{self}); !ok {
			t.Fatal("no attempt after the backoff")
		}
	}
	if fmt.Sprint(waits) != "[2s 4s 5s 5s 5s]" {
		t.Fatalf("backoff %v", waits)
	}

	// The seed answers and brings a and b: nothing is missing, nothing to
	// do until the periodic seed join.
	p.result(now, a, a.addrs)
	all := []Member{self, member("seed", seed), member("a", "10.0.0.3:7946"), member("b", "10.0.0.4:7946")}
	now = now.Add(time.Second)
	p.observe(now, all)
	if a, ok := p.due(now, all); ok {
		t.Fatalf("all present, yet %+v", a)
	}
	if a, ok := p.due(now.Add(3*time.Minute), all); !ok || a.reason != "periodic" || !a.seeds {
		t.Fatalf("periodic: %v %+v", ok, a)
	}

	// The seed drops out of the member list (a partition, or it restarted
	// and the cluster forgot it): join it again at once, and keep at it.
	now = now.Add(2 * time.Second)
	rest := []Member{self, member("a", "10.0.0.3:7946"), member("b", "10.0.0.4:7946")}
	p.observe(now, rest)
	a, ok = p.due(now, rest)
	if !ok || !strings.HasPrefix(a.reason, "seed not a member") || strings.Join(a.addrs, " ") != seed+" 10.0.0.2:7946" && strings.Join(a.addrs, " ") != seed {
		t.Fatalf("seed missing: %v %+v", ok, a)
	}
	p.result(now, a, nil)

	// A remembered member missing (not a seed): rejoin it, with backoff.
	now = p.next
	noB := []Member{self, member("seed", seed), member("a", "10.0.0.3:7946")}
	p.observe(now, noB)
	a, ok = p.due(now, noB)
	if !ok || a.reason != "remembered members missing" || strings.Join(a.addrs, " ") != "10.0.0.4:7946" {
		t.Fatalf("b missing: %v %+v", ok, a)
	}
	// b left gracefully: forgotten, nothing to do.
	p.left("b")
	p.result(now, a, nil)
	if a, ok := p.due(p.next, noB); ok {
		t.Fatalf("b left, yet %+v", a)
	}
	// A member back at a new address is remembered there.
	now = p.next.Add(time.Second)
	moved := []Member{self, member("seed", seed), member("a", "10.0.0.30:7000")}
	p.observe(now, moved)
	if k, ok := p.save(now); !ok || k[0].Name+" "+k[0].Addr != "a 10.0.0.30:7000" {
		t.Fatalf("save after a move: %v %+v", ok, k)
	}
	if _, ok := p.save(now.Add(time.Second)); ok {
		t.Fatal("saved again with nothing new")
	}
	p.observe(now.Add(2*time.Minute), moved)
	if _, ok := p.save(now.Add(2 * time.Minute)); !ok {
		t.Fatal("seen times never saved")
	}
}

// Many absent members: each attempt tries a few, in turn, so every one
// is tried and no attempt dials the whole fleet.
func TestRejoinPolicySamples(t *testing.T) {
	t0 := time.Now()
	var known []Known
	for i := range 20 {
		known = append(known, Known{Name: fmt.Sprintf("h%02d", i), Addr: fmt.Sprintf("10.0.1.%d:7946", i), Seen: t0})
	}
	p := newRejoinPolicy("me", "10.0.0.1:7946", nil, known, time.Second, 5*time.Second, time.Minute, time.Hour, t0)
	self := []Member{member("me", "10.0.0.1:7946")}
	tried := map[string]bool{}
	now := t0
	for range 3 {
		a, ok := p.due(now, self)
		if !ok || len(a.addrs) != sampleAbsent {
			t.Fatalf("attempt %v %+v", ok, a)
		}
		for _, x := range a.addrs {
			tried[x] = true
		}
		p.result(now, a, nil)
		now = p.next
	}
	if len(tried) != 20 {
		t.Fatalf("three attempts tried %d distinct members, want all 20", len(tried))
	}
	// A host-name seed counts as present unless this node is alone.
	p = newRejoinPolicy("me", "10.0.0.1:7946", []string{"deploy.example:7946"}, nil, time.Second, 5*time.Second, time.Minute, time.Hour, t0)
	if a, ok := p.due(t0, self); !ok || a.addrs[0] != "deploy.example:7946" {
		t.Fatalf("alone with a host-name seed: %v %+v", ok, a)
	}
	p.result(t0, rejoinAttempt{addrs: []string{"deploy.example:7946"}}, []string{"deploy.example:7946"})
	two := append(self, member("x", "10.0.0.7:7946"))
	if a, ok := p.due(t0.Add(2*time.Second), two); ok {
		t.Fatalf("not alone, host-name seed: %+v", a)
	}
}

func names(ks []Known) string {
	var out []string
	for _, k := range ks {
		out = append(out, k.Name)
	}
	return strings.Join(out, " ")
}

// Any single node restarted (same name, address and KnownFile) sees every
// live member again within 10 s: the first node, through which the others
// joined and which has no seed of its own, and another one.
func TestRejoinAfterRestart(t *testing.T) {
	n := size(8, 32)
	dir := t.TempDir()
	cfgOf := func(i int, addr string, port int, seeds []string) Config {
		return Config{
			Name: fmt.Sprintf("n%03d", i), BindAddr: addr, BindPort: port, SecretKey: testKey,
			KnownFile: filepath.Join(dir, fmt.Sprintf("n%03d.members", i)), Seeds: seeds,
			PushPullInterval: 2 * time.Second,
		}
	}
	nodes := make([]*tnode, n)
	nodes[0] = startNode(t, cfgOf(0, loopbackIP(), 0, nil))
	seed := nodes[0].Addr()
	for i := 1; i < n; i++ {
		nodes[i] = startNode(t, cfgOf(i, loopbackIP(), 0, []string{seed}))
	}
	waitFullView(t, nodes, 30*time.Second)
	// Every node has written what it remembers.
	waitFor(t, 10*time.Second, "every node remembers the others", func() bool {
		for i := range nodes {
			k, err := loadKnown(filepath.Join(dir, fmt.Sprintf("n%03d.members", i)))
			if err != nil || len(k) != n-1 {
				return false
			}
		}
		return true
	})
	if j := nodes[1].Joined(); j.At.IsZero() || !slices.Equal(j.Via, []string{"n000"}) || j.Remembered != n-1 {
		t.Fatalf("n001 joined: %+v", j)
	}

	restart := func(i int) time.Duration {
		t.Helper()
		old := nodes[i]
		ap := netip.MustParseAddrPort(old.Addr())
		var seeds []string
		if i != 0 {
			seeds = []string{seed}
		}
		if err := old.Shutdown(); err != nil { // a crash: no Leave
			t.Fatal(err)
		}
		start := time.Now()
		nodes[i] = startNode(t, cfgOf(i, ap.Addr().String(), int(ap.Port()), seeds))
		waitFor(t, 10*time.Second, fmt.Sprintf("restarted n%03d sees all %d members", i, n), func() bool {
			return len(nodes[i].Members()) == n
		})
		took := time.Since(start)
		waitFullView(t, nodes, 10*time.Second)
		return took
	}
	t.Logf("first node (no seeds, rejoins what it remembers) back in %v", restart(0).Round(time.Millisecond))
	var j JoinInfo
	waitFor(t, 5*time.Second, "n000 records its rejoin", func() bool {
		j = nodes[0].Joined()
		return !j.At.IsZero() && len(j.Via) > 0 && j.Reason != ""
	})
	t.Logf("n000 rejoined via %v", j.Via)
	t.Logf("another node back in %v", restart(n/2).Round(time.Millisecond))
}
