package swarm

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/anacrolix/torrent/storage"

	"scatter/artifact/datadir"
)

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
