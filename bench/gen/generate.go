package gen

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
)

// flushAt bounds the per-worker buffer: big files are streamed in pieces of
// roughly this size, so memory stays flat whatever the tree size.
const flushAt = 256 << 10

// sink is a minimal buffered writer. Generators append to buf directly,
// which is cheaper than going through io.Writer for every token.
type sink struct {
	w       io.Writer
	buf     []byte
	flushed int64
	err     error
}

func (s *sink) size() int64 { return s.flushed + int64(len(s.buf)) }

func (s *sink) str(v string) { s.buf = append(s.buf, v...) }

func (s *sink) flushIfFull() {
	if len(s.buf) >= flushAt {
		s.flush()
	}
}

func (s *sink) flush() {
	if s.err == nil && len(s.buf) > 0 {
		_, s.err = s.w.Write(s.buf)
	}
	s.flushed += int64(len(s.buf))
	s.buf = s.buf[:0]
}

func (s *sink) reset(w io.Writer) {
	s.w, s.flushed, s.err, s.buf = w, 0, nil, s.buf[:0]
}

// Generate writes a new tree under dir, which must not exist or be empty.
// The tree is a pure function of cfg: files are generated concurrently, but
// each file's bytes depend only on (Seed, Config, path).
func Generate(dir string, cfg Config) (Stats, error) {
	if err := cfg.Validate(); err != nil {
		return Stats{}, err
	}
	cfg = cfg.withDefaults()
	if err := prepareRoot(dir); err != nil {
		return Stats{}, fmt.Errorf("gen: %w", err)
	}
	p := newPlan(cfg)
	t := &treeWriter{root: dir, plan: p}
	if err := t.skeleton(); err != nil {
		return Stats{}, fmt.Errorf("gen: %w", err)
	}
	n, err := t.files()
	if err != nil {
		return Stats{}, err
	}
	return Stats{Files: len(p.files), Bytes: n, Dirs: len(p.dirs), Symlinks: len(p.links)}, nil
}

func prepareRoot(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return os.MkdirAll(dir, 0o755)
	case err != nil:
		return err
	case len(entries) > 0:
		return fmt.Errorf("target %s is not empty", dir)
	}
	return nil
}

type treeWriter struct {
	root string
	plan *plan
	// fixModes is set when the umask strips bits from 0644/0755; only then
	// is an explicit chmod per file worth its syscall.
	fixModes bool
}

func (t *treeWriter) abs(rel string) string { return filepath.Join(t.root, filepath.FromSlash(rel)) }

// skeleton creates all directories and symlinks.
func (t *treeWriter) skeleton() error {
	for i, d := range t.plan.dirs {
		name := t.abs(d)
		if err := os.Mkdir(name, 0o755); err != nil {
			return err
		}
		if i == 0 {
			fi, err := os.Lstat(name)
			if err != nil {
				return err
			}
			t.fixModes = fi.Mode().Perm() != 0o755
		}
		if t.fixModes {
			if err := os.Chmod(name, 0o755); err != nil {
				return err
			}
		}
	}
	for _, l := range t.plan.links {
		if err := os.Symlink(l.target, t.abs(l.path)); err != nil {
			return err
		}
	}
	return nil
}

// files generates all planned files with a small worker pool and returns
// the bytes written. Largest files go first so one big language file does
// not end up last on a single worker.
func (t *treeWriter) files() (int64, error) {
	p := t.plan
	order := make([]int, len(p.files))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		return cmp.Compare(p.files[b].size, p.files[a].size)
	})

	workers := min(max(runtime.GOMAXPROCS(0), 2), 4)
	jobs := make(chan int)
	var (
		mu       sync.Mutex
		total    int64
		firstErr error
		wg       sync.WaitGroup
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := &sink{buf: make([]byte, 0, flushAt+64<<10)}
			var n int64
			var err error
			for i := range jobs {
				if err != nil {
					continue // drain so the producer never blocks
				}
				var k int64
				k, err = t.file(p.files[i], s)
				n += k
			}
			mu.Lock()
			total += n
			if err != nil && firstErr == nil {
				firstErr = err
			}
			mu.Unlock()
		}()
	}
	for _, i := range order {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	return total, firstErr
}

func (t *treeWriter) file(f fileSpec, s *sink) (int64, error) {
	mode := fs.FileMode(0o644)
	if f.kind == kindScript {
		mode = 0o755
	}
	fh, err := os.OpenFile(t.abs(f.path), os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return 0, fmt.Errorf("gen: %w", err)
	}
	s.reset(fh)
	p := t.plan
	switch f.kind {
	case kindPHP:
		writePHP(s, p, f.path, f.size)
	case kindDefines:
		writeDefines(s, p, f.size)
	case kindManifest:
		writeManifest(s, p, f.path, f.size)
	case kindDoc:
		writeDoc(s, p, f.path, f.size)
	case kindScript:
		writeScript(s, p, f.path, f.size)
	case kindL10n:
		writeL10n(s, p, p.langs[f.lang])
	case kindAsset:
		writeAsset(s, p, f.path, f.size)
	}
	s.flush()
	err = s.err
	if t.fixModes {
		err = errors.Join(err, fh.Chmod(mode))
	}
	if err = errors.Join(err, fh.Close()); err != nil {
		return 0, fmt.Errorf("gen: write %s: %w", f.path, err)
	}
	return s.size(), nil
}

// writeAsset fills a file with ChaCha8 output: incompressible, and unique
// per path so assets never dedupe against each other.
func writeAsset(s *sink, p *plan, rel string, size int64) {
	a, b := seedFor(p.cfg.Seed, "asset", rel)
	var key [32]byte
	for i := range 8 {
		key[i] = byte(a >> (8 * i))
		key[8+i] = byte(b >> (8 * i))
	}
	src := rand.NewChaCha8(key)
	s.flush()
	for s.size() < size {
		n := int(min(size-s.size(), int64(cap(s.buf))))
		s.buf = s.buf[:n]
		_, _ = src.Read(s.buf) // ChaCha8.Read never fails
		s.flush()
	}
}
