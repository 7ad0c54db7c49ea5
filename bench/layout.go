package bench

import (
	"scatter/artifact"
	"scatter/artifact/core"
)

// WireCost is what one host that holds the parent release receives for the
// child release under one way of laying chunks onto BitTorrent pieces.
type WireCost struct {
	Layout    string  `json:"layout"`
	PieceLen  int64   `json:"piece_len"`
	NewBytes  int64   `json:"new_bytes"`  // compressed bytes of the chunks the host lacks
	WireBytes int64   `json:"wire_bytes"` // piece bytes that must travel, padding included
	Pieces    int64   `json:"pieces"`     // pieces in the torrent
	MetaBytes int64   `json:"meta_bytes"` // piece hashes in the metainfo (20 bytes a piece)
	Overhead  float64 `json:"overhead"`   // (wire + meta) / new - 1
}

// Layouts compares three mappings of a release's chunks onto pieces for a
// host holding parent, given each chunk's compressed size:
//
//   - "aligned": every chunk starts a piece (BEP 47 pad files, which the
//     pinned anacrolix sends as real zeros);
//   - "packed": the release's torrent holds only the chunks new relative to
//     the parent, back to back;
//   - "whole": every chunk of the release back to back in manifest order; a
//     host fetches every piece that touches a chunk it lacks.
func Layouts(parent, child *artifact.Manifest, csize func(core.ChunkID) int64, pieceLen int64) []WireCost {
	have := map[core.ChunkID]bool{}
	if parent != nil {
		for _, c := range parent.Chunks {
			have[c.ID] = true
		}
	}
	var newBytes, aligned, alignedPieces, total int64
	touched := int64(0)
	lastTouched := int64(-1)
	for _, c := range child.Chunks {
		n := csize(c.ID)
		if !have[c.ID] {
			newBytes += n
			p := (n + pieceLen - 1) / pieceLen
			aligned += p * pieceLen
			alignedPieces += p
			first, last := total/pieceLen, (total+n-1)/pieceLen
			if first <= lastTouched {
				first = lastTouched + 1
			}
			if last >= first {
				touched += last - first + 1
				lastTouched = last
			}
		} else {
			alignedPieces += (n + pieceLen - 1) / pieceLen
		}
		total += n
	}
	packedPieces := (newBytes + pieceLen - 1) / pieceLen
	wholePieces := (total + pieceLen - 1) / pieceLen
	mk := func(name string, wire, pieces int64) WireCost {
		w := WireCost{Layout: name, PieceLen: pieceLen, NewBytes: newBytes, WireBytes: wire, Pieces: pieces, MetaBytes: 20 * pieces}
		if newBytes > 0 {
			w.Overhead = float64(wire+w.MetaBytes)/float64(newBytes) - 1
		}
		return w
	}
	return []WireCost{
		mk("aligned", aligned, alignedPieces),
		mk("packed", newBytes, packedPieces), // the last piece is short: no padding
		mk("whole", touched*pieceLen, wholePieces),
	}
}
