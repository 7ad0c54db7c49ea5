package artifact

import (
	"bytes"
	"math"
	"slices"
	"sort"

	"scatter/artifact/core"
)

// chunkIndex says where each stored chunk lives. Most entries sit in sorted
// blocks of indexBlock entries (48 bytes each), found by binary search;
// chunks of packs added since the last merge wait in a small map. A Go map
// of every chunk cost about 110 bytes a chunk, the largest thing a host
// kept for a 2 GiB release (160k chunks). One sorted array cost a copy of
// itself at each merge: growing it meant the old and the new array alive
// at once, 16 MB at the end of a 2 GiB fetch, the host's peak. Blocks are
// rebuilt one at a time, so a merge holds one spare block. Not safe for
// concurrent use: the Store's lock guards it.
type chunkIndex struct {
	blocks [][]indexEntry // sorted across blocks; each full but the last
	n      int            // entries in blocks
	recent map[core.ChunkID]recentLoc
	packs  []*packFile // indexEntry.pack indexes this
}

type indexEntry struct {
	id core.ChunkID
	recentLoc
}

type recentLoc struct {
	pack  uint32
	off   uint32 // packs stay far below 4 GiB (packTarget); openPack refuses larger
	csize uint32
	size  uint32
}

// indexBlock is the entries of one block: 192 KiB.
const indexBlock = 4096

// maxPackSize is the largest pack the index can address.
const maxPackSize = math.MaxUint32

func cmpEntry(e indexEntry, id core.ChunkID) int { return bytes.Compare(e.id[:], id[:]) }

// find returns the sorted entry of id.
func (x *chunkIndex) find(id core.ChunkID) (recentLoc, bool) {
	b := sort.Search(len(x.blocks), func(i int) bool {
		blk := x.blocks[i]
		return cmpEntry(blk[len(blk)-1], id) >= 0
	})
	if b == len(x.blocks) {
		return recentLoc{}, false
	}
	i, ok := slices.BinarySearchFunc(x.blocks[b], id, cmpEntry)
	if !ok {
		return recentLoc{}, false
	}
	return x.blocks[b][i].recentLoc, true
}

func (x *chunkIndex) get(id core.ChunkID) (chunkLoc, bool) {
	e, ok := x.recent[id]
	if !ok {
		e, ok = x.find(id)
	}
	if !ok {
		return chunkLoc{}, false
	}
	return chunkLoc{pack: x.packs[e.pack], off: int64(e.off), csize: e.csize, size: e.size}, true
}

func (x *chunkIndex) has(id core.ChunkID) bool {
	if _, ok := x.recent[id]; ok {
		return true
	}
	_, ok := x.find(id)
	return ok
}

// len returns the number of chunks indexed.
func (x *chunkIndex) len() int { return x.n + len(x.recent) }

// add indexes the chunks of pack p that the index does not hold yet.
func (x *chunkIndex) add(p *packFile, entries []packEntry) {
	if x.recent == nil {
		x.recent = map[core.ChunkID]recentLoc{}
	}
	n := uint32(len(x.packs))
	x.packs = append(x.packs, p)
	for _, e := range entries {
		if !x.has(e.id) {
			x.recent[e.id] = recentLoc{pack: n, off: uint32(e.off), csize: e.csize, size: e.size}
		}
	}
	// Merging costs a pass over the blocks: do it when the map has grown
	// to an eighth of them, so a fetch that adds a pack every few MiB
	// pays a constant factor, not a pass per pack.
	if len(x.recent) > max(1024, x.n/8) {
		x.merge()
	}
}

// merge moves the map's entries into the blocks. Each old block is
// dropped as soon as its entries are copied, so the merge never holds a
// second copy of the index.
func (x *chunkIndex) merge() {
	add := make([]indexEntry, 0, len(x.recent))
	for id, l := range x.recent {
		add = append(add, indexEntry{id: id, recentLoc: l})
	}
	slices.SortFunc(add, func(a, b indexEntry) int { return bytes.Compare(a.id[:], b.id[:]) })
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
			for j < len(add) && bytes.Compare(add[j].id[:], e.id[:]) < 0 {
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
	// A cleared map keeps its buckets: drop it instead.
	x.blocks, x.n, x.recent = out, x.n+len(add), nil
}
