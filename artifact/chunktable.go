package artifact

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
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
// A table read from a stored envelope is kept on disk, in an unlinked
// temporary file, instead of 36 bytes a chunk in memory: a 2 GiB release
// has some 160k chunks, and its table was the largest thing a fetching
// host held. A table of a decoded manifest (Signed.Table, ManifestTable)
// shares the manifest's array.
type Table struct {
	ID       core.ReleaseID
	Parent   core.ReleaseID
	Chunking chunker.Params

	refs []ChunkRef // in memory; or
	file *refFile   // on disk
}

// ManifestTable returns the chunk table of m, release id, sharing its array.
func ManifestTable(id core.ReleaseID, m *Manifest) *Table {
	return &Table{ID: id, Parent: m.Parent, Chunking: m.Chunking, refs: m.Chunks}
}

// Table returns the chunk table of a decoded manifest, sharing its array.
func (s *Signed) Table() *Table { return ManifestTable(s.ID, s.Manifest) }

// Len returns the number of chunks.
func (t *Table) Len() int {
	if t.file != nil {
		return t.file.n
	}
	return len(t.refs)
}

// Ref returns chunk i's ID and size. Only a table on disk can fail, when
// its file cannot be read.
func (t *Table) Ref(i int) (ChunkRef, error) {
	if t.file == nil {
		return t.refs[i], nil
	}
	ref, err := t.file.ref(i)
	if err != nil {
		return ChunkRef{}, fmt.Errorf("chunk table of %s: %w", t.ID.Short(), err)
	}
	return ref, nil
}

// Close releases the file of a table on disk. A table that is dropped
// without Close lets the file go when it is collected (os.File's cleanup).
func (t *Table) Close() error {
	if t.file == nil {
		return nil
	}
	return t.file.f.Close()
}

// refSize is a chunk's record in a refFile: its ID, then its size as 4
// bytes, little-endian.
const refSize = core.HashSize + 4

// refFile holds a chunk table, refSize bytes a chunk in table order, in an
// unlinked file. Reads come in blocks, and the last block read is kept:
// tables are mostly walked in order (pieces, files), so most lookups are
// one copy from memory.
type refFile struct {
	f  *os.File
	n  int // chunks
	mu sync.Mutex
	at int // first record in buf; -1: none
	k  int // records in buf
	// buf: a block of records, about 4.5 KiB
	buf [128 * refSize]byte
}

func (x *refFile) ref(i int) (ChunkRef, error) {
	if i < 0 || i >= x.n {
		return ChunkRef{}, fmt.Errorf("chunk %d of %d", i, x.n)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.at < 0 || i < x.at || i >= x.at+x.k {
		const per = len(x.buf) / refSize
		at := i - i%per
		n, err := x.f.ReadAt(x.buf[:], int64(at)*refSize)
		if n < (i-at+1)*refSize {
			x.at = -1
			if err == nil || errors.Is(err, io.EOF) {
				err = fmt.Errorf("file ends at record %d", at+n/refSize)
			}
			return ChunkRef{}, err
		}
		x.at, x.k = at, n/refSize
	}
	b := x.buf[(i-x.at)*refSize:]
	var ref ChunkRef
	copy(ref.ID[:], b)
	ref.Size = binary.LittleEndian.Uint32(b[core.HashSize:])
	return ref, nil
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

// fileSink writes the table to an unlinked file in dir.
type fileSink struct {
	dir string
	f   *os.File
	w   *bufio.Writer
	n   int
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
	s.f, s.w, s.n = f, bufio.NewWriterSize(f, 32<<10), n
	return nil
}

func (s *fileSink) chunk(i int, id []byte, size uint32) error {
	var rec [refSize]byte
	copy(rec[:], id)
	binary.LittleEndian.PutUint32(rec[core.HashSize:], size)
	_, err := s.w.Write(rec[:])
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
	return &Table{Parent: m.Parent, Chunking: m.Chunking, file: &refFile{f: s.f, n: s.n, at: -1}}
}

// knownSink checks a body's table against the one the caller holds,
// which the body was read into before. The hash of the whole body, which
// the caller checks before trusting what it read, covers the table too;
// this check finds a mismatch before any entry is used.
type knownSink struct{ t *Table }

func (s *knownSink) start(n int) error {
	if n != s.t.Len() {
		return fmt.Errorf("chunk table of %d chunks, want %d", n, s.t.Len())
	}
	return nil
}

func (s *knownSink) chunk(i int, id []byte, size uint32) error {
	ref, err := s.t.Ref(i)
	if err != nil {
		return err
	}
	if size != ref.Size || string(id) != string(ref.ID[:]) {
		return fmt.Errorf("chunk %d differs from the known table", i)
	}
	return nil
}

func (s *knownSink) finish() error { return nil }

func (s *knownSink) table(*Manifest) *Table { return s.t }
