package artifact

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"scatter/artifact/core"
)

// The index finds every chunk of every pack, at its first pack's place,
// across merges of recent entries into the sorted blocks.
func TestChunkIndex(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	randID := func() (id core.ChunkID) {
		for i := range id {
			id[i] = byte(r.UintN(256))
		}
		return id
	}
	dir := t.TempDir()
	var x chunkIndex
	want := map[core.ChunkID]chunkLoc{}
	var all []core.ChunkID
	for p := range 200 {
		var entries []packEntry
		for k := range 1 + r.IntN(500) {
			id := randID()
			if len(all) > 0 && r.IntN(10) == 0 {
				id = all[r.IntN(len(all))] // already stored: the first pack keeps it
			}
			entries = append(entries, packEntry{id: id, off: int64(k) * 100, csize: uint32(k + 1), size: uint32(k + 2)})
		}
		pf, entries := writeTestPack(t, dir, p, entries)
		for _, e := range entries {
			if _, ok := want[e.id]; !ok {
				want[e.id] = chunkLoc{pack: pf, off: e.off, csize: e.csize, size: e.size}
				all = append(all, e.id)
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
			if blk[i-1].key > blk[i].key {
				t.Fatalf("block %d not sorted at %d", b, i)
			}
		}
	}
	if n := x.len(); n != len(want) {
		t.Fatalf("index holds %d entries, want %d", n, len(want))
	}
	// Removing chunks (a corrupt one dropped) forgets exactly those, in
	// blocks and in recent entries.
	gone := map[core.ChunkID]bool{}
	for _, id := range all[:len(all)/3] {
		x.remove(id)
		gone[id] = true
	}
	for id := range want {
		if x.has(id) == gone[id] {
			t.Fatalf("chunk %s: held %v after removing a third", id.Short(), x.has(id))
		}
	}
	if n := x.len(); n != len(want)-len(gone) {
		t.Fatalf("index holds %d entries after removal, want %d", n, len(want)-len(gone))
	}
}

// Chunks whose IDs share their first 8 bytes (the index's key) are told
// apart, in recent entries and in blocks, across a block boundary, and an
// unknown ID with the same key is not found.
func TestChunkIndexSharedKeys(t *testing.T) {
	dir := t.TempDir()
	var x chunkIndex
	withKey := func(k uint64, tail byte) (id core.ChunkID) {
		binary.BigEndian.PutUint64(id[:8], k)
		id[31] = tail
		return id
	}
	const shared = 1 << 40
	var ids []core.ChunkID
	for p := range 3 {
		var entries []packEntry
		// The first pack's keys sort before the shared one, the others'
		// after: once merged, the shared key's entries straddle a block.
		for k := range indexBlock - 6 {
			key := uint64(k + 1)
			if p > 0 {
				key = shared + 1 + uint64(p*indexBlock+k)
			}
			entries = append(entries, packEntry{id: withKey(key, 0), csize: 1, size: 1})
		}
		for tail := range 4 {
			entries = append(entries, packEntry{id: withKey(shared, byte(p*4+tail+1)), csize: 1, size: 1})
		}
		pf, entries := writeTestPack(t, dir, p, entries)
		x.add(pf, entries)
		for _, e := range entries {
			ids = append(ids, e.id)
		}
		for _, id := range ids {
			if !x.has(id) {
				t.Fatalf("pack %d: chunk %x not found", p, id)
			}
		}
		if x.has(withKey(shared, 200)) {
			t.Fatal("found an unknown chunk that shares a key")
		}
	}
	if x.n == 0 {
		t.Fatal("never merged")
	}
}

// writeTestPack writes a pack file holding entries' index (frames are
// zeros) and opens it; it returns the entries as read back.
func writeTestPack(t *testing.T, dir string, n int, entries []packEntry) (*packFile, []packEntry) {
	t.Helper()
	var end int64
	for _, e := range entries {
		end = max(end, e.off+int64(e.csize))
	}
	b := make([]byte, end)
	idx := make([]byte, 0, len(entries)*packEntrySize)
	for _, e := range entries {
		idx = append(idx, e.id[:]...)
		idx = binary.LittleEndian.AppendUint64(idx, uint64(e.off))
		idx = binary.LittleEndian.AppendUint32(idx, e.csize)
		idx = binary.LittleEndian.AppendUint32(idx, e.size)
	}
	sum := crc32.Checksum(idx, castagnoli)
	b = append(b, idx...)
	b = append(b, packMagic...)
	b = binary.LittleEndian.AppendUint64(b, uint64(end))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(entries)))
	b = binary.LittleEndian.AppendUint32(b, sum)
	path := filepath.Join(dir, fmt.Sprintf("%d-%d.pack", n, len(entries)))
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	p, got, err := openPack(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.f.Close() })
	return p, got
}
