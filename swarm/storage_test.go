package swarm

import (
	"bytes"
	"context"
	"crypto/sha1"
	"io"
	"log/slog"
	"math/rand/v2"
	"testing"

	g "github.com/anacrolix/generics"
	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
	"github.com/anacrolix/torrent/storage"

	"scatter/artifact"
	"scatter/artifact/datadir"
	"scatter/swarm/clock"
)

// pieceRig is a host's chunkStorage for one torrent of a release built in
// an origin store, driven the way anacrolix drives it: blocks written,
// the piece hashed (by itself when it offers to, else read back), then
// marked complete or not complete.
type pieceRig struct {
	t      *testing.T
	origin *artifact.Store
	host   *artifact.Store
	tor    *Torrent
	info   metainfo.Info
	data   []byte // the torrent's bytes
	cs     *chunkStorage
	ti     storage.TorrentImpl
}

// newPieceRig builds a release of about size bytes and lays it out in
// pieces of pieceLen bytes (larger than PieceLenFor gives so small a
// release, so that pieces take several blocks).
func newPieceRig(t *testing.T, size, pieceLen int64) *pieceRig {
	t.Helper()
	origin := openStore(t)
	r1, _ := buildReleases(t, origin, size)
	tor, err := MakeTorrent(origin, r1.sm, nil, Full)
	if err != nil {
		t.Fatal(err)
	}
	tor.Layout.PieceLen = pieceLen
	if tor.Info, err = tor.Layout.InfoBytes(origin.ReadCompressedChunk); err != nil {
		t.Fatal(err)
	}
	r := &pieceRig{t: t, origin: origin, host: openStore(t), tor: tor}
	if err := bencode.Unmarshal(tor.Info, &r.info); err != nil {
		t.Fatal(err)
	}
	for c, err := range tor.Layout.Chunks {
		if err != nil {
			t.Fatal(err)
		}
		z, err := origin.ReadCompressedChunk(c.ID)
		if err != nil {
			t.Fatal(err)
		}
		r.data = append(r.data, z...)
	}
	r.cs = newChunkStorage(r.host, tor.Layout, datadir.Repo(t.TempDir()), slog.New(slog.DiscardHandler), clock.Real{})
	r.ti, err = r.cs.OpenTorrent(context.Background(), &r.info, tor.InfoHash().anacrolix())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.ti.Close() })
	return r
}

func (r *pieceRig) piece(i int) storage.PieceImpl {
	return r.ti.PieceWithHash(r.info.Piece(i), g.None[[]byte]())
}

func (r *pieceRig) bytesOf(i int) []byte {
	p := r.info.Piece(i)
	return bytes.Clone(r.data[p.Offset() : p.Offset()+p.Length()])
}

// write delivers bytes b of piece i, from offset at, in blocks of blk, as
// requests would.
func (r *pieceRig) write(i int, b []byte, at, blk int) {
	r.t.Helper()
	for off := 0; off < len(b); off += blk {
		end := min(off+blk, len(b))
		if _, err := r.piece(i).WriteAt(b[off:end], int64(at+off)); err != nil {
			r.t.Fatal(err)
		}
	}
}

// check hashes piece i as anacrolix does, marks it accordingly and says
// whether it passed and whether it hashed itself.
func (r *pieceRig) check(i int) (ok, self bool) {
	r.t.Helper()
	p := r.piece(i)
	var sum metainfo.Hash
	if sh, yes := p.(storage.SelfHashing); yes {
		self = true
		var err error
		if sum, err = sh.SelfHash(); err != nil {
			r.t.Fatal(err)
		}
	} else {
		h := sha1.New()
		if _, err := io.Copy(h, io.NewSectionReader(p, 0, r.info.Piece(i).Length())); err != nil {
			r.t.Fatal(err)
		}
		h.Sum(sum[:0])
	}
	ok = sum == r.info.Piece(i).V1Hash().Unwrap()
	var err error
	if ok {
		err = p.MarkComplete()
	} else {
		err = p.MarkNotComplete()
	}
	if err != nil {
		r.t.Fatal(err)
	}
	return ok, self
}

// storedOverlapping says whether any chunk overlapping piece i is stored.
func (r *pieceRig) storedOverlapping(i int) bool {
	p := r.info.Piece(i)
	for c, err := range r.tor.Layout.overlapping(p.Offset(), p.Length()) {
		if err != nil {
			r.t.Fatal(err)
		}
		if r.host.HasChunk(c.ID) {
			return true
		}
	}
	return false
}

// checkStored finishes the transfer and compares every stored frame with
// the origin's.
func (r *pieceRig) checkStored() {
	r.t.Helper()
	if err := r.cs.finish(); err != nil {
		r.t.Fatal(err)
	}
	for c, err := range r.tor.Layout.Chunks {
		if err != nil {
			r.t.Fatal(err)
		}
		got, err := r.host.ReadCompressedChunk(c.ID)
		if err != nil || !bytes.Equal(got, r.data[c.Off:c.Off+c.CSize]) {
			r.t.Fatalf("chunk %s: stored frame differs from the origin's (%v)", c.ID.Short(), err)
		}
	}
}

// Pieces received into memory hash themselves and give MarkComplete their
// frames. A piece that fails its hash is never stored, is hashed by
// anacrolix (reading it back, so smart ban can compare blocks) once it is
// fetched again, and its chunks are then stored intact. Pieces complete in
// a shuffled order, so frames spanning pieces wait for their last piece.
func TestPiecesHashFromMemory(t *testing.T) {
	r := newPieceRig(t, 3<<20, 64<<10)
	n := r.info.NumPieces()
	if n < 8 || r.tor.Layout.Len() < 4 || r.info.Piece(n-1).Length()%bufUnit == 0 {
		t.Fatalf("want several pieces and chunks and a last piece of a partial block, have %d pieces, %d chunks, last piece %d bytes",
			n, r.tor.Layout.Len(), r.info.Piece(n-1).Length())
	}
	bad := n / 2
	order := rand.New(rand.NewPCG(1, 2)).Perm(n)
	for _, i := range order {
		if i == bad {
			continue
		}
		b := r.bytesOf(i)
		if i%3 == 0 {
			// The same block twice, the first time wrong: the last write counts.
			junk := bytes.Repeat([]byte{0xa5}, min(bufUnit, len(b)))
			r.write(i, junk, 0, bufUnit)
		}
		r.write(i, b, 0, bufUnit)
		if ok, self := r.check(i); !ok || !self {
			t.Fatalf("piece %d: passed %v, hashed itself %v", i, ok, self)
		}
	}
	// The bad piece comes corrupt from a peer: one byte flipped.
	b := r.bytesOf(bad)
	b[len(b)/2] ^= 1
	r.write(bad, b, 0, bufUnit)
	if ok, self := r.check(bad); ok || !self {
		t.Fatalf("corrupt piece %d: passed %v, hashed itself %v", bad, ok, self)
	}
	if r.storedOverlapping(bad) {
		t.Fatal("a chunk of the corrupt piece reached the store")
	}
	// Fetched again, in one block this time.
	r.write(bad, r.bytesOf(bad), 0, len(b))
	if ok, self := r.check(bad); !ok || self {
		t.Fatalf("refetched piece %d: passed %v, hashed itself %v (want a read-back hash)", bad, ok, self)
	}
	r.checkStored()
	if got := r.cs.memHashed.Load(); got != int64(n) {
		t.Fatalf("%d pieces hashed from memory, want %d", got, n)
	}
	if r.cs.nbufs > r.cs.maxBufs || len(r.cs.bufs) != 0 {
		t.Fatalf("%d buffers allocated (limit %d), %d still held", r.cs.nbufs, r.cs.maxBufs, len(r.cs.bufs))
	}
}

// With the pool exhausted, pieces fall back to the partial file: anacrolix
// reads them back to hash them and their frames come from the file.
func TestPieceBuffersAreBounded(t *testing.T) {
	defer func(b int64) { pieceBufBudget = b }(pieceBufBudget)
	pieceBufBudget = 1 // one buffer
	r := newPieceRig(t, 2<<20, 32<<10)
	n := r.info.NumPieces()
	// Every piece's first block arrives before any piece completes: only
	// the first gets a buffer.
	for i := range n {
		b := r.bytesOf(i)
		r.write(i, b[:min(bufUnit, len(b))], 0, bufUnit)
	}
	selfHashed := 0
	for i := n - 1; i >= 0; i-- {
		b := r.bytesOf(i)
		if len(b) > bufUnit {
			r.write(i, b[bufUnit:], bufUnit, bufUnit)
		}
		ok, self := r.check(i)
		if !ok {
			t.Fatalf("piece %d failed its hash", i)
		}
		if self {
			selfHashed++
		}
	}
	if selfHashed != 1 || r.cs.nbufs != 1 || r.cs.spills.Load() != int64(n-1) {
		t.Fatalf("%d pieces hashed themselves, %d buffers, %d spills; want 1, 1, %d", selfHashed, r.cs.nbufs, r.cs.spills.Load(), n-1)
	}
	r.checkStored()
}

// Closing the storage with pieces in flight releases their buffers; a
// piece that offered to hash itself then reads back instead, and writes
// fail rather than land anywhere.
func TestPieceBuffersReleasedOnClose(t *testing.T) {
	r := newPieceRig(t, 1<<20, 32<<10)
	b := r.bytesOf(0)
	r.write(0, b, 0, bufUnit)
	r.write(1, r.bytesOf(1)[:bufUnit], 0, bufUnit)
	p := r.piece(0)
	sh, ok := p.(storage.SelfHashing)
	if !ok {
		t.Fatal("a piece held in memory does not hash itself")
	}
	if err := r.ti.Close(); err != nil {
		t.Fatal(err)
	}
	if len(r.cs.bufs) != 0 || len(r.cs.free) != 0 {
		t.Fatalf("%d buffers held, %d pooled after close", len(r.cs.bufs), len(r.cs.free))
	}
	if _, err := sh.SelfHash(); err != nil {
		t.Fatal(err)
	}
	if r.cs.readHashed.Load() != 1 {
		t.Fatal("SelfHash after close did not fall back to reading the piece")
	}
	if _, err := r.piece(1).WriteAt(b[:bufUnit], bufUnit); err == nil {
		t.Fatal("a write after close succeeded")
	}
}

// A transfer through real anacrolix peers with a one-buffer pool: some
// pieces hash from memory, the rest are read back, and the fetched
// release is intact.
func TestFetchWithTinyPiecePool(t *testing.T) {
	defer func(b int64) { pieceBufBudget = b }(pieceBufBudget)
	pieceBufBudget = 1
	origin := openStore(t)
	r1, _ := buildReleases(t, origin, 4<<20)
	full1, err := MakeTorrent(origin, r1.sm, nil, Full)
	if err != nil {
		t.Fatal(err)
	}
	oe := newEngine(t, "127.0.0.251")
	if _, err := oe.Add(origin, full1.Layout, full1.Info, datadir.Repo(t.TempDir())); err != nil {
		t.Fatal(err)
	}
	host := openStore(t)
	if err := host.PutManifest(r1.sm); err != nil {
		t.Fatal(err)
	}
	x := fetch(t, newEngine(t, "127.0.0.252"), host, full1, oe.Addr())
	checkMaterialized(t, host, r1)
	mem, spills := x.st.memHashed.Load(), x.st.spills.Load()
	t.Logf("%d pieces: %d hashed from memory, %d spilled to the partial file", full1.Layout.Pieces(), mem, spills)
	if mem == 0 || spills == 0 {
		t.Fatalf("want both paths taken: %d hashed from memory, %d spilled", mem, spills)
	}
}
