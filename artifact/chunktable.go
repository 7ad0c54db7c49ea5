package artifact

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"sync"

	"scatter/artifact/chunker"
	"scatter/artifact/core"
)

// Table is what fetching, serving and staging a release need of its
// manifest: the chunk table, without the entries. A daemon holds it for as
// long as it serves the release; the entries stay in the stored envelope
// and are read from there when the tree is materialized
// (MaterializeStored).
//
// A table read from a stored envelope keeps the chunk IDs on disk, in an
// unlinked temporary file, and only their sizes in memory: 4 bytes a chunk
// instead of 36. A 2 GiB release has some 160k chunks, and its IDs were the
// largest thing a fetching host held. A table of a decoded manifest
// (Signed.Table, ManifestTable) shares the manifest's array.
type Table struct {
	ID       core.ReleaseID
	Parent   core.ReleaseID
	Chunking chunker.Params

	refs  []ChunkRef // in memory; or
	sizes []uint32   // with ids on disk
	ids   *idFile
}

// ManifestTable returns the chunk table of m, release id, sharing its array.
func ManifestTable(id core.ReleaseID, m *Manifest) *Table {
	return &Table{ID: id, Parent: m.Parent, Chunking: m.Chunking, refs: m.Chunks}
}

// Table returns the chunk table of a decoded manifest, sharing its array.
func (s *Signed) Table() *Table { return ManifestTable(s.ID, s.Manifest) }

// Len returns the number of chunks.
func (t *Table) Len() int {
	if t.ids != nil {
		return len(t.sizes)
	}
	return len(t.refs)
}

// Size returns the uncompressed size of chunk i.
func (t *Table) Size(i int) uint32 {
	if t.ids != nil {
		return t.sizes[i]
	}
	return t.refs[i].Size
}

// Ref returns chunk i's ID and size. Only a table on disk can fail, when
// its file cannot be read.
func (t *Table) Ref(i int) (ChunkRef, error) {
	if t.ids == nil {
		return t.refs[i], nil
	}
	id, err := t.ids.id(i)
	if err != nil {
		return ChunkRef{}, fmt.Errorf("chunk table of %s: %w", t.ID.Short(), err)
	}
	return ChunkRef{ID: id, Size: t.sizes[i]}, nil
}

// Close releases the file of a table on disk. A table that is dropped
// without Close lets the file go when it is collected (os.File's cleanup).
func (t *Table) Close() error {
	if t.ids == nil {
		return nil
	}
	return t.ids.f.Close()
}

// idFile holds chunk IDs, 32 bytes each in table order, in an unlinked
// file. Reads come in blocks, and the last block read is kept: tables
// are mostly walked in order (pieces, files), so most lookups are one
// copy from memory.
type idFile struct {
	f  *os.File
	mu sync.Mutex
	at int // first ID in buf; -1: none
	n  int // IDs in buf
	// buf: a 4 KiB block of IDs
	buf [128 * core.HashSize]byte
}

func (x *idFile) id(i int) (core.ChunkID, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.at < 0 || i < x.at || i >= x.at+x.n {
		const per = len(x.buf) / core.HashSize
		at := i - i%per
		n, err := x.f.ReadAt(x.buf[:], int64(at)*core.HashSize)
		if n < (i-at+1)*core.HashSize {
			x.at = -1
			if err == nil {
				err = errors.New("short read")
			}
			return core.ChunkID{}, err
		}
		x.at, x.n = at, n/core.HashSize
	}
	var id core.ChunkID
	copy(id[:], x.buf[(i-x.at)*core.HashSize:])
	return id, nil
}

// tableSink receives a body's chunk table as decodeHead reads it.
type tableSink interface {
	// start is called with the number of chunks, before any of them.
	start(n int) error
	// chunk receives chunk i; id is valid only during the call.
	chunk(i int, id []byte, size uint32) error
	// finish is called after the last chunk.
	finish() error
	// table returns the table read, given the manifest's head.
	table(m *Manifest) *Table
}

// memSink keeps the table in memory, as Manifest.Chunks.
type memSink struct{ chunks []ChunkRef }

func (s *memSink) start(n int) error {
	s.chunks = make([]ChunkRef, n)
	return nil
}

func (s *memSink) chunk(i int, id []byte, size uint32) error {
	copy(s.chunks[i].ID[:], id)
	s.chunks[i].Size = size
	return nil
}

func (s *memSink) finish() error { return nil }

func (s *memSink) table(m *Manifest) *Table {
	return &Table{Parent: m.Parent, Chunking: m.Chunking, refs: s.chunks}
}

// fileSink writes the IDs to an unlinked file in dir and keeps the sizes.
type fileSink struct {
	dir   string
	f     *os.File
	w     *bufio.Writer
	sizes []uint32
}

func (s *fileSink) start(n int) error {
	f, err := os.CreateTemp(s.dir, "table-*")
	if err != nil {
		return err
	}
	// Unlinked at once: nothing is left behind, whatever happens next.
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return err
	}
	s.f, s.w, s.sizes = f, bufio.NewWriterSize(f, 32<<10), make([]uint32, n)
	return nil
}

func (s *fileSink) chunk(i int, id []byte, size uint32) error {
	s.sizes[i] = size
	_, err := s.w.Write(id)
	return err
}

func (s *fileSink) finish() error { return s.w.Flush() }

// abort closes the file of a table that failed to read.
func (s *fileSink) abort() {
	if s.f != nil {
		s.f.Close()
	}
}

func (s *fileSink) table(m *Manifest) *Table {
	return &Table{Parent: m.Parent, Chunking: m.Chunking, sizes: s.sizes, ids: &idFile{f: s.f, at: -1}}
}

// knownSink checks a body's table against the one the caller holds,
// which the body was read into before. IDs on disk are not read back:
// the hash of the whole body, which the caller checks before trusting what
// it read, covers them.
type knownSink struct{ t *Table }

func (s *knownSink) start(n int) error {
	if n != s.t.Len() {
		return fmt.Errorf("chunk table of %d chunks, want %d", n, s.t.Len())
	}
	return nil
}

func (s *knownSink) chunk(i int, id []byte, size uint32) error {
	if size != s.t.Size(i) || s.t.ids == nil && string(id) != string(s.t.refs[i].ID[:]) {
		return fmt.Errorf("chunk %d differs from the known table", i)
	}
	return nil
}

func (s *knownSink) finish() error { return nil }

func (s *knownSink) table(*Manifest) *Table { return s.t }
