package artifact

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"scatter/artifact/core"
	"scatter/artifact/datadir"
)

// ErrDestExists is returned when materialize would overwrite something.
var ErrDestExists = errors.New("destination already exists")

// Previous names an earlier release already materialized at Dir. Files that
// did not change are hard-linked from it instead of written again, but only
// once their bytes are proven unchanged: the tree's record (see
// treerecord.go) still matches the file, or, failing that, the file hashes
// to its chunk IDs again. An edit to the previous tree never reaches the
// new one. Its entries come from Manifest or, when that is nil, from the
// store's manifest of Release, read as they are compared. Release must be
// set for the record to be used (it must be the record of that release).
type Previous struct {
	Manifest *Manifest
	Release  core.ReleaseID
	Dir      string
}

// MaterializeOptions tune Materialize; the zero value is a cold materialize.
type MaterializeOptions struct {
	Previous *Previous    // optional: reuse unchanged files from this tree
	Workers  int          // files written at once; 0: 2×GOMAXPROCS
	Log      *slog.Logger // nil: discard
}

// MaterializeResult counts what Materialize did.
type MaterializeResult struct {
	Files  int // regular files in the tree
	Linked int // files hard-linked from the previous tree
	// Rehashed counts the linked files whose record did not prove them
	// unchanged, so they were read and hashed again first; RehashedBytes
	// their bytes. Mismatched counts previous files that failed that
	// check (edited in the previous tree): they were written instead.
	Rehashed      int
	RehashedBytes int64
	Mismatched    int
	Written       int64 // bytes written (not linked)
	Duration      time.Duration
}

// entries is a release tree walked in manifest order: next returns io.EOF
// after the last entry, once the whole tree has been checked.
type entries interface {
	next() (*Entry, error)
}

// sliceEntries walks the entries of a decoded, validated manifest.
type sliceEntries []Entry

func (s *sliceEntries) next() (*Entry, error) {
	if len(*s) == 0 {
		return nil, io.EOF
	}
	e := &(*s)[0]
	*s = (*s)[1:]
	return e, nil
}

// Materialize writes the release tree of sm to dest, which must not exist.
// Every chunk is verified against its ID as it is written. The tree is built
// in a hidden sibling directory and renamed to dest only when complete and
// synced, so dest either is the whole release or does not exist; on error
// nothing is left behind. Nothing in it is writable by group or others
// (stagedMode). Its record is written beside it (datadir.TreeRecord).
func Materialize(ctx context.Context, st *Store, sm *Signed, dest string, opt MaterializeOptions) (*MaterializeResult, error) {
	es := sliceEntries(sm.Manifest.Entries)
	return materialize(ctx, st, sm.ID, sm.Table(), &es, dest, opt)
}

// MaterializeStored is Materialize for a release whose manifest the store
// holds and whose chunk table t the caller holds already (Store.Table,
// Store.PutFetched): the entries are read from disk as the tree is written
// instead of decoded whole, tens of megabytes for a large release. The
// stored manifest was verified when it was stored; it must hash to t.ID
// again before any entry is used, each entry is checked as UnmarshalBody
// checks it before it is written, and the tree is renamed into place only
// once the whole manifest has passed.
func MaterializeStored(ctx context.Context, st *Store, t *Table, dest string, opt MaterializeOptions) (*MaterializeResult, error) {
	id := t.ID
	if err := st.verifyStored(id); err != nil {
		return nil, fmt.Errorf("materialize %s: %w", id.Short(), err)
	}
	er, closeBody, err := st.storedEntries(id, t)
	if err != nil {
		return nil, fmt.Errorf("materialize %s: %w", id.Short(), err)
	}
	defer closeBody()
	return materialize(ctx, st, id, t, er, dest, opt)
}

func materialize(ctx context.Context, st *Store, id core.ReleaseID, chunks *Table, es entries, dest string, opt MaterializeOptions) (*MaterializeResult, error) {
	start := time.Now()
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.Workers <= 0 {
		opt.Workers = 2 * runtime.GOMAXPROCS(0)
	}
	dest = filepath.Clean(dest)
	if _, err := os.Lstat(dest); err == nil {
		return nil, fmt.Errorf("materialize: %s: %w", dest, ErrDestExists)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("materialize: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dest), "."+filepath.Base(dest)+partialTreeMark)
	if err != nil {
		return nil, fmt.Errorf("materialize: %w", err)
	}
	rec, err := newTreeRecord(dest, id)
	if err != nil {
		RemoveTree(tmp)
		return nil, fmt.Errorf("materialize: %w", err)
	}
	res, err := materializeInto(ctx, st, chunks, es, tmp, rec, opt)
	err = dropCorrupt(st, err)
	if err == nil {
		err = os.Chmod(tmp, 0o755)
	}
	if err == nil {
		err = syncFS(tmp)
	}
	if err == nil {
		err = unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, dest, unix.RENAME_NOREPLACE)
		if errors.Is(err, unix.EEXIST) {
			err = fmt.Errorf("%s: %w", dest, ErrDestExists)
		}
	}
	if err == nil {
		// Without its record the tree is still whole; the next materialize
		// hashes its files again before linking them.
		if rerr := rec.commit(dest); rerr != nil {
			opt.Log.Warn("could not write the tree record; the next release re-hashes what it reuses", "dest", dest, "err", rerr)
		}
		// The rename itself must survive a power loss before anyone is told
		// the release is staged.
		if serr := syncDir(filepath.Dir(dest)); serr != nil {
			return nil, fmt.Errorf("materialize %s: %w", id.Short(), serr)
		}
	} else {
		rec.abort()
	}
	if err != nil {
		if rerr := RemoveTree(tmp); rerr != nil {
			opt.Log.Error("could not remove partial tree", "dir", tmp, "err", rerr)
		}
		return nil, fmt.Errorf("materialize %s: %w", id.Short(), err)
	}
	res.Duration = time.Since(start)
	opt.Log.Info("materialized release", "release", id, "dest", dest, "files", res.Files, "linked", res.Linked, "seconds", res.Duration.Seconds())
	return res, nil
}

// previousTree is the previous release's entries, walked alongside the new
// one's: both are sorted by path, so one pass pairs them without a map of
// every path.
type previousTree struct {
	dir    string
	chunks *Table
	es     entries
	cur    *Entry // the first entry not yet passed; nil at the end
	// files counts the file entries read so far: cur's slot in the
	// record is files-1 when cur is a file.
	files int
	rec   *treeRecordReader // nil: no usable record, hash everything
}

// openPrevious opens p's entries, from memory or the store. Without them
// every file is written: that costs time, never correctness.
func openPrevious(st *Store, p *Previous, log *slog.Logger) (*previousTree, func()) {
	if p == nil {
		return nil, func() {}
	}
	if p.Manifest != nil {
		es := sliceEntries(p.Manifest.Entries)
		rec := openTreeRecord(p.Dir, p.Release)
		return &previousTree{dir: p.Dir, chunks: ManifestTable(p.Release, p.Manifest), es: &es, rec: rec}, rec.close
	}
	err := st.verifyStored(p.Release)
	var (
		er        *entryReader
		closeBody = func() {}
	)
	if err == nil {
		er, closeBody, err = st.storedEntries(p.Release, nil)
	}
	if err != nil {
		log.Warn("previous release unreadable; writing every file", "release", p.Release, "err", err)
		return nil, func() {}
	}
	rec := openTreeRecord(p.Dir, p.Release)
	return &previousTree{dir: p.Dir, chunks: er.table, es: er, rec: rec}, func() { closeBody(); rec.close() }
}

// find returns the previous entry at path, reading past smaller paths.
// Paths must be asked for in increasing order. A previous manifest that
// fails to read ends the comparison; the rest is written.
func (p *previousTree) find(path string, log *slog.Logger) *Entry {
	for p.es != nil && (p.cur == nil || p.cur.Path < path) {
		e, err := p.es.next()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				log.Warn("previous release unreadable; writing the rest", "err", err)
			}
			p.es, p.cur = nil, nil
			break
		}
		p.cur = e
		if e.Type == TypeFile {
			p.files++
		}
	}
	if p.cur != nil && p.cur.Path == path {
		return p.cur
	}
	return nil
}

// job is a file for a worker: written from the store, or linked from the
// previous tree.
type job struct {
	e    *Entry
	idx  int  // the file's slot in the new tree's record
	link bool // the previous tree's manifest has the same file
	// prev is the previous file's slot in its tree's record; zero: hash
	// it before linking.
	prev treeSlot
}

// materializeInto writes the entries under dir, which exists and is empty,
// in one pass: directories as they come (a parent precedes its children),
// files by workers, symlinks last: while files are written no symlink
// exists in the tree, so no write can be steered outside it.
func materializeInto(ctx context.Context, st *Store, chunks *Table, es entries, dir string, rec *treeRecordWriter, opt MaterializeOptions) (*MaterializeResult, error) {
	res := &MaterializeResult{}
	prev, closePrev := openPrevious(st, opt.Previous, opt.Log)
	defer closePrev()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
			cancel()
		}
		mu.Unlock()
	}
	prevDir := ""
	if prev != nil {
		prevDir = prev.dir
	}
	jobs := make(chan job)
	for range opt.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			for j := range jobs {
				w, err := writeEntry(st, chunks, j, dir, prevDir, rec, &buf)
				if err != nil {
					fail(fmt.Errorf("%s: %w", j.e.Path, err))
				}
				mu.Lock()
				if w.linked {
					res.Linked++
				}
				if w.rehashed {
					res.Rehashed++
					res.RehashedBytes += j.e.Size
				}
				if w.mismatched {
					res.Mismatched++
					opt.Log.Warn("previous tree's file was changed; written anew", "file", j.e.Path, "previous", prevDir)
				}
				res.Written += w.written
				mu.Unlock()
			}
		}()
	}
	// Directories' modes, set at the end (a 2 GiB tree has 7k), and
	// symlinks, made at the end (a handful).
	type dirMode struct {
		path string
		mode fs.FileMode
	}
	var (
		dirs  []dirMode
		links []*Entry
	)
feed:
	for {
		e, err := es.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			fail(err)
			break
		}
		switch e.Type {
		case TypeDir:
			if err := os.Mkdir(filepath.Join(dir, e.Path), 0o700); err != nil {
				fail(err)
				break feed
			}
			dirs = append(dirs, dirMode{e.Path, e.Mode})
		case TypeSymlink:
			links = append(links, e)
		case TypeFile:
			j := job{e: e, idx: res.Files}
			res.Files++
			if prev != nil {
				if old := prev.find(e.Path, opt.Log); old != nil {
					j.link = sameFile(chunks, e, prev.chunks, old)
					if j.link && prev.rec != nil {
						j.prev = prev.rec.get(prev.files - 1)
					}
				}
			}
			select {
			case jobs <- j:
			case <-ctx.Done():
				break feed
			}
		}
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for _, e := range links {
		if err := os.Symlink(e.Target, filepath.Join(dir, e.Path)); err != nil {
			return nil, err
		}
	}
	for i := len(dirs) - 1; i >= 0; i-- { // children before parents
		if err := os.Chmod(filepath.Join(dir, dirs[i].path), stagedMode(dirs[i].mode)); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// wrote is what writeEntry did with one file.
type wrote struct {
	linked, rehashed, mismatched bool
	written                      int64
}

func writeEntry(st *Store, chunks *Table, j job, dir, prevDir string, rec *treeRecordWriter, buf *[]byte) (wrote, error) {
	e := j.e
	dst := filepath.Join(dir, e.Path)
	var w wrote
	if j.link {
		var err error
		w, err = linkVerified(chunks, j, filepath.Join(prevDir, e.Path), dst, rec, buf)
		if w.linked || err != nil {
			return w, err
		}
		// Changed, another file system or a missing file: write it.
	}
	mode := stagedMode(e.Mode)
	fd, err := createFile(dst, mode)
	if err != nil {
		return w, err
	}
	for _, c := range e.Chunks {
		ref, err := chunks.Ref(int(c))
		if err != nil {
			unix.Close(fd)
			return w, err
		}
		data, err := st.ReadChunk(ref.ID, int(ref.Size), *buf)
		if err != nil {
			unix.Close(fd)
			return w, markCorrupt(ref.ID, err)
		}
		*buf = data
		if err := writeAll(fd, data); err != nil {
			unix.Close(fd)
			return w, err
		}
		w.written += int64(len(data))
	}
	sys, err := fixMode(fd, mode)
	if err == nil {
		err = rec.put(j.idx, slotOf(&sys))
	}
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	return w, err
}

// badChunk is a chunk that failed its check while a tree was written.
type badChunk struct {
	id  core.ChunkID
	err error
}

func (c *badChunk) Error() string { return c.err.Error() }
func (c *badChunk) Unwrap() error { return c.err }

// markCorrupt tags err, the error of reading chunk id, with the chunk if it
// was corrupt, for dropCorrupt.
func markCorrupt(id core.ChunkID, err error) error {
	if errors.Is(err, ErrChunkCorrupt) {
		return &badChunk{id: id, err: err}
	}
	return err
}

// dropCorrupt returns err, materialize's error, after dropping the chunk it
// names from the store if it was corrupt. A fetched chunk is stored once its
// torrent pieces pass their SHA-1 check and is first decompressed and
// checked against its ID while a tree is written: a bad one must not stay
// where the next release would reuse it. It runs once every writer has
// stopped: dropping rewrites the chunk's pack, and readers of the old one
// would fail with errors that hide this one.
func dropCorrupt(st *Store, err error) error {
	var c *badChunk
	if !errors.As(err, &c) {
		return err
	}
	if derr := st.DropChunk(c.id); derr != nil {
		return errors.Join(err, derr)
	}
	return fmt.Errorf("%w (dropped from the store: the next fetch gets it again)", err)
}

// createFile creates the file p, which must not exist, with the final mode
// asked of the kernel. Raw system calls, not os.OpenFile: for a regular
// file the os package also tries to register it with the network poller
// (four fcntl and an epoll_ctl that fails), which was half the system
// calls of staging a tree of small files.
func createFile(p string, mode fs.FileMode) (int, error) {
	for {
		fd, err := unix.Open(p, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, uint32(mode))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return -1, &fs.PathError{Op: "create", Path: p, Err: err}
		}
		return fd, nil
	}
}

// writeAll writes b to fd, through short writes and interrupts.
func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("write: %w", err)
		}
		if n == 0 {
			return io.ErrShortWrite
		}
		b = b[n:]
	}
	return nil
}

// fixMode returns the open file's status once its permission bits are mode.
// The kernel applied the umask (or a default ACL) to the mode the file was
// created with; the status, which the tree record needs anyway, says
// whether that stripped anything, and only then is the file chmodded (and
// looked at again: chmod changes the change time). Under the usual umask
// 022 no file is: stagedMode never has group or other write.
func fixMode(fd int, mode fs.FileMode) (syscall.Stat_t, error) {
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return st, fmt.Errorf("fstat: %w", err)
	}
	if fs.FileMode(st.Mode&0o7777) == mode {
		return st, nil
	}
	if err := unix.Fchmod(fd, uint32(mode)); err != nil {
		return st, fmt.Errorf("chmod: %w", err)
	}
	if err := syscall.Fstat(fd, &st); err != nil {
		return st, fmt.Errorf("fstat: %w", err)
	}
	return st, nil
}

// linkVerified hard-links the previous tree's file src to dst if its bytes
// are proven to be the entry's: its record slot still matches it, or it
// hashes to the entry's chunks again, and it did not change while it was
// linked and checked. The new tree's record gets the file as linked (a link
// changes the change time). It returns linked false, with no error and
// nothing left at dst, when the file must be written instead.
func linkVerified(chunks *Table, j job, src, dst string, rec *treeRecordWriter, buf *[]byte) (wrote, error) {
	var w wrote
	mode := stagedMode(j.e.Mode)
	before, err := lstatSys(src)
	if err != nil {
		return w, nil
	}
	trusted := unchangedSince(before, j.prev, mode)
	if os.Link(src, dst) != nil {
		return w, nil
	}
	after, err := lstatSys(dst)
	same := err == nil && after.Ino == before.Ino && after.Size == before.Size && after.Mtim == before.Mtim &&
		after.Mode == before.Mode && after.Uid == before.Uid
	if same && !trusted {
		w.rehashed = true
		if herr := hashMatches(dst, j.e, chunks, buf); herr != nil {
			same, w.mismatched = false, errors.Is(herr, errChanged)
		} else if again, err := lstatSys(dst); err != nil || again.Ino != after.Ino || again.Mtim != after.Mtim ||
			again.Ctim != after.Ctim || again.Size != after.Size {
			same = false // changed while it was hashed
		} else {
			same = unchangedSince(after, slotOf(after), mode)
		}
	}
	if !same {
		w.rehashed = false
		if err := os.Remove(dst); err != nil {
			return w, err
		}
		return w, nil
	}
	w.linked = true
	return w, rec.put(j.idx, slotOf(after))
}

// sameFile reports whether two entries, each with its manifest's chunk
// table, have the same content and mode. A table that cannot be read
// says no: the file is written, and writing reads the table again.
func sameFile(chunks *Table, e *Entry, pchunks *Table, pe *Entry) bool {
	if pe.Type != TypeFile || pe.Mode != e.Mode || pe.Size != e.Size || len(pe.Chunks) != len(e.Chunks) {
		return false
	}
	for i := range e.Chunks {
		a, err := chunks.Ref(int(e.Chunks[i]))
		if err != nil {
			return false
		}
		b, err := pchunks.Ref(int(pe.Chunks[i]))
		if err != nil || a.ID != b.ID {
			return false
		}
	}
	return true
}

// RemoveTree deletes a release tree, first making its directories writable
// (materialized trees keep their modes, which may lack the write bit).
func RemoveTree(dir string) error {
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o700)
		}
		return nil
	})
	os.Remove(datadir.TreeRecord(dir))
	return os.RemoveAll(dir)
}

// Problem is one thing Verify found wrong.
type Problem struct {
	Chunk core.ChunkID
	Files []string // files that use the chunk (up to 5)
	Err   error
}

func (p Problem) String() string {
	return fmt.Sprintf("chunk %s (used by %v): %v", p.Chunk, p.Files, p.Err)
}

// Verify reads every chunk of the release, checks it against its ID and
// returns what is missing or corrupt. The signature is the caller's to check
// (Signed.VerifiedBy) before trusting the manifest at all.
func Verify(ctx context.Context, st *Store, m *Manifest) ([]Problem, error) {
	var (
		mu       sync.Mutex
		problems []Problem
		wg       sync.WaitGroup
	)
	jobs := make(chan uint32)
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			for c := range jobs {
				ref := m.Chunks[c]
				data, err := st.ReadChunk(ref.ID, int(ref.Size), buf)
				if err != nil {
					mu.Lock()
					problems = append(problems, Problem{Chunk: ref.ID, Err: err})
					mu.Unlock()
					continue
				}
				buf = data
			}
		}()
	}
feed:
	for c := range m.Chunks {
		select {
		case jobs <- uint32(c):
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(problems) == 0 {
		return nil, nil
	}
	sort.Slice(problems, func(i, j int) bool { return problems[i].Chunk.String() < problems[j].Chunk.String() })
	bad := map[core.ChunkID]int{}
	for i, p := range problems {
		bad[p.Chunk] = i
	}
	for i := range m.Entries {
		e := &m.Entries[i]
		for _, c := range e.Chunks {
			if k, ok := bad[m.Chunks[c].ID]; ok && len(problems[k].Files) < 5 {
				if n := len(problems[k].Files); n == 0 || problems[k].Files[n-1] != e.Path {
					problems[k].Files = append(problems[k].Files, e.Path)
				}
			}
		}
	}
	return problems, nil
}

// partialTreeMark names a tree being materialized, hidden beside its
// destination until it is renamed into place.
const partialTreeMark = ".partial-"

// RemovePartialTrees removes the hidden partial trees that a crash during
// Materialize left in dir, the parent of its destinations, and returns the
// errors of those it could not remove.
func RemovePartialTrees(dir string) []error {
	partials, _ := filepath.Glob(filepath.Join(dir, ".*"+partialTreeMark+"*"))
	// And records being written when it crashed (newTreeRecord).
	records, _ := filepath.Glob(filepath.Join(dir, ".*.files-*"))
	for _, r := range records {
		os.Remove(r)
	}
	var errs []error
	for _, p := range partials {
		if err := RemoveTree(p); err != nil {
			errs = append(errs, fmt.Errorf("remove partial tree %s: %w", p, err))
		}
	}
	return errs
}
