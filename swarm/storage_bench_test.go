package swarm

import (
	"bytes"
	"context"
	"crypto/sha1"
	"fmt"
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
	t      testing.TB
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
func newPieceRig(t testing.TB, size, pieceLen int64) *pieceRig {
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

// BenchmarkPieceStorage is a host's storage receiving one torrent the way
// anacrolix drives it, without the wire: blocks written, each piece hashed
// (by itself when it offers to, else read back as anacrolix does) and
// marked complete, in a shuffled order, then finished. The store it
// writes to is opened outside the timer.
//
//	go test ./swarm -run XXX -bench PieceStorage -benchtime 20x
func BenchmarkPieceStorage(b *testing.B) {
	for _, pieceLen := range []int64{32 << 10, 64 << 10} {
		r := newPieceRig(b, 8<<20, pieceLen)
		order := rand.New(rand.NewPCG(3, 4)).Perm(r.info.NumPieces())
		for _, blk := range []int{16 << 10, int(min(pieceLen, 64<<10))} {
			b.Run(fmt.Sprintf("piece=%dK/block=%dK", pieceLen>>10, blk>>10), func(b *testing.B) {
				r.t = b
				b.SetBytes(int64(len(r.data)))
				for b.Loop() {
					b.StopTimer()
					r.host = openStore(b)
					r.cs = newChunkStorage(r.host, r.tor.Layout, datadir.Repo(b.TempDir()), slog.New(slog.DiscardHandler), clock.Real{})
					var err error
					if r.ti, err = r.cs.OpenTorrent(context.Background(), &r.info, r.tor.InfoHash().anacrolix()); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
					for _, i := range order {
						r.write(i, r.data[r.info.Piece(i).Offset():r.info.Piece(i).Offset()+r.info.Piece(i).Length()], 0, blk)
						if ok, _ := r.check(i); !ok {
							b.Fatalf("piece %d failed", i)
						}
					}
					if err := r.cs.finish(); err != nil {
						b.Fatal(err)
					}
					b.StopTimer()
					r.ti.Close()
					r.host.Close()
					b.StartTimer()
				}
			})
		}
	}
}
