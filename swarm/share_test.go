package swarm

import (
	"path/filepath"
	"sort"
	"testing"
	"time"

	"scatter/bench"
)

// Property 1: with every host, the origin included, capped at the same
// upload rate U, every host ends with a byte-identical release and the
// origin uploads at most 1.5 copies: the rest comes from peers.
func TestPeersShare(t *testing.T) {
	n := 20
	if testing.Short() {
		n = 8
	}
	const S = 3 << 20 // about the compressed size of the 8 MiB tree below
	U := int64(S / 4) // S/U = 4 s
	c := newCluster(t)
	c.stallAfter = 0 // the daemon's default: a short threshold hands hosts to the origin early
	origin := c.start("origin", 70, true, U)
	names := hostNames(n)
	for i, name := range names {
		c.start(name, 71+i, false, U)
	}
	src := genTree(t, 8<<20, false)
	start := time.Now()
	sm, _ := c.publish(src, "1")
	c.waitStaged(sm, names, 120*time.Second)
	elapsed := time.Since(start)

	size := origin.Status().Repos[0].Releases[0].Total
	up := origin.Engine().Uploaded()
	var fromOrigin, fromPeers int64
	var secs []float64
	for _, name := range names {
		s := c.nodes[name].Status()
		fromOrigin += s.ReceivedFromOrigin
		fromPeers += s.ReceivedFromPeers
		secs = append(secs, s.Repos[0].Releases[0].Seconds)
		tree := filepath.Join(c.dirs[name], "mw", "releases", sm.ID.String())
		if same, err := bench.SameTree(src, tree); err != nil || !same {
			t.Fatalf("%s: staged tree differs from the source (%v)", name, err)
		}
	}
	sort.Float64s(secs)
	su := float64(size) / float64(U)
	t.Logf("%d hosts, S=%d B, S/U=%.2fs: origin uploaded %.2f S; hosts got %.2f S from the origin, %.2f S from peers; median %.2f S/U, last %.2f S/U (%.1fs overall)",
		n, size, su, float64(up)/float64(size), float64(fromOrigin)/float64(size), float64(fromPeers)/float64(size),
		secs[len(secs)/2]/su, secs[len(secs)-1]/su, elapsed.Seconds())
	if float64(up) > 1.5*float64(size) {
		t.Fatalf("origin uploaded %.2f copies, want at most 1.5", float64(up)/float64(size))
	}
	if fromPeers < int64(n-2)*size/2 {
		t.Fatalf("hosts received only %d bytes from peers", fromPeers)
	}
	// Metadata spreads like pieces: every host needs a whole copy of the
	// manifest and info, but most take it from other hosts.
	var meta int64
	for _, x := range c.nodes {
		meta += x.Status().UploadedMeta
	}
	originMeta := origin.Status().UploadedMeta
	t.Logf("metadata: %d B served in all, %d B (%.0f%%) by the origin", meta, originMeta, 100*float64(originMeta)/float64(meta))
	if meta == 0 || originMeta > meta/2 {
		t.Fatalf("the origin served %d of %d metadata bytes, want at most half", originMeta, meta)
	}
}
