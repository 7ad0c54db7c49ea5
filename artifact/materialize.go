package artifact

import (
	"context"
	"errors"
	"fmt"
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
// trees are read-only by convention, so sharing inodes is safe.
type Previous struct {
	Manifest *Manifest
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

// Materialize writes the release tree of sm to dest, which must not exist.
// Every chunk is verified against its ID as it is written. The tree is built
// in a hidden sibling directory and renamed to dest only when complete and
// synced, so dest either is the whole release or does not exist; on error
// nothing is left behind.
func Materialize(ctx context.Context, st *Store, sm *Signed, dest string, opt MaterializeOptions) (*MaterializeResult, error) {
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
	tmp, err := os.MkdirTemp(filepath.Dir(dest), "."+filepath.Base(dest)+".partial-")
	if err != nil {
		return nil, fmt.Errorf("materialize: %w", err)
	}
	res, err := materializeInto(ctx, st, sm.Manifest, tmp, opt)
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
			return nil, fmt.Errorf("materialize %s: %w", sm.ID.Short(), serr)
		}
	}
	if err != nil {
		if rerr := RemoveTree(tmp); rerr != nil {
			opt.Log.Error("could not remove partial tree", "dir", tmp, "err", rerr)
		}
		return nil, fmt.Errorf("materialize %s: %w", sm.ID.Short(), err)
	}
	res.Duration = time.Since(start)
	opt.Log.Info("materialized release", "release", sm.ID, "dest", dest, "files", res.Files, "linked", res.Linked, "seconds", res.Duration.Seconds())
	return res, nil
}

// materializeInto writes m's entries under dir, which exists and is empty.
// Files and directories first, symlinks last: while files are written no
// symlink exists in the tree, so no write can be steered outside it.
func materializeInto(ctx context.Context, st *Store, m *Manifest, dir string, opt MaterializeOptions) (*MaterializeResult, error) {
	res := &MaterializeResult{}
	for i := range m.Entries {
		e := &m.Entries[i]
		if e.Type == TypeDir {
			if err := os.Mkdir(filepath.Join(dir, e.Path), 0o700); err != nil {
				return nil, err
			}
		}
	}
	var prev map[string]*Entry
	if opt.Previous != nil {
		prev = make(map[string]*Entry, len(opt.Previous.Manifest.Entries))
		for i := range opt.Previous.Manifest.Entries {
			prev[opt.Previous.Manifest.Entries[i].Path] = &opt.Previous.Manifest.Entries[i]
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	jobs := make(chan *Entry)
	for range opt.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			for e := range jobs {
				linked, written, err := writeEntry(st, m, e, dir, opt.Previous, prev, &buf)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("%s: %w", e.Path, err)
					cancel()
				}
				if linked {
					res.Linked++
				}
				res.Written += written
				mu.Unlock()
			}
		}()
	}
feed:
	for i := range m.Entries {
		e := &m.Entries[i]
		if e.Type != TypeFile {
			continue
		}
		res.Files++
		select {
		case jobs <- e:
		case <-ctx.Done():
			break feed
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
	for i := range m.Entries {
		e := &m.Entries[i]
		if e.Type == TypeSymlink {
			if err := os.Symlink(e.Target, filepath.Join(dir, e.Path)); err != nil {
				return nil, err
			}
		}
	}
	for i := len(m.Entries) - 1; i >= 0; i-- { // children before parents
		e := &m.Entries[i]
		if e.Type == TypeDir {
			if err := os.Chmod(filepath.Join(dir, e.Path), e.Mode); err != nil {
				return nil, err
			}
		}
	}
	return res, nil
}

func writeEntry(st *Store, m *Manifest, e *Entry, dir string, p *Previous, prev map[string]*Entry, buf *[]byte) (linked bool, written int64, err error) {
	dst := filepath.Join(dir, e.Path)
	if old := prev[e.Path]; old != nil && sameFile(m, e, p.Manifest, old) {
		if os.Link(filepath.Join(p.Dir, e.Path), dst) == nil {
			return true, 0, nil
		}
		// Another file system or a missing file: fall back to writing.
	}
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return false, 0, err
	}
	for _, c := range e.Chunks {
		ref := m.Chunks[c]
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

// sameFile reports whether two entries of two manifests have the same
// content and mode.
func sameFile(m *Manifest, e *Entry, pm *Manifest, pe *Entry) bool {
	if pe.Type != TypeFile || pe.Mode != e.Mode || pe.Size != e.Size || len(pe.Chunks) != len(e.Chunks) {
		return false
	}
	for i := range e.Chunks {
		if m.Chunks[e.Chunks[i]].ID != pm.Chunks[pe.Chunks[i]].ID {
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
