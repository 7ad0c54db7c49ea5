package swarm

import (
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"scatter/bench/gen"
)

// Property 8 (disk): a host keeps the last Keep releases and collects the
// rest: trees, manifests, torrents, announcements and unshared chunks.
func TestHostKeepsLastReleases(t *testing.T) {
	c := newCluster(t)
	c.start("origin", 150, true, 0)
	dir := filepath.Join(t.TempDir(), "h1")
	c.dirs["h1"] = dir
	n, err := NewNode(Config{
		Name: "h1", DataDir: dir, PubKey: c.key.Public().(ed25519.PublicKey), Keep: 2,
		Engine: EngineConfig{ListenAddr: "127.0.0.151:0"}, HTTPAddr: "127.0.0.151:0", Peers: c.peersOf("h1"),
	})
	if err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	c.nodes["h1"] = n
	c.mu.Unlock()
	t.Cleanup(func() { n.Close() })
	if err := n.Resume(); err != nil { // from here on it lets hosts in
		t.Fatal(err)
	}

	src := filepath.Join(t.TempDir(), "src")
	if _, err := gen.Generate(src, gen.Config{Seed: 3, TotalBytes: 2 << 20}); err != nil {
		t.Fatal(err)
	}
	var last []string
	for i := range 4 {
		if i > 0 {
			if _, err := gen.MutateL10n(src, uint64(i)); err != nil {
				t.Fatal(err)
			}
		}
		sm, _ := c.publish(src, fmt.Sprint(i))
		c.waitStaged(sm, []string{"h1"}, 30*time.Second)
		last = append(last, sm.ID.String())
	}
	count := func(sub string) int {
		es, _ := os.ReadDir(filepath.Join(dir, "mw", sub))
		return len(es)
	}
	deadline := time.Now().Add(10 * time.Second)
	for count("releases") != 2 || count("manifests") != 2 || count("announcements") != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("after 4 releases with keep 2: %d trees, %d manifests, %d announcements",
				count("releases"), count("manifests"), count("announcements"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, id := range last[2:] {
		if _, err := os.Stat(filepath.Join(dir, "mw", "releases", id)); err != nil {
			t.Fatalf("newest release %s was collected: %v", id[:12], err)
		}
	}
}
