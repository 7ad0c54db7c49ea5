package swarm

import (
	"context"
	"crypto/sha1"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	g "github.com/anacrolix/generics"
	"github.com/anacrolix/torrent/metainfo"
	"github.com/anacrolix/torrent/storage"

	"scatter/artifact"
	"scatter/artifact/datadir"
	"scatter/swarm/clock"
)

// chunkStorage is an anacrolix storage over the artifact store for one
// torrent. A piece is complete, before any byte moves, when the store holds
// every chunk it overlaps: that is how a host holding the parent release
// skips what it has. Incoming blocks are staged in a sparse partial file;
// once a chunk's pieces have passed their SHA-1 check, its frame is added
// to the store (MarkComplete says why it is not decompressed there).
//
// A piece being received is also kept in memory, in a buffer from a small
// pool (pieceBufBudget): it hashes itself from there (storage.SelfHashing)
// and MarkComplete takes its frames from there, so a piece is not read
// back from the partial file twice. A piece that found the pool empty is
// hashed by anacrolix reading it back, as is one that failed a hash once
// (so that anacrolix compares its blocks with what each peer sent and
// bans the one that lied).
//
// A chunk is stored only when every piece it overlaps is done, so after a
// crash most pieces would look incomplete (a neighbour is missing) although
// their bytes sit in the partial file. A done-map beside it, one byte per
// piece, remembers them; after a restart those pieces are hash-checked
// again (Completion Ok=false) rather than fetched again.
type chunkStorage struct {
	st     *artifact.Store
	layout *Layout
	log    *slog.Logger

	dir      datadir.Repo // the repo whose partial/ holds the fetch files
	mu       sync.Mutex
	partial  *os.File // lazily created staging file
	doneMap  *os.File // one byte per piece: 1 once marked complete
	done     []bool   // pieces marked complete this session
	recheck  []bool   // pieces marked complete before a restart
	w        *artifact.Writer
	frame    []byte // MarkComplete's buffer for one frame, reused
	pending  int64  // bytes in w not yet flushed
	flushed  time.Time
	clock    clock.Clock
	closed   bool
	finished bool // every chunk stored, staging file removed
	readErrs atomic.Int64

	// Pieces being received are also kept in memory (pieceBuf), so that
	// their SHA-1 and their frames come from there rather than from
	// reading the partial file back. Buffers are pooled and bounded
	// (maxBufs); a piece that finds the pool empty at its first block,
	// or whose blocks do not fit it, is hashed and stored as before.
	bufs       map[int]*pieceBuf // pieces being received into memory
	free       []*pieceBuf       // released buffers, for reuse
	nbufs      int               // buffers allocated
	maxBufs    int
	spilled    []bool       // pieces written to the file only since their last reset
	hashFailed []bool       // pieces that failed a hash: hashed by anacrolix from now on
	written    []bool       // pieces written to the partial file in this session
	memHashed  atomic.Int64 // pieces SelfHash hashed from memory
	readHashed atomic.Int64 // pieces SelfHash read back (buffer gone)
	spills     atomic.Int64 // pieces that found the pool empty
}

// pieceBuf holds one piece's bytes as anacrolix writes them, in units of
// bufUnit (every request is a multiple of it, but the piece's last).
type pieceBuf struct {
	b    []byte
	got  []bool // units written
	left int    // units not written yet
	pins int    // SelfHash calls reading b outside the lock
	gone bool   // released while pinned: not to be reused
}

const bufUnit = 16 << 10

// pieceBufBudget bounds each torrent's piece buffers: 128 pieces of
// 32 KiB, 1 of 4 MiB (at least one buffer). A variable for tests.
var pieceBufBudget int64 = 4 << 20

func (b *pieceBuf) full() bool { return b.left == 0 }

// flushEvery and flushAfter bound what a crash can lose: chunks written to
// the store but not yet in a complete pack are fetched again after a
// restart, so a pack is completed every 4 MiB or every second.
const (
	flushEvery = 4 << 20
	flushAfter = time.Second
)

func newChunkStorage(st *artifact.Store, l *Layout, dir datadir.Repo, log *slog.Logger, clk clock.Clock) *chunkStorage {
	s := &chunkStorage{st: st, layout: l, dir: dir, log: log, done: make([]bool, l.Pieces()), recheck: make([]bool, l.Pieces()), flushed: clk.Now(), clock: clk,
		bufs: map[int]*pieceBuf{}, spilled: make([]bool, l.Pieces()), hashFailed: make([]bool, l.Pieces()), written: make([]bool, l.Pieces())}
	if l.PieceLen > 0 && pieceBufBudget > 0 {
		s.maxBufs = int(max(1, pieceBufBudget/l.PieceLen))
	}
	if b, err := os.ReadFile(s.path("done")); err == nil {
		for i := range min(len(b), len(s.recheck)) {
			s.recheck[i] = b[i] == 1
		}
	}
	return s
}

// OpenTorrent implements storage.ClientImpl for the one torrent it was made for.
func (s *chunkStorage) OpenTorrent(_ context.Context, info *metainfo.Info, _ metainfo.Hash) (storage.TorrentImpl, error) {
	if info.TotalLength() != s.layout.Length || info.PieceLength != s.layout.PieceLen {
		return storage.TorrentImpl{}, errors.New("swarm storage: info does not match the layout")
	}
	return storage.TorrentImpl{
		PieceWithHash: func(p metainfo.Piece, _ g.Option[[]byte]) storage.PieceImpl {
			cp := chunkPiece{s: s, index: p.Index(), off: p.Offset(), n: p.Length()}
			if s.selfHashes(cp.index) {
				return &memPiece{cp}
			}
			return &cp
		},
		Close: s.close,
	}, nil
}

func (s *chunkStorage) path(suffix string) string {
	return s.dir.PartialFile(s.layout.Release, s.layout.Kind.String(), suffix)
}

func (s *chunkStorage) partialFile() (*os.File, error) {
	if s.partial != nil {
		return s.partial, nil
	}
	if s.closed || s.finished {
		// A read racing with finish: the chunk is in the store now.
		return nil, errors.New("staging file already removed")
	}
	if err := os.MkdirAll(s.dir.Partial(), 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(s.path("partial"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	d, err := os.OpenFile(s.path("done"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		f.Close()
		return nil, err
	}
	s.partial, s.doneMap = f, d
	return f, nil
}

func (s *chunkStorage) closeFilesLocked() {
	if s.partial != nil {
		s.partial.Close()
		s.doneMap.Close()
		s.partial, s.doneMap = nil, nil
	}
}

// flushLocked completes the pack being written, making its chunks durable.
func (s *chunkStorage) flushLocked() error {
	if s.w == nil {
		return nil
	}
	err := s.w.Close()
	s.w, s.pending, s.flushed = nil, 0, s.clock.Now()
	return err
}

func (s *chunkStorage) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	for i := range s.bufs {
		s.releaseLocked(i)
	}
	s.free = nil
	err := s.flushLocked()
	s.closeFilesLocked()
	return err
}

// finish flushes and removes the partial file once every chunk is stored.
func (s *chunkStorage) finish() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.flushLocked(); err != nil {
		return err
	}
	for c, err := range s.layout.Chunks {
		if err != nil {
			return err
		}
		if !s.st.HasChunk(c.ID) {
			return fmt.Errorf("chunk %s not stored", c.ID.Short())
		}
	}
	s.closeFilesLocked()
	s.finished = true
	for i := range s.bufs {
		s.releaseLocked(i)
	}
	s.free = nil // a seeding torrent keeps no buffers
	s.log.Debug("fetch stored", "release", s.layout.Release, "kind", s.layout.Kind, "pieces", s.layout.Pieces(),
		"hashed_in_memory", s.memHashed.Load(), "spilled", s.spills.Load(), "buffers", s.nbufs)
	for _, suffix := range []string{"partial", "done"} {
		if err := os.Remove(s.path(suffix)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

type chunkPiece struct {
	s     *chunkStorage
	index int
	off   int64
	n     int64
}

var _ storage.PieceImpl = (*chunkPiece)(nil)

func (p *chunkPiece) Completion() storage.Completion {
	p.s.mu.Lock()
	done, recheck := p.s.done[p.index], p.s.recheck[p.index]
	p.s.mu.Unlock()
	if done {
		return storage.Completion{Ok: true, Complete: true}
	}
	for c, err := range p.s.layout.overlapping(p.off, p.n) {
		if err != nil {
			// Not Err: anacrolix answers a completion error by refusing
			// to download anything more of the torrent, for good. Unknown
			// makes it hash the piece, and that read reports the error.
			p.s.log.Warn("piece completion unknown", "release", p.s.layout.Release, "piece", p.index, "err", err)
			return storage.Completion{Ok: false}
		}
		// A stored frame of another size (compressed by another build) is
		// the same chunk but not the same torrent bytes.
		if cs, err := p.s.st.CompressedSize(c.ID); err != nil || cs != c.CSize {
			// Done before a restart: unknown until anacrolix rehashes it.
			return storage.Completion{Ok: !recheck, Complete: false}
		}
	}
	return storage.Completion{Ok: true, Complete: true}
}

// ReadAt serves piece bytes from the store's frames, or from the partial
// file for chunks not stored yet. A failure is logged (the first, then
// every 100th of the transfer): anacrolix answers a peer's request it
// cannot read with a reject and says nothing we would see.
func (p *chunkPiece) ReadAt(b []byte, off int64) (int, error) {
	n, err := p.readAt(b, off)
	if err != nil && err != io.EOF && p.s.isClosed() && off >= 0 && off+int64(len(b)) <= p.n {
		// The torrent was dropped or the node is closing while anacrolix
		// read this piece to serve a peer. v1.59.1 panics on a failed
		// read once its torrent is closed (servePeerRequest leaves the
		// request behind; fixed upstream after 1.59.1), which would take
		// the daemon down on every retention drop and shutdown that races
		// a serve. Its connections are closed with the torrent, so these
		// bytes are never sent: answer with zeros instead of an error.
		clear(b[n:])
		return len(b), nil
	}
	if err != nil && err != io.EOF {
		if k := p.s.readErrs.Add(1); k%100 == 1 {
			p.s.log.Warn("piece read failed", "release", p.s.layout.Release, "kind", p.s.layout.Kind,
				"piece", p.index, "off", off, "len", len(b), "failures", k, "err", err)
		}
	}
	return n, err
}

func (p *chunkPiece) readAt(b []byte, off int64) (int, error) {
	if off < 0 || off >= p.n {
		return 0, io.EOF
	}
	abs := p.off + off
	want := min(int64(len(b)), p.n-off)
	if p.s.readStaged(p.index, b[:want], abs) {
		if want < int64(len(b)) {
			return int(want), io.EOF
		}
		return int(want), nil
	}
	read := int64(0)
	for c, err := range p.s.layout.overlapping(abs, want) {
		if err != nil {
			return int(read), err
		}
		from := max(abs, c.Off)
		to := min(abs+want, c.Off+c.CSize)
		dst := b[from-abs : to-abs]
		if err := p.s.readSpan(c, dst, from); err != nil {
			return int(read), fmt.Errorf("read piece %d: %w", p.index, err)
		}
		read += to - from
	}
	if read < int64(len(b)) {
		return int(read), io.EOF
	}
	return int(read), nil
}

// readStaged reads dst at torrent offset abs, inside piece i, from the
// partial file if this session wrote the piece there and it passed its
// hash: its bytes are all there, whichever of its chunks are stored yet,
// until finish removes the file. One read serves a block that the store
// would serve frame by frame (a lookup and a read for each of the few-KiB
// frames a block spans). A piece rechecked after a restart is not read
// from there: the partial file is not synced, the store's packs are.
func (s *chunkStorage) readStaged(i int, dst []byte, abs int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.done[i] || !s.written[i] || s.closed || s.finished {
		return false
	}
	f, err := s.partialFile()
	if err != nil {
		return false
	}
	_, err = f.ReadAt(dst, abs)
	return err == nil
}

// readSpan reads the part of chunk c at torrent offset from into dst: from
// the store if it holds the chunk, else from the staging file.
func (s *chunkStorage) readSpan(c Span, dst []byte, from int64) error {
	for range 2 {
		if s.st.ReadFrameAt(c.ID, c.CSize, dst, from-c.Off) == nil {
			return nil
		}
		s.mu.Lock()
		f, err := s.partialFile()
		if err == nil {
			_, err = f.ReadAt(dst, from)
		}
		s.mu.Unlock()
		if err == nil || !s.finishedNow() {
			return err
		}
		// finish ran between the two reads: the store has it now.
	}
	return fmt.Errorf("chunk %s: neither stored nor staged", c.ID.Short())
}

func (s *chunkStorage) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *chunkStorage) finishedNow() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.finished
}

func (p *chunkPiece) WriteAt(b []byte, off int64) (int, error) {
	s := p.s
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := s.partialFile()
	if err != nil {
		return 0, err
	}
	n, err := f.WriteAt(b, p.off+off)
	if err != nil {
		// The piece is fetched again whole or in part: drop its copy.
		s.spillLocked(p.index)
		return n, err
	}
	s.written[p.index] = true
	s.bufferLocked(p, b, off)
	return n, nil
}

// bufferLocked copies a block written to piece p into its buffer, taking
// one from the pool at the piece's first block.
func (s *chunkStorage) bufferLocked(p *chunkPiece, b []byte, off int64) {
	i := p.index
	pb := s.bufs[i]
	if pb == nil {
		if s.spilled[i] || s.closed {
			return
		}
		if pb = s.takeBufLocked(p.n); pb == nil {
			s.spilled[i] = true
			s.spills.Add(1)
			return
		}
		s.bufs[i] = pb
	}
	end := off + int64(len(b))
	// A block that does not fit the units, or one arriving while SelfHash
	// reads the buffer (anacrolix does not write a piece it is hashing):
	// the piece falls back to the partial file.
	if pb.pins > 0 || off < 0 || end > p.n || off%bufUnit != 0 || (end%bufUnit != 0 && end != p.n) || len(b) == 0 {
		s.spillLocked(i)
		return
	}
	copy(pb.b[off:], b)
	for u := off / bufUnit; u < (end+bufUnit-1)/bufUnit; u++ {
		if !pb.got[u] {
			pb.got[u] = true
			pb.left--
		}
	}
}

// takeBufLocked returns an empty buffer for a piece of n bytes, or nil
// when the pool is exhausted.
func (s *chunkStorage) takeBufLocked(n int64) *pieceBuf {
	var pb *pieceBuf
	if k := len(s.free); k > 0 {
		pb, s.free = s.free[k-1], s.free[:k-1]
	} else if s.nbufs < s.maxBufs {
		s.nbufs++
		pb = &pieceBuf{b: make([]byte, s.layout.PieceLen), got: make([]bool, (s.layout.PieceLen+bufUnit-1)/bufUnit)}
	} else {
		return nil
	}
	units := int((n + bufUnit - 1) / bufUnit)
	pb.b, pb.got = pb.b[:n], pb.got[:units]
	clear(pb.got)
	pb.left = units
	return pb
}

// releaseLocked returns piece i's buffer, if any, to the pool.
func (s *chunkStorage) releaseLocked(i int) {
	pb := s.bufs[i]
	if pb == nil {
		return
	}
	delete(s.bufs, i)
	if pb.pins > 0 {
		pb.gone = true // SelfHash unpins it
		s.nbufs--
		return
	}
	if !s.closed && !s.finished {
		s.free = append(s.free, pb)
	}
}

// spillLocked drops piece i's buffer until the piece is reset: its bytes
// are only in the partial file.
func (s *chunkStorage) spillLocked(i int) {
	s.releaseLocked(i)
	s.spilled[i] = true
}

// resetLocked forgets how piece i was received: it is done, or will be
// fetched again.
func (s *chunkStorage) resetLocked(i int) {
	s.releaseLocked(i)
	s.spilled[i] = false
}

// selfHashes says whether anacrolix should let piece i hash itself: its
// bytes are all in memory. A piece that failed a hash is hashed by
// anacrolix, which reads it back and compares each block with what each
// peer sent: that comparison (smart ban) names the peer that sent a bad
// block of a piece several peers contributed to, and self-hashing skips it.
func (s *chunkStorage) selfHashes(i int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	pb := s.bufs[i]
	return pb != nil && pb.full() && !s.hashFailed[i]
}

// memPiece is a piece whose bytes are all in memory: it hashes itself.
type memPiece struct{ chunkPiece }

var _ storage.SelfHashing = (*memPiece)(nil)

// SelfHash hashes the piece from its buffer, or reads it back when the
// buffer went away since anacrolix asked for the piece.
func (p *memPiece) SelfHash() (metainfo.Hash, error) {
	s := p.s
	s.mu.Lock()
	pb := s.bufs[p.index]
	if pb == nil || !pb.full() {
		s.mu.Unlock()
		return p.readHash()
	}
	pb.pins++
	s.mu.Unlock()
	sum := metainfo.Hash(sha1.Sum(pb.b))
	s.mu.Lock()
	pb.pins--
	if pb.gone && pb.pins == 0 && !s.closed && !s.finished && s.nbufs < s.maxBufs {
		pb.gone = false
		s.nbufs++
		s.free = append(s.free, pb)
	}
	s.mu.Unlock()
	s.memHashed.Add(1)
	return sum, nil
}

// readHash hashes the piece as anacrolix would, reading it back.
func (p *chunkPiece) readHash() (metainfo.Hash, error) {
	h := sha1.New()
	_, err := io.Copy(h, io.NewSectionReader(p, 0, p.n))
	var sum metainfo.Hash
	h.Sum(sum[:0])
	p.s.readHashed.Add(1)
	return sum, err
}

// MarkComplete runs after the piece passed its SHA-1 check: every chunk whose
// pieces are now all complete is stored as it came, not decompressed. Its
// pieces' hashes are in the torrent's info, whose hash the deploy key
// signed, and the origin built them only from frames that decode to their
// chunk (MakeTorrent). Staging decompresses each chunk once and checks it
// by SHA-256 against its ID (Store.ReadChunk); one that fails there is
// dropped from the store (artifact.Store.DropChunk) and fetched again.
func (p *chunkPiece) MarkComplete() error {
	s := p.s
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done[p.index] = true
	pb := s.bufs[p.index]
	if pb != nil && !pb.full() {
		pb = nil
	}
	defer s.resetLocked(p.index)
	if _, err := s.partialFile(); err != nil {
		return err
	}
	if _, err := s.doneMap.WriteAt([]byte{1}, int64(p.index)); err != nil {
		return err
	}
	for c, err := range s.layout.overlapping(p.off, p.n) {
		if err != nil {
			return err
		}
		if s.st.HasChunk(c.ID) || !s.allDoneLocked(c) {
			continue
		}
		z, err := s.frameLocked(c, p, pb)
		if err != nil {
			return fmt.Errorf("stage chunk %s: %w", c.ID.Short(), err)
		}
		if s.w == nil {
			if s.w, err = s.st.NewWriter(); err != nil {
				return err
			}
		}
		n, err := s.w.PutCompressed(c.ID, z, int(c.Size))
		if err != nil {
			return err
		}
		s.pending += int64(n)
	}
	if s.pending >= flushEvery || s.clock.Since(s.flushed) > flushAfter {
		return s.flushLocked()
	}
	return nil
}

// frameLocked returns chunk c's frame: the part inside piece p from its
// buffer pb (if not nil), the rest from the partial file.
func (s *chunkStorage) frameLocked(c Span, p *chunkPiece, pb *pieceBuf) ([]byte, error) {
	end := c.Off + c.CSize
	lo, hi := max(c.Off, p.off), min(end, p.off+p.n)
	if pb != nil && lo == c.Off && hi == end {
		return pb.b[lo-p.off : hi-p.off], nil
	}
	f, err := s.partialFile()
	if err != nil {
		return nil, err
	}
	if int64(cap(s.frame)) < c.CSize {
		s.frame = make([]byte, c.CSize)
	}
	z := s.frame[:c.CSize]
	if pb == nil || lo >= hi {
		_, err := f.ReadAt(z, c.Off)
		return z, err
	}
	copy(z[lo-c.Off:hi-c.Off], pb.b[lo-p.off:hi-p.off])
	if lo > c.Off {
		if _, err := f.ReadAt(z[:lo-c.Off], c.Off); err != nil {
			return nil, err
		}
	}
	if hi < end {
		if _, err := f.ReadAt(z[hi-c.Off:], hi); err != nil {
			return nil, err
		}
	}
	return z, nil
}

func (s *chunkStorage) allDoneLocked(c Span) bool {
	first, last := c.Off/s.layout.PieceLen, (c.Off+c.CSize-1)/s.layout.PieceLen
	for i := first; i <= last; i++ {
		if !s.done[i] {
			return false
		}
	}
	return true
}

func (p *chunkPiece) MarkNotComplete() error {
	s := p.s
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done[p.index], s.recheck[p.index] = false, false
	s.hashFailed[p.index], s.written[p.index] = true, false
	s.resetLocked(p.index)
	if s.doneMap != nil {
		if _, err := s.doneMap.WriteAt([]byte{0}, int64(p.index)); err != nil {
			return err
		}
	}
	return nil
}
