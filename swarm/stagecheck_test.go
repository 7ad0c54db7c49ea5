package swarm

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"scatter/artifact"
	"scatter/artifact/core"
	"scatter/bench"
)

// A fetched chunk is decompressed and checked by SHA-256 once, when it is
// staged. A chunk that went bad in a host's store after it was stored there
// is found when a later release reuses it: that staging fails naming it,
// the chunk is dropped from the store, and the retry fetches the full
// torrent (the delta one does not carry the parent's chunks), gets the
// chunk again and stages a tree identical to the source.
func TestCorruptStoredChunkIsFetchedAgain(t *testing.T) {
	c := newCluster(t)
	c.start("origin", 200, true, 0)
	c.start("h1", 201, false, 0)
	src := genTree(t, 2<<20, false)
	sm1, _ := c.publish(src, "1")
	c.waitStaged(sm1, []string{"h1"}, 60*time.Second)

	// Release 2 adds a copy of a file of release 1: staging writes it from
	// the store's chunks, which h1 does not fetch again.
	var reused artifact.Entry
	for _, e := range sm1.Manifest.Entries {
		if e.Type == artifact.TypeFile && e.Size > 4096 && len(e.Chunks) == 1 {
			reused = e
			break
		}
	}
	if reused.Path == "" {
		t.Fatal("no single-chunk file in the generated tree")
	}
	data, err := os.ReadFile(filepath.Join(src, reused.Path))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "zz-copy"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	corruptStoredChunk(t, filepath.Join(c.dirs["h1"], "mw"), sm1.Manifest.Chunks[reused.Chunks[0]].ID)

	sm2, _ := c.publish(src, "2")
	c.waitStaged(sm2, []string{"h1"}, 60*time.Second)
	tree := filepath.Join(c.dirs["h1"], "mw", "releases", sm2.ID.String())
	if same, err := bench.SameTree(src, tree); err != nil || !same {
		t.Fatalf("staged tree differs from the source (%v)", err)
	}
	c.logs.mu.Lock()
	logs := string(c.logs.buf)
	c.logs.mu.Unlock()
	if !strings.Contains(logs, "dropped from the store") {
		t.Fatal("no staging failed on the corrupt chunk (the log does not say it was dropped)")
	}
}

// corruptStoredChunk flips a byte in the middle of chunk id's frame in the
// store at dir, found by its bytes in the packs.
func corruptStoredChunk(t *testing.T, dir string, id core.ChunkID) {
	t.Helper()
	st, err := artifact.OpenStore(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	z, err := st.ReadCompressedChunk(id)
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	packs, _ := filepath.Glob(filepath.Join(dir, "packs", "*.pack"))
	for _, p := range packs {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if i := bytes.Index(b, z); i >= 0 {
			f, err := os.OpenFile(p, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt([]byte{b[i+len(z)/2] ^ 0xff}, int64(i+len(z)/2)); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("chunk %s's frame is in no pack", id.Short())
}
