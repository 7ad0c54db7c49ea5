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
)

// ErrDestExists is returned when materialize would overwrite something.
var ErrDestExists = errors.New("destination already exists")

// Previous names an earlier release already materialized at Dir. Files that
// did not change are hard-linked from it instead of written again; release
// trees are read-only by convention, so sharing inodes is safe. Its entries
// come from Manifest or, when that is nil, from the store's manifest of
// Release, read as they are compared.
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
	Files    int   // regular files in the tree
	Linked   int   // files hard-linked from the previous tree
	Written  int64 // bytes written (not linked)
	Duration time.Duration
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
// nothing is left behind.
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
	res, err := materializeInto(ctx, st, chunks, es, tmp, opt)
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
		// The rename itself must survive a power loss before anyone is told
		// the release is staged.
		if serr := syncDir(filepath.Dir(dest)); serr != nil {
			return nil, fmt.Errorf("materialize %s: %w", id.Short(), serr)
		}
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
}

// openPrevious opens p's entries, from memory or the store. Without them
// every file is written: that costs time, never correctness.
func openPrevious(st *Store, p *Previous, log *slog.Logger) (*previousTree, func()) {
	if p == nil {
		return nil, func() {}
	}
	if p.Manifest != nil {
		es := sliceEntries(p.Manifest.Entries)
		return &previousTree{dir: p.Dir, chunks: ManifestTable(p.Release, p.Manifest), es: &es}, func() {}
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
	return &previousTree{dir: p.Dir, chunks: er.table, es: er}, closeBody
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
	link bool
}

// materializeInto writes the entries under dir, which exists and is empty,
// in one pass: directories as they come (a parent precedes its children),
// files by workers, symlinks last: while files are written no symlink
// exists in the tree, so no write can be steered outside it.
func materializeInto(ctx context.Context, st *Store, chunks *Table, es entries, dir string, opt MaterializeOptions) (*MaterializeResult, error) {
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
				linked, written, err := writeEntry(st, chunks, j, dir, prevDir, &buf)
				if err != nil {
					fail(fmt.Errorf("%s: %w", j.e.Path, err))
				}
				mu.Lock()
				if linked {
					res.Linked++
				}
				res.Written += written
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
			res.Files++
			j := job{e: e}
			if prev != nil {
				if old := prev.find(e.Path, opt.Log); old != nil {
					j.link = sameFile(chunks, e, prev.chunks, old)
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
		if err := os.Chmod(filepath.Join(dir, dirs[i].path), dirs[i].mode); err != nil {
			return nil, err
		}
	}
	return res, nil
}

func writeEntry(st *Store, chunks *Table, j job, dir, prevDir string, buf *[]byte) (linked bool, written int64, err error) {
	e := j.e
	dst := filepath.Join(dir, e.Path)
	if j.link {
		if os.Link(filepath.Join(prevDir, e.Path), dst) == nil {
			return true, 0, nil
		}
		// Another file system or a missing file: fall back to writing.
	}
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return false, 0, err
	}
	for _, c := range e.Chunks {
		ref, err := chunks.Ref(int(c))
		if err != nil {
			f.Close()
			return false, written, err
		}
		data, err := st.ReadChunk(ref.ID, int(ref.Size), *buf)
		if err != nil {
			f.Close()
			return false, written, err
		}
		*buf = data
		if _, err := f.Write(data); err != nil {
			f.Close()
			return false, written, err
		}
		written += int64(len(data))
	}
	if err := f.Chmod(e.Mode); err != nil {
		f.Close()
		return false, written, err
	}
	return false, written, f.Close()
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
	var errs []error
	for _, p := range partials {
		if err := RemoveTree(p); err != nil {
			errs = append(errs, fmt.Errorf("remove partial tree %s: %w", p, err))
		}
	}
	return errs
}
