package swarm

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/anacrolix/torrent/storage"

	"scatter/artifact/datadir"
	"scatter/swarm/clock"
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
	r.checkServes() // from the partial file
	r.checkStored()
	r.checkServes() // from the store
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
	r.checkServes()
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

// checkServes reads every piece back in 16 KiB blocks, as anacrolix does
// to serve a peer, and compares it with the torrent's bytes.
func (r *pieceRig) checkServes() {
	r.t.Helper()
	for i := range r.info.NumPieces() {
		want := r.bytesOf(i)
		got := make([]byte, len(want))
		for off := 0; off < len(want); off += bufUnit {
			end := min(off+bufUnit, len(want))
			if n, err := r.piece(i).ReadAt(got[off:end], int64(off)); n != end-off || (err != nil && err != io.EOF) {
				r.t.Fatalf("piece %d: read %d of %d bytes at %d: %v", i, n, end-off, off, err)
			}
		}
		if !bytes.Equal(got, want) {
			r.t.Fatalf("piece %d: served bytes differ from the torrent's", i)
		}
	}
}

// A piece marked complete after a restart (rechecked, not written in this
// session) is served from the store where it holds the chunks, never from
// the partial file: the file is not synced, and after a power loss it may
// have lost bytes of chunks that made it into a (synced) pack.
func TestRecheckedPieceIsNotServedFromPartialFile(t *testing.T) {
	r := newPieceRig(t, 1<<20, 32<<10)
	n := r.info.NumPieces()
	// Every piece but the last: chunks running into it stay unstored.
	for i := range n - 1 {
		r.write(i, r.bytesOf(i), 0, bufUnit)
		if ok, _ := r.check(i); !ok {
			t.Fatalf("piece %d failed", i)
		}
	}
	r.cs.mu.Lock()
	if err := r.cs.flushLocked(); err != nil {
		t.Fatal(err)
	}
	r.cs.mu.Unlock()
	r.ti.Close()
	// The partial file loses the bytes of every stored chunk.
	f, err := os.OpenFile(r.cs.path("partial"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	for c, err := range r.tor.Layout.Chunks {
		if err != nil {
			t.Fatal(err)
		}
		if r.host.HasChunk(c.ID) {
			if _, err := f.WriteAt(make([]byte, c.CSize), c.Off); err != nil {
				t.Fatal(err)
			}
		}
	}
	f.Close()
	r.cs = newChunkStorage(r.host, r.tor.Layout, r.cs.dir, slog.New(slog.DiscardHandler), clock.Real{})
	if r.ti, err = r.cs.OpenTorrent(context.Background(), &r.info, r.tor.InfoHash().anacrolix()); err != nil {
		t.Fatal(err)
	}
	rechecked := 0
	for i := range n - 1 {
		if c := r.piece(i).Completion(); !c.Ok {
			if ok, _ := r.check(i); !ok {
				t.Fatalf("piece %d failed its recheck", i)
			}
			rechecked++
		} else if !c.Complete {
			t.Fatalf("piece %d: completion %+v", i, c)
		}
		want := r.bytesOf(i)
		got := make([]byte, len(want))
		if _, err := r.piece(i).ReadAt(got, 0); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("piece %d: served bytes differ from the torrent's (%v)", i, err)
		}
	}
	if rechecked == 0 {
		t.Fatal("no piece was rechecked: the test proves nothing")
	}
}

// Between scatter peers a request is up to 64 KiB, so the requests kept in
// flight to one peer are capped to fit requestBudget: a peer's v1.59.1
// upload stalls once the requests it queued from a connection outgrow its
// 16 MiB allowance, and anacrolix would otherwise keep ~960 in flight.
func TestRequestQueueFitsPeerBudget(t *testing.T) {
	origin := openStore(t)
	r1, _ := buildReleases(t, origin, 1<<20)
	tor, err := MakeTorrent(origin, r1.sm, nil, Full)
	if err != nil {
		t.Fatal(err)
	}
	tor.Layout.PieceLen = 128 << 10 // 64 KiB requests
	if tor.Info, err = tor.Layout.InfoBytes(origin.ReadCompressedChunk); err != nil {
		t.Fatal(err)
	}
	// The origin uploads slowly, so that the connection lasts.
	oe, err := NewEngine(EngineConfig{ListenAddr: "127.0.0.253:0", UploadRate: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { oe.Close() })
	_, err = oe.Add(origin, tor.Layout, tor.Info, datadir.Repo(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	host := openStore(t)
	if err := host.PutManifest(r1.sm); err != nil {
		t.Fatal(err)
	}
	he := newEngine(t, "127.0.0.254")
	x, err := he.Add(host, tor.Layout, tor.Info, datadir.Repo(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	x.Download()
	x.AddPeers([]string{oe.Addr()})
	want := int(requestBudget / maxRequestLen)
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := append(peerMaxRequests(t, he), peerMaxRequests(t, oe)...)
		if len(got) == 2 && got[0] == want && got[1] == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("requests allowed in flight on each side: %v, want %d each", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := x.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	checkMaterialized(t, host, r1)
}

// peerMaxRequests returns, for each of e's peer connections, how many
// requests the peer allows in flight. PeerConn.PeerMaxRequests is written
// under the client's lock, which anacrolix does not export; its status page
// reads it under that lock, in each connection's "reqq: r+c/(n/max):..."
// line.
func peerMaxRequests(t *testing.T, e *Engine) []int {
	t.Helper()
	var b strings.Builder
	e.cl.WriteStatus(&b)
	var got []int
	for line := range strings.Lines(b.String()) {
		_, rest, ok := strings.Cut(line, "reqq: ")
		if !ok {
			continue
		}
		var r, c, n, most int
		if _, err := fmt.Sscanf(rest, "%d+%d/(%d/%d)", &r, &c, &n, &most); err != nil {
			t.Fatalf("status line %q: %v", line, err)
		}
		got = append(got, most)
	}
	return got
}
