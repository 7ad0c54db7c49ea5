package artifact

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"sort"

	"scatter/artifact/core"
)

// chunkIndex says where each stored chunk lives. It holds 16 bytes a chunk:
// the first 8 bytes of its ID and its place in a pack's own index on disk,
// which has the full ID, offset and sizes. A lookup reads that 48-byte
// entry back (from the page cache, next to the frame it is about to read)
// and compares the whole ID, so two chunks whose IDs share 8 bytes are
// told apart, never confused. Full IDs in memory (48 bytes an entry, and
// a map of about 110 before that) were the largest thing a host kept for
// a 2 GiB release's 160k chunks.
//
// Most entries sit in sorted blocks of indexBlock entries, found by binary
// search; entries of packs added since the last merge wait in a small
// sorted slice. Blocks are rebuilt one at a time, so a merge never holds a
// second copy of the index. Not safe for concurrent use: the Store's lock
// guards it.
type chunkIndex struct {
	blocks [][]indexEntry // sorted across blocks; each full but the last, or short of entries removed
	n      int            // entries in blocks
	recent []indexEntry   // sorted
	packs  []*packFile    // indexEntry.pack indexes this
}

type indexEntry struct {
	key  uint64 // the ID's first 8 bytes, big-endian: sorts as IDs do
	pack uint32
	slot uint32 // the chunk's entry in its pack's index
}

// indexBlock is the entries of one block: 64 KiB.
const indexBlock = 4096

// maxPackSize is the largest pack the index can address.
const maxPackSize = math.MaxUint32

func keyOf(id core.ChunkID) uint64 { return binary.BigEndian.Uint64(id[:8]) }

func cmpKey(e indexEntry, k uint64) int { return cmp.Compare(e.key, k) }

// get returns where chunk id lives.
func (x *chunkIndex) get(id core.ChunkID) (chunkLoc, bool) {
	k := keyOf(id)
	i, _ := slices.BinarySearchFunc(x.recent, k, cmpKey)
	for ; i < len(x.recent) && x.recent[i].key == k; i++ {
		if l, ok := x.confirm(x.recent[i], id); ok {
			return l, true
		}
	}
	b := sort.Search(len(x.blocks), func(b int) bool {
		blk := x.blocks[b]
		return blk[len(blk)-1].key >= k
	})
	// Entries sharing a key may run on into the next block.
	for ; b < len(x.blocks); b++ {
		blk := x.blocks[b]
		i, _ := slices.BinarySearchFunc(blk, k, cmpKey)
		for ; i < len(blk) && blk[i].key == k; i++ {
			if l, ok := x.confirm(blk[i], id); ok {
				return l, true
			}
		}
		if i < len(blk) {
			break
		}
	}
	return chunkLoc{}, false
}

// confirm reads e's entry from its pack and returns its place if it is
// chunk id. A pack that cannot be read counts as not holding it.
func (x *chunkIndex) confirm(e indexEntry, id core.ChunkID) (chunkLoc, bool) {
	p := x.packs[e.pack]
	pe, err := p.entry(e.slot)
	if err != nil || pe.id != id {
		return chunkLoc{}, false
	}
	return chunkLoc{pack: p, off: pe.off, csize: pe.csize, size: pe.size}, true
}

// remove forgets where chunk id lives, if the index holds it.
func (x *chunkIndex) remove(id core.ChunkID) {
	k := keyOf(id)
	i, _ := slices.BinarySearchFunc(x.recent, k, cmpKey)
	for ; i < len(x.recent) && x.recent[i].key == k; i++ {
		if _, ok := x.confirm(x.recent[i], id); ok {
			x.recent = slices.Delete(x.recent, i, i+1)
			return
		}
	}
	for b := range x.blocks {
		blk := x.blocks[b]
		if blk[len(blk)-1].key < k {
			continue
		}
		i, _ := slices.BinarySearchFunc(blk, k, cmpKey)
		for ; i < len(blk) && blk[i].key == k; i++ {
			if _, ok := x.confirm(blk[i], id); ok {
				x.blocks[b] = slices.Delete(blk, i, i+1)
				if len(x.blocks[b]) == 0 {
					x.blocks = slices.Delete(x.blocks, b, b+1)
				}
				x.n--
				return
			}
		}
		if i < len(blk) {
			return
		}
	}
}

func (x *chunkIndex) has(id core.ChunkID) bool {
	_, ok := x.get(id)
	return ok
}

// len returns the number of chunks indexed.
func (x *chunkIndex) len() int { return x.n + len(x.recent) }

// add indexes the chunks of pack p that the index does not hold yet;
// entries is p's index, in its order on disk.
func (x *chunkIndex) add(p *packFile, entries []packEntry) {
	n := uint32(len(x.packs))
	x.packs = append(x.packs, p)
	type fresh struct {
		id   core.ChunkID
		slot uint32
	}
	var add []fresh
	for i, e := range entries {
		if !x.has(e.id) {
			add = append(add, fresh{e.id, uint32(i)})
		}
	}
	// A pack may list a chunk twice; the first keeps it.
	slices.SortStableFunc(add, func(a, b fresh) int { return bytes.Compare(a.id[:], b.id[:]) })
	add = slices.CompactFunc(add, func(a, b fresh) bool { return a.id == b.id })
	recent := make([]indexEntry, 0, len(x.recent)+len(add))
	i := 0
	for _, a := range add {
		k := keyOf(a.id)
		for ; i < len(x.recent) && x.recent[i].key < k; i++ {
			recent = append(recent, x.recent[i])
		}
		recent = append(recent, indexEntry{key: k, pack: n, slot: a.slot})
	}
	x.recent = append(recent, x.recent[i:]...)
	// Merging costs a pass over the blocks: do it when recent has grown to
	// an eighth of them, so a fetch that adds a pack every few MiB pays a
	// constant factor, not a pass per pack.
	if len(x.recent) > max(1024, x.n/8) {
		x.merge()
	}
}

// merge moves recent's entries into the blocks. Each old block is dropped
// as soon as its entries are copied, so the merge never holds a second
// copy of the index.
func (x *chunkIndex) merge() {
	add := x.recent
	old := x.blocks
	out := make([][]indexEntry, 0, (x.n+len(add))/indexBlock+1)
	var cur []indexEntry
	put := func(e indexEntry) {
		if cur == nil {
			cur = make([]indexEntry, 0, indexBlock)
		}
		cur = append(cur, e)
		if len(cur) == indexBlock {
			out, cur = append(out, cur), nil
		}
	}
	j := 0
	for b := range old {
		for _, e := range old[b] {
			for j < len(add) && add[j].key < e.key {
				put(add[j])
				j++
			}
			put(e)
		}
		old[b] = nil
	}
	for ; j < len(add); j++ {
		put(add[j])
	}
	if cur != nil {
		out = append(out, slices.Clip(cur))
	}
	x.blocks, x.n, x.recent = out, x.n+len(add), nil
}

// entry reads entry slot of the pack's index from disk, with the bounds
// that readPackIndex checked at open.
func (p *packFile) entry(slot uint32) (packEntry, error) {
	var b [packEntrySize]byte
	if _, err := p.f.ReadAt(b[:], p.idxOff+int64(slot)*packEntrySize); err != nil {
		return packEntry{}, err
	}
	e := parsePackEntry(b[:])
	if e.off < 0 || e.off+int64(e.csize) > p.idxOff || e.size > maxChunkSize {
		return packEntry{}, fmt.Errorf("pack %s: index entry %d out of bounds", p.name, slot)
	}
	return e, nil
}
