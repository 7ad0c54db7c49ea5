package artifact

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"golang.org/x/sys/unix"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"runtime"
	"sync"
	"time"

	"scatter/artifact/chunker"
	"scatter/artifact/core"
)

// BuildOptions describe a release to build. The zero value of each optional
// field means its default.
type BuildOptions struct {
	Repo    string
	Version string
	Message string
	Builder string // who built it, e.g. user@host
	// Parent is the release this one follows. Zero means: the newest release
	// of Repo in the store with another Version (a rebuild of the same
	// version is a redo, not a child), or none. NoParent forces none.
	Parent   core.ReleaseID
	NoParent bool
	// Time is the release time recorded in the manifest (second precision).
	// Zero means now; pass a fixed time for bit-for-bit reproducible IDs.
	Time     time.Time
	Chunking chunker.Params // zero: chunker.Default
	Limits   Limits         // tarball limits; zero fields: defaults
	Workers  int            // compress-and-write workers; 0: GOMAXPROCS
	Log      *slog.Logger   // nil: discard
}

// BuildResult is what Build made, with the figures `scatter build --json` prints.
type BuildResult struct {
	Signed    *Signed
	Files     int
	Bytes     int64 // uncompressed file bytes
	Chunks    int   // distinct chunks in the release
	NewChunks int   // chunks the store did not hold
	NewBytes  int64 // compressed bytes added to the store
	Duration  time.Duration
}

// srcEntry is one entry as a source yields it. For files, content streams
// from r, or Link names an earlier file of the same source (a tar hardlink).
type srcEntry struct {
	Entry
	Link string
}

// source yields the entries of a release tree, in any order. For a file,
// r is valid only during the call to fn.
type source interface {
	each(ctx context.Context, fn func(e srcEntry, r io.Reader) error) error
}

// Build reads src (a directory or a .tar, .tar.gz or .tar.zst file), stores
// its new chunks, signs the manifest with key and stores it. Nothing is
// written but chunk and manifest files in the store; on error, chunks already
// stored stay (they are valid) and gc collects them.
func Build(ctx context.Context, st *Store, src string, key ed25519.PrivateKey, opt BuildOptions) (*BuildResult, error) {
	opt, err := opt.prepared()
	if err != nil {
		return nil, err
	}
	info, err := os.Stat(src)
	if err != nil {
		return nil, fmt.Errorf("build: source: %w", err)
	}
	var source source
	if info.IsDir() {
		source = dirSource{root: src}
	} else {
		source = tarSource{path: src, limits: opt.Limits.withDefaults()}
	}
	return buildSource(ctx, st, source, src, key, opt)
}

// prepared checks opt and fills its defaults, for Build and BuildStream.
func (opt BuildOptions) prepared() (BuildOptions, error) {
	if opt.Chunking == (chunker.Params{}) {
		opt.Chunking = chunker.Default
	}
	if err := opt.Chunking.Validate(); err != nil {
		return opt, fmt.Errorf("build: %w", err)
	}
	if err := ValidName("repo", opt.Repo); err != nil {
		return opt, fmt.Errorf("build: %w", err)
	}
	if err := ValidName("version", opt.Version); err != nil {
		return opt, fmt.Errorf("build: %w", err)
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	return opt, nil
}

// BuildStream is Build from a tar stream (plain, gzip or zstd, detected
// from the content) read from r: how the origin daemon builds what
// `scatter publish` sends it over its control socket, so that the deploy
// key never leaves the daemon. name is used in errors.
func BuildStream(ctx context.Context, st *Store, r io.Reader, name string, key ed25519.PrivateKey, opt BuildOptions) (*BuildResult, error) {
	opt, err := opt.prepared()
	if err != nil {
		return nil, err
	}
	return buildSource(ctx, st, streamSource{r: r, limits: opt.Limits.withDefaults()}, name, key, opt)
}

func buildSource(ctx context.Context, st *Store, source source, src string, key ed25519.PrivateKey, opt BuildOptions) (*BuildResult, error) {
	start := time.Now()
	parent, err := pickParent(st, opt)
	if err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	unlock, err := st.lock(false)
	if err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	defer unlock()

	b := newBuilder(st, opt)
	w, err := st.NewWriter()
	if err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	err = b.run(ctx, source, w)
	if err != nil {
		w.Abort()
		return nil, fmt.Errorf("build %s: %w", src, err)
	}
	// The chunks are synced to disk before a manifest names them.
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	m := b.manifest()
	m.Repo, m.Version, m.Message, m.Builder, m.Parent = opt.Repo, opt.Version, opt.Message, opt.Builder, parent
	m.Time = opt.Time
	if m.Time.IsZero() {
		m.Time = time.Now()
	}
	m.Time = m.Time.Truncate(time.Second).UTC()
	sm, err := Sign(m, key)
	if err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	if err := st.PutManifest(sm); err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	res := &BuildResult{
		Signed: sm, Files: m.Files(), Bytes: m.Size(), Chunks: len(m.Chunks),
		NewChunks: b.newChunks, NewBytes: b.newBytes, Duration: time.Since(start),
	}
	opt.Log.Info("built release", "release", sm.ID, "repo", m.Repo, "version", m.Version,
		"files", res.Files, "bytes", res.Bytes, "new_bytes", res.NewBytes, "seconds", res.Duration.Seconds())
	return res, nil
}

func pickParent(st *Store, opt BuildOptions) (core.ReleaseID, error) {
	if opt.NoParent {
		return core.ReleaseID{}, nil
	}
	if !opt.Parent.IsZero() {
		if _, err := st.Manifest(opt.Parent); err != nil {
			return core.ReleaseID{}, fmt.Errorf("parent: %w", err)
		}
		return opt.Parent, nil
	}
	rels, err := st.Releases()
	if err != nil {
		return core.ReleaseID{}, err
	}
	for _, r := range rels {
		if r.Manifest.Repo == opt.Repo && r.Manifest.Version != opt.Version {
			return r.ID, nil
		}
	}
	return core.ReleaseID{}, nil
}

func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	for {
		e := unix.Syncfs(int(f.Fd()))
		if errors.Is(e, unix.EINTR) {
			continue
		}
		if e != nil {
			return e
		}
		return nil
	}
}

// fileRec is a file being built: its entry and its chunk IDs in order.
type fileRec struct {
	entry *Entry
	ids   []core.ChunkID
}

// builder turns a source into a manifest. One goroutine (run's caller) reads,
// chunks and hashes; workers compress the chunks the store lacks and append
// them to packs.
type builder struct {
	st     *Store
	params chunker.Params
	nwork  int

	entries  map[string]*Entry
	implicit map[string]bool // directories added only as parents
	files    map[string]*fileRec
	sizes    map[core.ChunkID]uint32 // distinct chunks seen in this build

	mu        sync.Mutex // guards the figures below, written by workers
	newChunks int
	newBytes  int64
	werr      error
}

func newBuilder(st *Store, opt BuildOptions) *builder {
	n := opt.Workers
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	return &builder{
		st: st, params: opt.Chunking, nwork: n,
		entries: map[string]*Entry{}, implicit: map[string]bool{},
		files: map[string]*fileRec{}, sizes: map[core.ChunkID]uint32{},
	}
}

type chunkJob struct {
	id  core.ChunkID
	buf *[]byte
}

func (b *builder) run(ctx context.Context, src source, w *Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobs := make(chan chunkJob, 4*b.nwork)
	pool := sync.Pool{New: func() any { s := make([]byte, 0, b.params.Max); return &s }}
	var wg sync.WaitGroup
	for range b.nwork {
		wg.Add(1)
		go func() {
			defer wg.Done()
			scratch := make([]byte, 0, b.params.Max+b.params.Max/8+64)
			for j := range jobs {
				n, err := w.Put(j.id, *j.buf, scratch)
				pool.Put(j.buf)
				b.mu.Lock()
				if err != nil && b.werr == nil {
					b.werr = err
					cancel()
				}
				if n > 0 {
					b.newChunks++
					b.newBytes += int64(n)
				}
				b.mu.Unlock()
			}
		}()
	}
	c := chunker.New(nil, b.params)
	err := src.each(ctx, func(e srcEntry, r io.Reader) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		rec, err := b.add(e)
		if err != nil || rec == nil || r == nil {
			return err
		}
		c.Reset(r)
		for {
			data, err := c.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return fmt.Errorf("%s: %w", e.Path, err)
			}
			id := core.ChunkIDOf(data)
			rec.ids = append(rec.ids, id)
			rec.entry.Size += int64(len(data))
			if _, ok := b.sizes[id]; ok {
				continue
			}
			b.sizes[id] = uint32(len(data))
			buf := pool.Get().(*[]byte)
			*buf = append((*buf)[:0], data...)
			select {
			case jobs <- chunkJob{id, buf}:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
	close(jobs)
	wg.Wait()
	if b.werr != nil {
		return b.werr
	}
	return err
}

// add records an entry. For a file that needs its content read it returns
// the record to fill.
func (b *builder) add(e srcEntry) (*fileRec, error) {
	if err := ValidPath(e.Path); err != nil {
		return nil, err
	}
	if old, dup := b.entries[e.Path]; dup {
		if !(b.implicit[e.Path] && e.Type == TypeDir) {
			return nil, fmt.Errorf("%s: duplicate entry", e.Path)
		}
		old.Mode = e.Mode
		delete(b.implicit, e.Path)
		return nil, nil
	}
	if err := b.addParents(e.Path); err != nil {
		return nil, err
	}
	ent := e.Entry
	ent.Size = 0
	b.entries[e.Path] = &ent
	if e.Type != TypeFile {
		return nil, nil
	}
	rec := &fileRec{entry: &ent}
	b.files[e.Path] = rec
	if e.Link != "" {
		target, ok := b.files[e.Link]
		if !ok {
			return nil, fmt.Errorf("%s: hard link to %q, which is not an earlier file of the tree", e.Path, e.Link)
		}
		rec.ids = target.ids
		ent.Size = target.entry.Size
		return nil, nil
	}
	return rec, nil
}

func (b *builder) addParents(p string) error {
	dir := path.Dir(p)
	if dir == "." {
		return nil
	}
	if e, ok := b.entries[dir]; ok {
		if e.Type != TypeDir {
			return fmt.Errorf("%s: parent %s is a %s, not a directory", p, dir, e.Type)
		}
		return nil
	}
	if err := b.addParents(dir); err != nil {
		return err
	}
	b.entries[dir] = &Entry{Path: dir, Type: TypeDir, Mode: 0o755}
	b.implicit[dir] = true
	return nil
}

// manifest assembles the tree in canonical order: entries sorted by path,
// chunks numbered by first use.
func (b *builder) manifest() *Manifest {
	m := &Manifest{Chunking: b.params}
	m.Entries = make([]Entry, 0, len(b.entries))
	for _, e := range b.entries {
		m.Entries = append(m.Entries, *e)
	}
	SortEntries(m.Entries)
	index := make(map[core.ChunkID]uint32, len(b.sizes))
	m.Chunks = make([]ChunkRef, 0, len(b.sizes))
	for i := range m.Entries {
		e := &m.Entries[i]
		rec, ok := b.files[e.Path]
		if !ok {
			continue
		}
		e.Chunks = make([]uint32, len(rec.ids))
		for j, id := range rec.ids {
			k, ok := index[id]
			if !ok {
				k = uint32(len(m.Chunks))
				index[id] = k
				m.Chunks = append(m.Chunks, ChunkRef{ID: id, Size: b.sizes[id]})
			}
			e.Chunks[j] = k
		}
	}
	return m
}

// permOf maps a source's mode to the manifest's, refusing what a release
// must not carry.
func permOf(p string, mode fs.FileMode) (fs.FileMode, error) {
	if mode&(fs.ModeSetuid|fs.ModeSetgid) != 0 {
		return 0, fmt.Errorf("%s: setuid/setgid bit set; scatter refuses to ship privileged files (clear the bit in the source)", p)
	}
	return mode.Perm(), nil
}

// refuseWorldWritable refuses a file or directory anyone may write: a
// release is code that runs, and no local user may change it. Refused,
// not masked, like setuid bits: what ships is what the source says.
func refuseWorldWritable(e Entry) error {
	if e.Type != TypeSymlink && e.Mode&0o002 != 0 {
		return fmt.Errorf("%s: world-writable (mode %04o); scatter refuses to ship what any local user could change (chmod o-w in the source)", e.Path, e.Mode)
	}
	return nil
}
