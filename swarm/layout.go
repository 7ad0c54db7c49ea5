package swarm

import (
	"bytes"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"math/bits"
	"sort"

	"github.com/anacrolix/torrent/bencode"

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
// other in a torrent's single file. It refers to the release's chunk table
// rather than copying it: a 2 GiB release has some 160k chunks, and a span
// per chunk with its ID cost 64 bytes each, where an offset costs 4 (the
// table keeps its IDs on disk, artifact.Table).
type Layout struct {
	Release  core.ReleaseID
	Kind     Kind
	PieceLen int64
	Length   int64
	table    *artifact.Table // the release's chunk table, shared
	index    []uint32        // each span's place in table; nil: span i is chunk i
	// Span i starts at base[i/offBlock] + rel[i]: a frame is at most
	// 32 MiB (ParseInfo), so a block of offBlock spans spans less than
	// 4 GiB.
	base []int64
	rel  []uint32
}

const offBlock = 64

// maxInfoSize bounds the info bytes a node accepts from a peer: those of
// a 2 GiB release are about 1 MB (a span costs 8 bytes, a piece 20).
const maxInfoSize = 64 << 20

// Span is one chunk's place in a torrent.
type Span struct {
	Index int // in the manifest's chunk table
	ID    core.ChunkID
	Size  uint32 // uncompressed
	Off   int64  // offset of its frame in the torrent
	CSize int64  // frame size
}

// Len returns the number of spans.
func (l *Layout) Len() int { return len(l.rel) }

// off returns the offset of span i, or Length for i == Len().
func (l *Layout) off(i int) int64 {
	if i == len(l.rel) {
		return l.Length
	}
	return l.base[i/offBlock] + int64(l.rel[i])
}

// Span returns span i, in torrent order. It fails only when the chunk
// table's file cannot be read.
func (l *Layout) Span(i int) (Span, error) {
	idx := i
	if l.index != nil {
		idx = int(l.index[i])
	}
	c, err := l.table.Ref(idx)
	if err != nil {
		return Span{}, err
	}
	off := l.off(i)
	return Span{Index: idx, ID: c.ID, Size: c.Size, Off: off, CSize: l.off(i+1) - off}, nil
}

// Chunks yields the spans in torrent order, and stops after an error:
// for s, err := range l.Chunks.
func (l *Layout) Chunks(yield func(Span, error) bool) {
	l.spans(0, l.Len(), yield)
}

func (l *Layout) spans(from, to int, yield func(Span, error) bool) {
	for i := from; i < to; i++ {
		s, err := l.Span(i)
		if !yield(s, err) || err != nil {
			return
		}
	}
}

// newLayout starts an empty layout over table, with room for n spans;
// delta layouts list which chunks they hold.
func newLayout(id core.ReleaseID, kind Kind, table *artifact.Table, n int) *Layout {
	l := &Layout{Release: id, Kind: kind, table: table, base: make([]int64, 0, n/offBlock+1), rel: make([]uint32, 0, n)}
	if kind == Delta {
		l.index = make([]uint32, 0, n)
	}
	return l
}

// add appends chunk idx of the table with a frame of csize bytes.
func (l *Layout) add(idx int, csize int64) {
	if l.index != nil {
		l.index = append(l.index, uint32(idx))
	}
	i := len(l.rel)
	if i%offBlock == 0 {
		l.base = append(l.base, l.Length)
	}
	l.rel = append(l.rel, uint32(l.Length-l.base[i/offBlock]))
	l.Length += csize
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
	l := newLayout(id, kind, artifact.ManifestTable(id, m), max(len(m.Chunks)-len(have), 0))
	for i, c := range m.Chunks {
		if have[c.ID] {
			continue
		}
		n, err := csize(c.ID)
		if err != nil {
			return nil, fmt.Errorf("layout: %w", err)
		}
		l.add(i, n)
	}
	l.PieceLen = PieceLenFor(l.Length)
	return l, nil
}

// PieceLenFor picks a power of two giving about 1,024 pieces, between
// 16 KiB and 4 MiB: small deltas get small pieces, so the last piece wastes
// little. Measured at 32 hosts (BenchmarkFanOut, S/U 122 s): 512 pieces
// left a tail — each piece crosses every hop whole, and hosts forward their
// stripes at exactly their upload rate — at 1.13 S/U; 1,024 pieces took
// 1.06. At 2,000, anacrolix spent more CPU on HAVE messages and request
// planning than on moving bytes.
func PieceLenFor(length int64) int64 {
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

// overlapping yields the spans overlapping [off, off+n), and stops after
// an error.
func (l *Layout) overlapping(off, n int64) iter.Seq2[Span, error] {
	return func(yield func(Span, error) bool) {
		// From the first span ending after off, to the first starting at
		// or after its end.
		from := sort.Search(l.Len(), func(i int) bool { return l.off(i+1) > off })
		to := sort.Search(l.Len(), func(i int) bool { return l.off(i) >= off+n })
		l.spans(from, max(from, to), yield)
	}
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
// each chunk is checked by SHA-256 as well when it is staged).
func (l *Layout) InfoBytes(read func(core.ChunkID) ([]byte, error)) ([]byte, error) {
	var pieces []byte
	h := sha1.New()
	inPiece := int64(0)
	for s, err := range l.Chunks {
		if err != nil {
			return nil, fmt.Errorf("torrent info: %w", err)
		}
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
	b = binary.AppendUvarint(b, uint64(l.Len()))
	prev := -1
	for i := range l.Len() {
		idx := i
		if l.index != nil {
			idx = int(l.index[i])
		}
		b = binary.AppendUvarint(b, uint64(idx-prev-1))
		b = binary.AppendUvarint(b, uint64(l.off(i+1)-l.off(i)))
		prev = idx
	}
	return b
}

// ParseInfo decodes info bytes against the release's chunk table and checks
// that they describe a layout of it. The caller has checked the info hash.
func ParseInfo(info []byte, t *artifact.Table) (*Layout, error) {
	id := t.ID
	var d infoDict
	if err := bencode.Unmarshal(info, &d); err != nil {
		return nil, fmt.Errorf("torrent info: %w", err)
	}
	b := d.Scatter
	if !bytes.HasPrefix(b, []byte(layoutMagic)) || len(b) < len(layoutMagic)+core.HashSize+1 {
		return nil, errors.New("torrent info: no scatter layout")
	}
	b = b[len(layoutMagic):]
	kind, release := Kind(b[core.HashSize]), core.ReleaseID(b[:core.HashSize])
	b = b[core.HashSize+1:]
	if release != id {
		return nil, fmt.Errorf("torrent info: layout is for release %s, want %s", release.Short(), id.Short())
	}
	if kind != Full && kind != Delta {
		return nil, fmt.Errorf("torrent info: unknown kind %d", kind)
	}
	if d.PieceLength < 16<<10 || d.PieceLength > 16<<20 || d.PieceLength&(d.PieceLength-1) != 0 {
		return nil, fmt.Errorf("torrent info: piece length %d", d.PieceLength)
	}
	chunks := uint64(t.Len())
	n, k := binary.Uvarint(b)
	if k <= 0 || n > chunks {
		return nil, errors.New("torrent info: bad chunk count")
	}
	if kind == Full && n != chunks {
		return nil, errors.New("torrent info: a full layout must hold every chunk")
	}
	b = b[k:]
	l := newLayout(id, kind, t, int(n))
	l.PieceLen = d.PieceLength
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
		if step >= chunks || idx >= chunks || cs == 0 || cs > 2*uint64(t.Chunking.Max)+1024 {
			return nil, errors.New("torrent info: layout entry out of range")
		}
		l.add(int(idx), int64(cs))
		prev = int(idx)
	}
	if len(b) != 0 {
		return nil, errors.New("torrent info: trailing layout bytes")
	}
	if l.Length != d.Length || int64(len(d.Pieces)) != int64(l.Pieces())*sha1.Size {
		return nil, errors.New("torrent info: length or piece count does not match the layout")
	}
	return l, nil
}

// Torrent is a layout with its info bytes.
type Torrent struct {
	Layout *Layout
	Info   []byte
}

// InfoHash is the torrent's v1 info hash.
func (t *Torrent) InfoHash() InfoHash { return InfoHashOf(t.Info) }

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
	sizes := make(map[core.ChunkID]uint32, l.Len())
	for c, err := range l.Chunks {
		if err != nil {
			return nil, err
		}
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
