package swarm

import (
	"fmt"
	"net"
	"net/netip"
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
