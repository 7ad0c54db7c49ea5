package swarm

import (
	"bytes"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"

	"scatter/artifact"
	"scatter/artifact/core"
)

// Kind says which chunks of a release a torrent carries.
type Kind uint8

const (
	// Full carries every chunk of the release: for hosts without the parent.
	Full Kind = iota
	// Delta carries only the chunks the parent release lacks, packed back to
	// back, so a host holding the parent receives nothing it already has and
	// no padding (bench.Layouts measured the alternatives).
	Delta
)

func (k Kind) String() string {
	if k == Delta {
		return "delta"
	}
	return "full"
}

// Layout places a release's chunks, as stored zstd frames, one after the
// other in a torrent's single file.
type Layout struct {
	Release  core.ReleaseID
	Kind     Kind
	PieceLen int64
	Length   int64
	Chunks   []Span // in torrent order
}

// Span is one chunk's place in a torrent.
type Span struct {
	Index int // in the manifest's chunk table
	ID    core.ChunkID
	Size  uint32 // uncompressed
	Off   int64  // offset of its frame in the torrent
	CSize int64  // frame size
}

// NewLayout lays out the chunks of m (all of them for Full; those parent
// lacks for Delta) given each frame's size.
func NewLayout(id core.ReleaseID, m, parent *artifact.Manifest, kind Kind, csize func(core.ChunkID) (int64, error)) (*Layout, error) {
	have := map[core.ChunkID]bool{}
	if kind == Delta {
		if parent == nil {
			return nil, errors.New("layout: a delta needs the parent manifest")
		}
		for _, c := range parent.Chunks {
			have[c.ID] = true
		}
	}
	l := &Layout{Release: id, Kind: kind}
	for i, c := range m.Chunks {
		if have[c.ID] {
			continue
		}
		n, err := csize(c.ID)
		if err != nil {
			return nil, fmt.Errorf("layout: %w", err)
		}
		l.Chunks = append(l.Chunks, Span{Index: i, ID: c.ID, Size: c.Size, Off: l.Length, CSize: n})
		l.Length += n
	}
	l.PieceLen = pieceLenFor(l.Length)
	return l, nil
}

// pieceLenFor picks a power of two giving about 1,024 pieces, between
// 16 KiB and 4 MiB: small deltas get small pieces, so the last piece wastes
// little. Measured at 32 hosts (BenchmarkFanOut, S/U 122 s): 512 pieces
// left a tail — each piece crosses every hop whole, and hosts forward their
// stripes at exactly their upload rate — at 1.13 S/U; 1,024 pieces took
// 1.06. At 2,000, anacrolix spent more CPU on HAVE messages and request
// planning than on moving bytes.
func pieceLenFor(length int64) int64 {
	const minLen, maxLen = 16 << 10, 4 << 20
	target := length / 1024
	if target <= minLen {
		return minLen
	}
	p := int64(1) << (63 - bits.LeadingZeros64(uint64(target-1)) + 1)
	return min(p, maxLen)
}

// Pieces returns the number of pieces.
func (l *Layout) Pieces() int {
	if l.Length == 0 {
		return 0
	}
	return int((l.Length + l.PieceLen - 1) / l.PieceLen)
}

// overlapping returns the spans overlapping [off, off+n).
func (l *Layout) overlapping(off, n int64) []Span {
	// Binary search the first span ending after off.
	lo, hi := 0, len(l.Chunks)
	for lo < hi {
		mid := (lo + hi) / 2
		if s := l.Chunks[mid]; s.Off+s.CSize <= off {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	end := lo
	for end < len(l.Chunks) && l.Chunks[end].Off < off+n {
		end++
	}
	return l.Chunks[lo:end]
}

// infoDict is the torrent's info dictionary: a single file holding the
// frames, plus "x-scatter", the layout, so that the info hash (signed in the
// release announcement) authenticates it. Stock clients ignore the extra key.
type infoDict struct {
	Length      int64  `bencode:"length"`
	Name        string `bencode:"name"`
	PieceLength int64  `bencode:"piece length"`
	Pieces      []byte `bencode:"pieces"`
	Scatter     []byte `bencode:"x-scatter"`
}

const layoutMagic = "scatter-layout/1"

// InfoBytes builds the bencoded info dictionary, hashing the frames that
// read returns for each chunk (SHA-1 pieces, as BitTorrent v1 requires;
// chunks are verified by SHA-256 as well when they arrive).
func (l *Layout) InfoBytes(read func(core.ChunkID) ([]byte, error)) ([]byte, error) {
	var pieces []byte
	h := sha1.New()
	inPiece := int64(0)
	for _, s := range l.Chunks {
		z, err := read(s.ID)
		if err != nil {
			return nil, fmt.Errorf("torrent info: %w", err)
		}
		if int64(len(z)) != s.CSize {
			return nil, fmt.Errorf("torrent info: chunk %s: frame is %d bytes, layout says %d", s.ID.Short(), len(z), s.CSize)
		}
		for len(z) > 0 {
			n := min(int64(len(z)), l.PieceLen-inPiece)
			h.Write(z[:n])
			z = z[n:]
			inPiece += n
			if inPiece == l.PieceLen {
				pieces = h.Sum(pieces)
				h.Reset()
				inPiece = 0
			}
		}
	}
	if inPiece > 0 {
		pieces = h.Sum(pieces)
	}
	d := infoDict{
		Length: l.Length, Name: l.Release.String() + "." + l.Kind.String(), PieceLength: l.PieceLen,
		Pieces: pieces, Scatter: l.encode(),
	}
	return bencode.Marshal(d)
}

func (l *Layout) encode() []byte {
	b := append([]byte(layoutMagic), l.Release[:]...)
	b = append(b, byte(l.Kind))
	b = binary.AppendUvarint(b, uint64(len(l.Chunks)))
	prev := -1
	for _, s := range l.Chunks {
		b = binary.AppendUvarint(b, uint64(s.Index-prev-1))
		b = binary.AppendUvarint(b, uint64(s.CSize))
		prev = s.Index
	}
	return b
}

// ParseInfo decodes info bytes against the release's manifest and checks
// that they describe a layout of it. The caller has checked the info hash.
func ParseInfo(info []byte, id core.ReleaseID, m *artifact.Manifest) (*Layout, error) {
	var d infoDict
	if err := bencode.Unmarshal(info, &d); err != nil {
		return nil, fmt.Errorf("torrent info: %w", err)
	}
	b := d.Scatter
	if !bytes.HasPrefix(b, []byte(layoutMagic)) || len(b) < len(layoutMagic)+core.HashSize+1 {
		return nil, errors.New("torrent info: no scatter layout")
	}
	b = b[len(layoutMagic):]
	l := &Layout{Kind: Kind(b[core.HashSize]), PieceLen: d.PieceLength}
	copy(l.Release[:], b)
	b = b[core.HashSize+1:]
	if l.Release != id {
		return nil, fmt.Errorf("torrent info: layout is for release %s, want %s", l.Release.Short(), id.Short())
	}
	if l.Kind != Full && l.Kind != Delta {
		return nil, fmt.Errorf("torrent info: unknown kind %d", l.Kind)
	}
	if l.PieceLen < 16<<10 || l.PieceLen > 16<<20 || l.PieceLen&(l.PieceLen-1) != 0 {
		return nil, fmt.Errorf("torrent info: piece length %d", l.PieceLen)
	}
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(m.Chunks)) {
		return nil, errors.New("torrent info: bad chunk count")
	}
	b = b[k:]
	prev := -1
	for range n {
		step, k1 := binary.Uvarint(b)
		if k1 <= 0 {
			return nil, errors.New("torrent info: truncated layout")
		}
		cs, k2 := binary.Uvarint(b[k1:])
		if k2 <= 0 {
			return nil, errors.New("torrent info: truncated layout")
		}
		b = b[k1+k2:]
		idx := uint64(prev) + 1 + step
		if step >= uint64(len(m.Chunks)) || idx >= uint64(len(m.Chunks)) || cs == 0 || cs > 2*uint64(m.Chunking.Max)+1024 {
			return nil, errors.New("torrent info: layout entry out of range")
		}
		c := m.Chunks[idx]
		l.Chunks = append(l.Chunks, Span{Index: int(idx), ID: c.ID, Size: c.Size, Off: l.Length, CSize: int64(cs)})
		l.Length += int64(cs)
		prev = int(idx)
	}
	if len(b) != 0 {
		return nil, errors.New("torrent info: trailing layout bytes")
	}
	if l.Kind == Full && len(l.Chunks) != len(m.Chunks) {
		return nil, errors.New("torrent info: a full layout must hold every chunk")
	}
	if l.Length != d.Length || int64(len(d.Pieces)) != int64(l.Pieces())*sha1.Size {
		return nil, errors.New("torrent info: length or piece count does not match the layout")
	}
	return l, nil
}

// InfoHash is the BitTorrent v1 info hash of info bytes.
func InfoHash(info []byte) metainfo.Hash { return metainfo.HashBytes(info) }

// Torrent is a layout with its info bytes.
type Torrent struct {
	Layout *Layout
	Info   []byte
}

// InfoHash is the torrent's v1 info hash.
func (t *Torrent) InfoHash() metainfo.Hash { return InfoHash(t.Info) }

// MakeTorrent lays out release sm (a delta against parent when kind is
// Delta) from the frames in st.
func MakeTorrent(st *artifact.Store, sm *artifact.Signed, parent *artifact.Manifest, kind Kind) (*Torrent, error) {
	l, err := NewLayout(sm.ID, sm.Manifest, parent, kind, st.CompressedSize)
	if err != nil {
		return nil, err
	}
	// Hash only frames that decode to their chunk: a frame damaged on the
	// origin's disk would otherwise be baked into the piece hashes, pass
	// every SHA-1 check and fail every host's SHA-256 check, forever.
	sizes := make(map[core.ChunkID]uint32, len(l.Chunks))
	for _, c := range l.Chunks {
		sizes[c.ID] = c.Size
	}
	info, err := l.InfoBytes(func(id core.ChunkID) ([]byte, error) {
		z, err := st.ReadCompressedChunk(id)
		if err == nil {
			err = artifact.CheckFrame(id, z, int(sizes[id]))
		}
		return z, err
	})
	if err != nil {
		return nil, err
	}
	return &Torrent{Layout: l, Info: info}, nil
}
