package artifact

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"scatter/artifact/core"
)

// A pack file holds many chunks back to back, written once, in order:
//
//	zstd frame of chunk 0 | zstd frame of chunk 1 | ... |
//	index: count × (chunk id 32 | offset u64 | compressed size u32 | size u32) |
//	footer: "SCPACK01" | index offset u64 | count u32 | CRC-32C of the index u32
//
// (integers little-endian). One file per chunk costs a create and a rename
// each — 200–300 µs apiece on the ext4 these hosts run, far more than
// compressing the chunk — so a build appends its new chunks to a few large
// packs instead. A pack is written under tmp/, synced, and renamed into
// packs/ only when complete; its name is the SHA-256 of its index.
const (
	packMagic      = "SCPACK01"
	packEntrySize  = core.HashSize + 8 + 4 + 4
	packFooterSize = 8 + 8 + 4 + 4
	// packTarget is the size at which a writer closes a pack and starts the
	// next: large enough for sequential I/O, small enough that gc rewrites
	// little when a few chunks die.
	packTarget = 64 << 20

	// writeBuf is how many frames' bytes a writer gathers before writing
	// them out: a host fetching a release stores frames of a few KiB one
	// at a time, and a write call each cost more than the copy.
	writeBuf = 128 << 10
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// chunkLoc is where a chunk lives.
type chunkLoc struct {
	pack  *packFile
	off   int64
	csize uint32
	size  uint32
}

type packFile struct {
	name   string // file name under packs/
	f      *os.File
	size   int64
	idxOff int64 // where its index starts
}

type packEntry struct {
	id    core.ChunkID
	off   int64
	csize uint32
	size  uint32
}

// readPackIndex reads and checks a pack's footer and index.
func readPackIndex(f *os.File, size int64) ([]packEntry, error) {
	if size < packFooterSize {
		return nil, errors.New("too short for a pack")
	}
	var foot [packFooterSize]byte
	if _, err := f.ReadAt(foot[:], size-packFooterSize); err != nil {
		return nil, err
	}
	if string(foot[:8]) != packMagic {
		return nil, errors.New("bad pack magic")
	}
	idxOff := int64(binary.LittleEndian.Uint64(foot[8:]))
	count := int64(binary.LittleEndian.Uint32(foot[16:]))
	if idxOff < 0 || idxOff+count*packEntrySize != size-packFooterSize {
		return nil, errors.New("pack footer does not match its size")
	}
	idx := make([]byte, count*packEntrySize)
	if _, err := f.ReadAt(idx, idxOff); err != nil {
		return nil, err
	}
	if crc32.Checksum(idx, castagnoli) != binary.LittleEndian.Uint32(foot[20:]) {
		return nil, errors.New("pack index checksum mismatch")
	}
	out := make([]packEntry, count)
	for i := range out {
		e := parsePackEntry(idx[i*packEntrySize:])
		if e.off < 0 || e.off+int64(e.csize) > idxOff || e.size > maxChunkSize {
			return nil, fmt.Errorf("pack index entry %d out of bounds", i)
		}
		out[i] = e
	}
	return out, nil
}

func parsePackEntry(b []byte) packEntry {
	var e packEntry
	copy(e.id[:], b)
	e.off = int64(binary.LittleEndian.Uint64(b[32:]))
	e.csize = binary.LittleEndian.Uint32(b[40:])
	e.size = binary.LittleEndian.Uint32(b[44:])
	return e
}

// loadPacks (re)reads the index of every pack not yet known. A damaged pack
// is logged and skipped: its chunks count as missing, which verify reports
// and a fetch repairs.
func (s *Store) loadPacks() error {
	names, err := readDirNames(s.dir.Packs())
	if err != nil {
		return fmt.Errorf("list packs: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range names {
		if !strings.HasSuffix(n, ".pack") || s.packs[n] != nil {
			continue
		}
		p, entries, err := openPack(s.dir.Pack(n))
		if err != nil {
			s.log.Error("skipping damaged pack", "pack", n, "err", err)
			continue
		}
		s.addPackLocked(p, entries)
	}
	return nil
}

func openPack(path string) (*packFile, []packEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if st.Size() > maxPackSize {
		f.Close()
		return nil, nil, fmt.Errorf("pack of %d bytes exceeds %d", st.Size(), int64(maxPackSize))
	}
	entries, err := readPackIndex(f, st.Size())
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	idxOff := st.Size() - packFooterSize - int64(len(entries))*packEntrySize
	return &packFile{name: filepath.Base(path), f: f, size: st.Size(), idxOff: idxOff}, entries, nil
}

func (s *Store) addPackLocked(p *packFile, entries []packEntry) {
	s.packs[p.name] = p
	s.index.add(p, entries)
}

// Writer adds chunks to a store by appending them to new pack files. Put
// and PutCompressed may be called from many goroutines; the chunks become
// visible to the store (HasChunk, ReadChunk) when their pack is complete,
// at the latest on Close. A Writer that is not closed leaves only a temp
// file, which gc removes.
type Writer struct {
	st     *Store
	force  bool   // store chunks even if the store has them (gc repacking)
	unlock func() // releases the shared store lock, which keeps gc out
	mu     sync.Mutex
	f      *os.File
	buf    []byte // frames appended to f but not yet written
	off    int64
	index  []packEntry
	queued map[core.ChunkID]bool
	err    error
}

// NewWriter returns a Writer for s. It holds the store's shared lock until
// Close or Abort, so that gc (in any process) cannot delete its temp pack
// or the chunks it relies on meanwhile; it fails with ErrStoreBusy while gc
// runs.
func (s *Store) NewWriter() (*Writer, error) {
	unlock, err := s.lock(false)
	if err != nil {
		return nil, err
	}
	return &Writer{st: s, queued: map[core.ChunkID]bool{}, unlock: unlock}, nil
}

func (w *Writer) release() {
	if w.unlock != nil {
		w.unlock()
		w.unlock = nil
	}
}

// Put compresses raw and stores it under id unless the store or this writer
// already has it. It returns the compressed bytes added (0 for a chunk already
// held). scratch is an optional buffer for the compressed bytes. The caller
// vouches that id is the hash of raw.
func (w *Writer) Put(id core.ChunkID, raw, scratch []byte) (int, error) {
	if w.st.HasChunk(id) && !w.force {
		return 0, nil
	}
	z := zstdEncoder().EncodeAll(raw, scratch[:0])
	return w.PutCompressed(id, z, len(raw))
}

// PutCompressed stores an already compressed chunk of size uncompressed
// bytes, unless the store or this writer already has it.
func (w *Writer) PutCompressed(id core.ChunkID, z []byte, size int) (int, error) {
	if size > maxChunkSize || len(z) > maxChunkSize*2 {
		return 0, fmt.Errorf("store chunk %s: %d bytes exceeds the chunk size limit", id.Short(), size)
	}
	if w.st.HasChunk(id) && !w.force {
		return 0, nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return 0, w.err
	}
	if w.queued[id] {
		return 0, nil
	}
	if err := w.appendLocked(id, z, size); err != nil {
		w.err = fmt.Errorf("store chunk %s: %w", id.Short(), err)
		w.abortLocked()
		return 0, w.err
	}
	return len(z), nil
}

func (w *Writer) appendLocked(id core.ChunkID, z []byte, size int) error {
	if w.f == nil {
		f, err := os.CreateTemp(w.st.dir.Tmp(), "pack-*")
		if err != nil {
			return err
		}
		w.f, w.off, w.index = f, 0, w.index[:0]
	}
	if len(w.buf)+len(z) > writeBuf {
		if err := w.writeBufLocked(); err != nil {
			return err
		}
	}
	if len(z) >= writeBuf {
		if _, err := w.f.Write(z); err != nil {
			return err
		}
	} else {
		if w.buf == nil {
			w.buf = writeBufs.Get().(*[writeBuf]byte)[:0]
		}
		w.buf = append(w.buf, z...)
	}
	w.index = append(w.index, packEntry{id: id, off: w.off, csize: uint32(len(z)), size: uint32(size)})
	w.queued[id] = true
	w.off += int64(len(z))
	if w.off >= packTarget {
		return w.finishLocked()
	}
	return nil
}

// writeBufs recycles writers' buffers: a host completes a pack a second.
var writeBufs = sync.Pool{New: func() any { return new([writeBuf]byte) }}

// dropBufLocked returns buf to the pool once the writer is done.
func (w *Writer) dropBufLocked() {
	if cap(w.buf) == writeBuf {
		writeBufs.Put((*[writeBuf]byte)(w.buf[:writeBuf]))
	}
	w.buf = nil
}

// writeBufLocked writes out the frames gathered in buf.
func (w *Writer) writeBufLocked() error {
	if len(w.buf) == 0 {
		return nil
	}
	_, err := w.f.Write(w.buf)
	w.buf = w.buf[:0]
	return err
}

// finishLocked writes the index and footer, syncs the pack and renames it
// into packs/, then publishes its chunks to the store.
func (w *Writer) finishLocked() error {
	if w.f == nil {
		return nil
	}
	idx := make([]byte, 0, len(w.index)*packEntrySize+packFooterSize)
	for _, e := range w.index {
		idx = append(idx, e.id[:]...)
		idx = binary.LittleEndian.AppendUint64(idx, uint64(e.off))
		idx = binary.LittleEndian.AppendUint32(idx, e.csize)
		idx = binary.LittleEndian.AppendUint32(idx, e.size)
	}
	sum := crc32.Checksum(idx, castagnoli)
	name := core.ChunkIDOf(idx).String() + ".pack"
	idx = append(idx, packMagic...)
	idx = binary.LittleEndian.AppendUint64(idx, uint64(w.off))
	idx = binary.LittleEndian.AppendUint32(idx, uint32(len(w.index)))
	idx = binary.LittleEndian.AppendUint32(idx, sum)
	if len(w.buf)+len(idx) <= cap(w.buf) {
		w.buf = append(w.buf, idx...) // one write for the tail and the index
	} else if err := w.writeBufLocked(); err != nil {
		return err
	} else if _, err := w.f.Write(idx); err != nil {
		return err
	}
	if err := w.writeBufLocked(); err != nil {
		return err
	}
	if err := w.f.Sync(); err != nil {
		return err
	}
	dst := w.st.dir.Pack(name)
	if err := os.Rename(w.f.Name(), dst); err != nil {
		return err
	}
	if err := w.f.Close(); err != nil {
		return err
	}
	w.f = nil
	if err := syncDir(w.st.dir.Packs()); err != nil {
		return err
	}
	p, entries, err := openPack(dst)
	if err != nil {
		return fmt.Errorf("reopen pack %s: %w", name, err)
	}
	w.st.mu.Lock()
	w.st.addPackLocked(p, entries)
	w.st.mu.Unlock()
	return nil
}

func (w *Writer) abortLocked() {
	w.buf = w.buf[:0]
	if w.f != nil {
		w.f.Close()
		os.Remove(w.f.Name())
		w.f = nil
	}
}

// Close completes the last pack. After an error nothing more is stored.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	defer w.release()
	defer w.dropBufLocked()
	if w.err != nil {
		return w.err
	}
	if err := w.finishLocked(); err != nil {
		w.err = fmt.Errorf("store pack: %w", err)
		w.abortLocked()
		return w.err
	}
	w.err = errors.New("writer closed")
	return nil
}

// Abort drops the pack being written.
func (w *Writer) Abort() {
	w.mu.Lock()
	defer w.mu.Unlock()
	defer w.release()
	defer w.dropBufLocked()
	w.abortLocked()
	if w.err == nil {
		w.err = errors.New("writer aborted")
	}
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// readFrame reads the stored frame of a chunk.
func (l chunkLoc) readFrame() ([]byte, error) {
	z := make([]byte, l.csize)
	if err := l.readFrameInto(z); err != nil {
		return nil, err
	}
	return z, nil
}

// readFrameInto reads the stored frame into z, which is csize bytes long.
func (l chunkLoc) readFrameInto(z []byte) error {
	if _, err := l.pack.f.ReadAt(z, l.off); err != nil && !(errors.Is(err, io.EOF) && int64(len(z)) == 0) {
		return err
	}
	return nil
}
