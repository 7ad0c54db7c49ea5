package artifact

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"scatter/artifact/core"
	"scatter/artifact/datadir"
)

// A tree record (datadir.TreeRecord, beside each materialized tree) says
// what Materialize saw of every file it wrote or linked into the tree: the
// inode, size, modification and change times, in a fixed slot per file, in
// manifest order. A later materialize links a file of this tree into the
// next one only while the file still matches its slot. Any write changes
// the modification and change times, chmod and utimes change the change
// time, and no user can set the change time back, so a match proves the
// bytes are the ones Materialize wrote and verified. A file that does not
// match (or a tree with no record) is hashed again before it is linked.
//
// Layout: treeRecordMagic, the release ID, padding to treeRecordHeader
// bytes, then treeSlotSize bytes per file (all zero: unknown).
const (
	treeRecordMagic  = "SCATTER-TREE/1\n"
	treeRecordHeader = 64
	treeSlotSize     = 32
)

// treeSlot is one file as Materialize left it.
type treeSlot struct {
	Ino, Size    uint64
	Mtime, Ctime int64 // nanoseconds since the epoch
}

func slotOf(st *syscall.Stat_t) treeSlot {
	return treeSlot{Ino: st.Ino, Size: uint64(st.Size), Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano()}
}

func (s treeSlot) zero() bool { return s == treeSlot{} }

// treeRecordWriter fills a new tree's record; WriteAt is safe from many
// workers at once.
type treeRecordWriter struct {
	f *os.File
}

// newTreeRecord starts the record of the tree that will be dest, as a
// temporary file beside it.
func newTreeRecord(dest string, id core.ReleaseID) (*treeRecordWriter, error) {
	final := datadir.TreeRecord(dest)
	f, err := os.CreateTemp(filepath.Dir(final), filepath.Base(final)+"-*")
	if err != nil {
		return nil, err
	}
	hdr := make([]byte, treeRecordHeader)
	copy(hdr, treeRecordMagic)
	copy(hdr[len(treeRecordMagic):], id[:])
	if _, err := f.WriteAt(hdr, 0); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	return &treeRecordWriter{f: f}, nil
}

func (w *treeRecordWriter) put(idx int, s treeSlot) error {
	var b [treeSlotSize]byte
	binary.LittleEndian.PutUint64(b[0:], s.Ino)
	binary.LittleEndian.PutUint64(b[8:], s.Size)
	binary.LittleEndian.PutUint64(b[16:], uint64(s.Mtime))
	binary.LittleEndian.PutUint64(b[24:], uint64(s.Ctime))
	_, err := w.f.WriteAt(b[:], int64(treeRecordHeader+idx*treeSlotSize))
	return err
}

// commit syncs the record and renames it into place beside dest.
func (w *treeRecordWriter) commit(dest string) error {
	err := w.f.Sync()
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(w.f.Name(), datadir.TreeRecord(dest))
	}
	if err != nil {
		os.Remove(w.f.Name())
	}
	return err
}

func (w *treeRecordWriter) abort() {
	w.f.Close()
	os.Remove(w.f.Name())
}

// treeRecordReader reads the slots of a previous tree's record.
type treeRecordReader struct {
	f *os.File
}

// openTreeRecord opens the record of tree, which must be of release id;
// nil when there is none or it is for another release.
func openTreeRecord(tree string, id core.ReleaseID) *treeRecordReader {
	if id.IsZero() {
		return nil
	}
	f, err := os.Open(datadir.TreeRecord(tree))
	if err != nil {
		return nil
	}
	hdr := make([]byte, treeRecordHeader)
	if _, err := f.ReadAt(hdr, 0); err != nil || !bytes.HasPrefix(hdr, []byte(treeRecordMagic)) ||
		!bytes.Equal(hdr[len(treeRecordMagic):len(treeRecordMagic)+core.HashSize], id[:]) {
		f.Close()
		return nil
	}
	return &treeRecordReader{f: f}
}

func (r *treeRecordReader) get(idx int) treeSlot {
	if r == nil || idx < 0 {
		return treeSlot{}
	}
	var b [treeSlotSize]byte
	if _, err := r.f.ReadAt(b[:], int64(treeRecordHeader+idx*treeSlotSize)); err != nil {
		return treeSlot{}
	}
	return treeSlot{
		Ino: binary.LittleEndian.Uint64(b[0:]), Size: binary.LittleEndian.Uint64(b[8:]),
		Mtime: int64(binary.LittleEndian.Uint64(b[16:])), Ctime: int64(binary.LittleEndian.Uint64(b[24:])),
	}
}

func (r *treeRecordReader) close() {
	if r != nil {
		r.f.Close()
	}
}

// stagedMode is the mode a file or directory of a staged tree gets: the
// manifest's, never writable by group or others. The tree is the daemon
// user's; no one else may change what runs.
func stagedMode(m fs.FileMode) fs.FileMode { return m.Perm() &^ 0o022 }

// lstatSys is os.Lstat's syscall.Stat_t.
func lstatSys(p string) (*syscall.Stat_t, error) {
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// unchangedSince reports whether st is the file a slot recorded, untouched
// since: same inode, size, times, owned by us, regular, with the mode
// wanted.
func unchangedSince(st *syscall.Stat_t, s treeSlot, mode fs.FileMode) bool {
	return !s.zero() && st.Mode&syscall.S_IFMT == syscall.S_IFREG && int(st.Uid) == os.Geteuid() &&
		fs.FileMode(st.Mode&0o777) == mode && slotOf(st) == s
}

// errChanged marks a previous tree's file whose bytes are not the
// manifest's.
var errChanged = errors.New("file differs from its manifest entry")

// hashMatches reads the file at p and checks it chunk by chunk against e's
// chunk IDs; buf is reused between calls.
func hashMatches(p string, e *Entry, chunks *Table, buf *[]byte) error {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	var total int64
	for _, c := range e.Chunks {
		ref, err := chunks.Ref(int(c))
		if err != nil {
			return err
		}
		if cap(*buf) < int(ref.Size) {
			*buf = make([]byte, ref.Size)
		}
		b := (*buf)[:ref.Size]
		if _, err := io.ReadFull(f, b); err != nil {
			return fmt.Errorf("%w: %v", errChanged, err)
		}
		if sha256.Sum256(b) != ref.ID {
			return errChanged
		}
		total += int64(ref.Size)
	}
	var one [1]byte
	if n, _ := f.Read(one[:]); n != 0 || total != e.Size {
		return fmt.Errorf("%w: longer than recorded", errChanged)
	}
	return nil
}
