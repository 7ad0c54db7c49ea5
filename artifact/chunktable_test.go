package artifact

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"scatter/artifact/chunker"
	"scatter/artifact/core"
)

// bigManifest has n one-chunk files: a table of n chunks, several blocks
// of a refFile, and a body longer than a stream decoder's window.
func bigManifest(n int) *Manifest {
	m := &Manifest{Repo: "mw", Version: "1", Time: fixedTime, Chunking: chunker.Default}
	m.Entries = append(m.Entries, Entry{Path: "d", Type: TypeDir, Mode: 0o755})
	for i := range n {
		m.Chunks = append(m.Chunks, ChunkRef{ID: core.ChunkIDOf(fmt.Appendf(nil, "chunk %d", i)), Size: uint32(1 + i%1000)})
		m.Entries = append(m.Entries, Entry{Path: fmt.Sprintf("d/f%05d", i), Type: TypeFile, Mode: 0o644,
			Size: int64(1 + i%1000), Chunks: []uint32{uint32(i)}})
	}
	return m
}

// A table on disk answers as the manifest's does, from goroutines at once
// (they share its one cached block), and a file that cannot be read is an
// error, not a zero ID.
func TestTableOnDisk(t *testing.T) {
	m := bigManifest(1000)
	body, err := m.MarshalBody()
	if err != nil {
		t.Fatal(err)
	}
	tb, err := readTable(&decoder{buf: body}, core.ReleaseID{7}, nil, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer tb.Close()
	if tb.file == nil || tb.Len() != len(m.Chunks) || tb.ID != (core.ReleaseID{7}) {
		t.Fatalf("table: on disk %v, %d chunks, id %s", tb.file != nil, tb.Len(), tb.ID.Short())
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 2000 {
				i := rand.IntN(tb.Len())
				ref, err := tb.Ref(i)
				if err != nil || ref != m.Chunks[i] {
					errs <- fmt.Errorf("chunk %d: %v, %v", i, ref, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if _, err := tb.Ref(tb.Len()); err == nil {
		t.Fatal("read past the table")
	}
	if err := tb.file.f.Truncate(refSize * 500); err != nil {
		t.Fatal(err)
	}
	if _, err := tb.Ref(0); err != nil { // block 0 is on disk still
		t.Fatal(err)
	}
	for _, i := range []int{510, 999} { // in the block the file ends in, and past it
		if _, err := tb.Ref(i); err == nil || !strings.Contains(err.Error(), "file ends at record") {
			t.Fatalf("truncated table, chunk %d: %v", i, err)
		}
	}
}
