package artifact

import (
	"bytes"
	"maps"
	"math"
	"slices"

	"scatter/artifact/core"
)

// chunkIndex says where each stored chunk lives. Most entries sit in one
// array sorted by ID and found by binary search, 48 bytes each; chunks of
// packs added since the last merge wait in a small map. A Go map of every
// chunk cost about 110 bytes a chunk, the largest thing a host kept for a
// 2 GiB release (160k chunks). Not safe for concurrent use: the Store's
// lock guards it.
type chunkIndex struct {
	sorted []indexEntry
	recent map[core.ChunkID]indexEntry
	packs  []*packFile // indexEntry.pack indexes this
}

type indexEntry struct {
	id    core.ChunkID
	pack  uint32
	off   uint32 // packs stay far below 4 GiB (packTarget); openPack refuses larger
	csize uint32
	size  uint32
}

// maxPackSize is the largest pack the index can address.
const maxPackSize = math.MaxUint32

func cmpEntry(e indexEntry, id core.ChunkID) int { return bytes.Compare(e.id[:], id[:]) }

func (x *chunkIndex) get(id core.ChunkID) (chunkLoc, bool) {
	e, ok := x.recent[id]
	if !ok {
		var i int
		i, ok = slices.BinarySearchFunc(x.sorted, id, cmpEntry)
		if ok {
			e = x.sorted[i]
		}
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
	_, ok := slices.BinarySearchFunc(x.sorted, id, cmpEntry)
	return ok
}

// add indexes the chunks of pack p that the index does not hold yet.
func (x *chunkIndex) add(p *packFile, entries []packEntry) {
	if x.recent == nil {
		x.recent = map[core.ChunkID]indexEntry{}
	}
	n := uint32(len(x.packs))
	x.packs = append(x.packs, p)
	for _, e := range entries {
		if !x.has(e.id) {
			x.recent[e.id] = indexEntry{id: e.id, pack: n, off: uint32(e.off), csize: e.csize, size: e.size}
		}
	}
	// Merging costs a pass over the array: do it when the map has grown
	// to an eighth of it, so a fetch that adds a pack every few MiB pays
	// a constant factor, not a pass per pack.
	if len(x.recent) > max(1024, len(x.sorted)/8) {
		x.merge()
	}
}

// merge moves the map's entries into the sorted array, in place from the
// back, so that only the array's own growth allocates.
func (x *chunkIndex) merge() {
	add := slices.SortedFunc(maps.Values(x.recent), func(a, b indexEntry) int { return bytes.Compare(a.id[:], b.id[:]) })
	i, j := len(x.sorted)-1, len(add)-1
	x.sorted = slices.Grow(x.sorted, len(add))[:len(x.sorted)+len(add)]
	for k := len(x.sorted) - 1; j >= 0; k-- {
		if i >= 0 && bytes.Compare(x.sorted[i].id[:], add[j].id[:]) > 0 {
			x.sorted[k] = x.sorted[i]
			i--
		} else {
			x.sorted[k] = add[j]
			j--
		}
	}
	clear(x.recent)
}
