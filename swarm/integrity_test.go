package swarm

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"scatter/bench"
)

// corruptPacks overwrites the chunk bytes of every pack in a node's store
// (keeping index and footer), so the node serves bad data while it still
// believes it holds every chunk.
func corruptPacks(t *testing.T, dataDir string) {
	t.Helper()
	packs, _ := filepath.Glob(filepath.Join(dataDir, "mw", "packs", "*.pack"))
	if len(packs) == 0 {
		t.Fatal("no packs to corrupt")
	}
	for _, p := range packs {
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		st, _ := f.Stat()
		junk := make([]byte, st.Size()/2)
		for i := range junk {
			junk[i] = byte(i * 31)
		}
		if _, err := f.WriteAt(junk, 0); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
}

// Property 3: a peer serving corrupted pieces is detected by hash, banned
// and reported; every honest host still stages a byte-identical tree.
func TestCorruptPeerIsBannedAndReported(t *testing.T) {
	c := newCluster(t)
	origin := c.start("origin", 120, true, 0)
	evil := c.start("evil", 121, false, 0)
	good := c.start("good", 122, false, 0)
	src := genTree(t, 4<<20, false)
	sm, _ := c.publish(src, "1")
	c.waitStaged(sm, []string{"evil", "good"}, 60*time.Second)
	// Both hold it: the origin offloads. Now evil turns bad.
	deadline := time.Now().Add(10 * time.Second)
	for !origin.Status().Repos[0].Releases[0].Offloaded {
		if time.Now().After(deadline) {
			t.Fatal("origin did not offload")
		}
		time.Sleep(50 * time.Millisecond)
	}
	corruptPacks(t, c.dirs["evil"])
	_ = evil
	_ = good

	names := []string{"h1", "h2", "h3"}
	for i, name := range names {
		n := c.start(name, 123+i, false, 0)
		for _, ann := range origin.Announcements() {
			if _, err := n.Announce(ann); err != nil {
				t.Fatal(err)
			}
		}
	}
	c.waitStaged(sm, names, 60*time.Second)
	reported := 0
	for _, name := range names {
		tree := filepath.Join(c.dirs[name], "mw", "releases", sm.ID.String())
		if same, err := bench.SameTree(src, tree); err != nil || !same {
			t.Fatalf("%s: staged tree differs from the source (%v)", name, err)
		}
		if slices.Contains(c.nodes[name].Status().BadPeers, "127.0.0.121") {
			reported++
		}
	}
	if reported == 0 {
		t.Fatal("no host reported the corrupt peer 127.0.0.121 in its status")
	}
}

// Property 4: once a full copy exists among the hosts, the origin can die
// and every host still completes.
func TestOriginCanDie(t *testing.T) {
	c := newCluster(t)
	c.start("origin", 130, true, 0)
	c.start("first", 131, false, 0)
	src := genTree(t, 4<<20, false)
	sm, _ := c.publish(src, "1")
	c.waitStaged(sm, []string{"first"}, 60*time.Second)
	ann := c.origin.Announcements()
	c.stop("origin")
	names := []string{"h1", "h2", "h3", "h4"}
	for i, name := range names {
		n := c.start(name, 132+i, false, 0)
		for _, a := range ann {
			if _, err := n.Announce(a); err != nil {
				t.Fatal(err)
			}
		}
	}
	c.waitStaged(sm, names, 60*time.Second)
	for _, name := range names {
		s := c.nodes[name].Status()
		if s.ReceivedFromOrigin != 0 || s.ReceivedFromPeers == 0 {
			t.Fatalf("%s: %d bytes from the dead origin, %d from peers", name, s.ReceivedFromOrigin, s.ReceivedFromPeers)
		}
	}
}
