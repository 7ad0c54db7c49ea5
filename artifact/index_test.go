package artifact

import (
	"math/rand/v2"
	"testing"

	"scatter/artifact/core"
)

// The index finds every chunk of every pack, at its first pack's place,
// across merges of the recent map into the sorted array.
func TestChunkIndex(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	randID := func() (id core.ChunkID) {
		for i := range id {
			id[i] = byte(r.UintN(256))
		}
		return id
	}
	var x chunkIndex
	want := map[core.ChunkID]chunkLoc{}
	var all []core.ChunkID
	for p := range 200 {
		pf := &packFile{name: string(rune('a' + p%26))}
		var entries []packEntry
		for k := range 1 + r.IntN(500) {
			id := randID()
			if len(all) > 0 && r.IntN(10) == 0 {
				id = all[r.IntN(len(all))] // already stored: the first pack keeps it
			}
			e := packEntry{id: id, off: int64(k) * 100, csize: uint32(k + 1), size: uint32(k + 2)}
			entries = append(entries, e)
			if _, ok := want[id]; !ok {
				want[id] = chunkLoc{pack: pf, off: e.off, csize: e.csize, size: e.size}
				all = append(all, id)
			}
		}
		x.add(pf, entries)
	}
	if len(x.blocks) < 2 {
		t.Fatalf("merged into %d blocks; the test wants several", len(x.blocks))
	}
	if x.n == 0 {
		t.Fatal("never merged")
	}
	for id, w := range want {
		got, ok := x.get(id)
		if !ok || got != w || !x.has(id) {
			t.Fatalf("chunk %s: got %+v %v, want %+v", id.Short(), got, ok, w)
		}
	}
	for range 1000 {
		if id := randID(); x.has(id) {
			t.Fatalf("unknown chunk %s found", id.Short())
		}
	}
	for b, blk := range x.blocks {
		if b < len(x.blocks)-1 && len(blk) != indexBlock {
			t.Fatalf("block %d of %d holds %d entries", b, len(x.blocks), len(blk))
		}
		for i := 1; i < len(blk); i++ {
			if cmpEntry(blk[i-1], blk[i].id) >= 0 {
				t.Fatalf("block %d not sorted at %d", b, i)
			}
		}
	}
	if n := x.len(); n != len(want) {
		t.Fatalf("index holds %d entries, want %d", n, len(want))
	}
}
