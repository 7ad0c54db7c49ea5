package swarm

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// Two datacenters: with labels, stripes stay in the origin's datacenter
// and only one bridge a side talks across, so about one copy of the
// release crosses between them; without labels hosts pick remote peers
// freely. Bytes are counted by peer address: each node dials from its own.
func TestTwoDatacentersCrossOnce(t *testing.T) {
	perDC := 6
	if testing.Short() {
		perDC = 4
	}
	src := genTree(t, 8<<20, false)
	run := func(labelled bool) (cross, size int64) {
		c := newCluster(t)
		c.stallAfter = 0 // the daemon's default
		dcOf := map[string]string{"origin": "a"}
		var names []string
		for i := range 2 * perDC {
			name := fmt.Sprintf("h%02d", i)
			names = append(names, name)
			dcOf[name] = map[bool]string{true: "a", false: "b"}[i < perDC]
		}
		if labelled {
			c.dcs = dcOf
		}
		c.start("origin", 120, true, 0)
		for i, name := range names {
			c.start(name, 121+i, false, 0)
		}
		sm, _ := c.publish(src, "1")
		c.waitStaged(sm, names, 90*time.Second)
		ipDC := map[netip.Addr]string{}
		for name, n := range c.nodes {
			h, _, _ := net.SplitHostPort(n.BTAddr())
			ipDC[netip.MustParseAddr(h)] = dcOf[name]
		}
		for _, name := range names {
			for ip, b := range c.nodes[name].Engine().ReceivedFrom() {
				if ipDC[ip] != dcOf[name] {
					cross += b
				}
			}
		}
		return cross, c.origin.Status().Repos[0].Releases[0].Total
	}
	aware, size := run(true)
	blind, _ := run(false)
	t.Logf("%d+%d hosts, S=%d B: crossed between datacenters %.2f S with labels, %.2f S without",
		perDC, perDC, size, float64(aware)/float64(size), float64(blind)/float64(size))
	// One bridge a side: each piece crosses once, plus what a host in the
	// far datacenter fetches from the origin after a stall.
	if float64(aware) > 1.3*float64(size) {
		t.Fatalf("with datacenter labels %.2f copies crossed, want about one", float64(aware)/float64(size))
	}
	if aware >= blind {
		t.Fatalf("labels did not reduce cross-datacenter bytes: %d vs %d", aware, blind)
	}
}

// Which peers a host dials across datacenters follows Config.Bridges: the
// first Bridges hosts of each datacenter by name talk across, the others
// only within their own.
func TestReachableFollowsBridges(t *testing.T) {
	peers := []Peer{{Name: "origin", DC: "a", Origin: true}}
	for _, p := range []struct{ name, dc string }{{"a1", "a"}, {"a2", "a"}, {"a3", "a"}, {"b1", "b"}, {"b2", "b"}, {"b3", "b"}} {
		peers = append(peers, Peer{Name: p.name, DC: p.dc})
	}
	names := func(ps []Peer) string {
		var out []string
		for _, p := range ps {
			out = append(out, p.Name)
		}
		sort.Strings(out)
		return strings.Join(out, " ")
	}
	for _, c := range []struct {
		self    string
		bridges int
		want    string
	}{
		{"b1", 1, "a1 b2 b3 origin"},
		{"b2", 1, "b1 b3 origin"},
		{"b2", 2, "a1 a2 b1 b3 origin"},
		{"b3", 2, "b1 b2 origin"},
		{"a3", 3, "a1 a2 b1 b2 b3 origin"},
	} {
		v := peerView{self: c.self, dc: c.self[:1], bridges: c.bridges}
		var others []Peer
		for _, p := range peers {
			if p.Name != c.self {
				others = append(others, p)
			}
		}
		if got := names(v.reachable(others)); got != c.want {
			t.Errorf("%s with %d bridges dials %q, want %q", c.self, c.bridges, got, c.want)
		}
	}
}

func TestDialSparse(t *testing.T) {
	const hosts, k = 32, 5
	var all []Peer
	for i := range hosts {
		all = append(all, Peer{Name: fmt.Sprintf("host%02d", i)})
	}
	origin := Peer{Name: "origin", Origin: true}
	remote := Peer{Name: "b1", DC: "b"}
	others := func(self string) []Peer {
		out := []Peer{origin, remote}
		for _, p := range all {
			if p.Name != self {
				out = append(out, p)
			}
		}
		return out
	}
	adj := map[string]map[string]bool{}
	link := func(a, b string) {
		for _, e := range [][2]string{{a, b}, {b, a}} {
			if adj[e[0]] == nil {
				adj[e[0]] = map[string]bool{}
			}
			adj[e[0]][e[1]] = true
		}
	}
	for _, self := range all {
		got := dialSparse(self.Name, "", others(self.Name), k)
		local := 0
		for _, p := range got {
			switch {
			case p.Name == self.Name:
				t.Fatalf("%s dials itself", self.Name)
			case p.Origin || p.DC != "":
			default:
				local++
				link(self.Name, p.Name)
			}
		}
		if local != k || !slices.ContainsFunc(got, isPeer(origin.Name)) || !slices.ContainsFunc(got, isPeer(remote.Name)) {
			t.Fatalf("%s dials %d of its datacenter (want %d), origin and other DCs kept: %v", self.Name, local, k, got)
		}
	}
	// Balanced: every host dials k and is dialled by k, all different hosts
	// (the hosts with the fewest connections used to finish last).
	for _, self := range all {
		if n := len(adj[self.Name]); n != 2*k {
			t.Errorf("%s has %d connections, want %d", self.Name, n, 2*k)
		}
	}
	// A host leaving moves each host's dials by at most one place per
	// distance: it still dials k of its datacenter, all different.
	gone := all[7].Name
	for _, self := range all {
		if self.Name == gone {
			continue
		}
		fewer := slices.DeleteFunc(others(self.Name), isPeer(gone))
		again := dialSparse(self.Name, "", fewer, k)
		names := map[string]bool{}
		for _, p := range again {
			if p.Name == gone || names[p.Name] {
				t.Fatalf("%s after %s left: %v", self.Name, gone, again)
			}
			names[p.Name] = true
		}
		if len(again) != k+2 {
			t.Fatalf("%s after %s left dials %d: %v", self.Name, gone, len(again), again)
		}
	}
	for _, c := range []struct {
		n    int
		want string
	}{{32, "[1 2 4 8 15]"}, {1000, "[1 5 22 106 499]"}, {7, "[1 2 3 4 5]"}, {12, "[1 2 3 4 5]"}} {
		if got := fmt.Sprint(dialOffsets(c.n, k)); got != c.want {
			t.Errorf("dialOffsets(%d, %d) = %s, want %s", c.n, k, got, c.want)
		}
	}
	// Every host is reachable from every other over the connections.
	seen := map[string]bool{all[0].Name: true}
	queue := []string{all[0].Name}
	for len(queue) > 0 {
		h := queue[0]
		queue = queue[1:]
		for o := range adj[h] {
			if !seen[o] {
				seen[o] = true
				queue = append(queue, o)
			}
		}
	}
	if len(seen) != hosts {
		t.Fatalf("%d of %d hosts connected", len(seen), hosts)
	}
	most := 0
	for _, o := range adj {
		most = max(most, len(o))
	}
	if most > 4*k {
		t.Errorf("a host has %d connections; with %d dials each, want at most %d", most, k, 4*k)
	}
	// Few peers: every one is dialled.
	few := others(all[0].Name)[:k+1]
	if got := dialSparse(all[0].Name, "", few, k); peerNames(got) != peerNames(few) {
		t.Errorf("with %d peers got %v", len(few), got)
	}
}

func isPeer(name string) func(Peer) bool { return func(p Peer) bool { return p.Name == name } }

func peerNames(ps []Peer) string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Name)
	}
	return strings.Join(out, " ")
}
