package artifact

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"

	"scatter/artifact/core"
	"scatter/artifact/datadir"
)

// Store is the on-disk, content-addressed chunk store plus the signed
// manifests of the releases built into or fetched by it:
//
//	<dir>/packs/<sha256>.pack    chunks as zstd frames, with an index (pack.go)
//	<dir>/manifests/<release id> signed manifest envelope
//	<dir>/tmp/                   files being written; renamed into place
//	<dir>/lock                   shared by writers, exclusive for gc
//
// Every file appears under its final name only complete (temp file, sync,
// rename), so a crash or a full disk leaves at most garbage in tmp/. Chunks
// are verified against their ID whenever they are read.
//
// The chunk index lives in memory (16 bytes a chunk, index.go) and is read from
// the packs' own indexes at open. A Store is safe for concurrent use; other
// processes' new packs become visible after Refresh.
type Store struct {
	dir datadir.Repo
	log *slog.Logger

	mu    sync.RWMutex
	index chunkIndex
	packs map[string]*packFile
}

// Errors a Store returns, wrapped with the chunk or release they concern.
var (
	ErrChunkMissing   = errors.New("chunk missing from store")
	ErrChunkCorrupt   = errors.New("chunk corrupt")
	ErrReleaseUnknown = errors.New("no such release in store")
	ErrAmbiguous      = errors.New("ambiguous release id prefix")
	ErrStoreBusy      = errors.New("store busy")
)

// OpenStore opens the store at dir, creating it if needed. log may be nil.
func OpenStore(dir string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l := datadir.Repo(dir)
	for _, sub := range []string{l.Packs(), l.Manifests(), l.Tmp()} {
		if err := os.MkdirAll(sub, 0o755); err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
	}
	s := &Store{dir: l, log: log, packs: map[string]*packFile{}}
	// With no writer alive anywhere, whatever is in tmp/ is a crashed
	// writer's; clear it now rather than wait for gc.
	if unlock, err := s.lock(true); err == nil {
		s.clearTemp()
		unlock()
	}
	if err := s.loadPacks(); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	return s, nil
}

// Refresh picks up packs that other processes added since open.
func (s *Store) Refresh() error { return s.loadPacks() }

// Close releases the store's open pack files.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.packs {
		p.f.Close()
	}
	s.packs, s.index = map[string]*packFile{}, chunkIndex{}
	return nil
}

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir.Dir() }

// HasChunk reports whether the store holds chunk id. It does not read the
// chunk: ReadChunk verifies.
func (s *Store) HasChunk(id core.ChunkID) bool {
	s.mu.RLock()
	ok := s.index.has(id)
	s.mu.RUnlock()
	return ok
}

func (s *Store) locate(id core.ChunkID) (chunkLoc, error) {
	s.mu.RLock()
	l, ok := s.index.get(id)
	s.mu.RUnlock()
	if !ok {
		return l, fmt.Errorf("chunk %s: %w", id, ErrChunkMissing)
	}
	return l, nil
}

// CompressedSize returns the size of chunk id's stored zstd frame.
func (s *Store) CompressedSize(id core.ChunkID) (int64, error) {
	l, err := s.locate(id)
	return int64(l.csize), err
}

// ReadChunk returns the uncompressed bytes of chunk id (size bytes long),
// decoded into dst if it has room, after checking them against id.
func (s *Store) ReadChunk(id core.ChunkID, size int, dst []byte) ([]byte, error) {
	l, err := s.locate(id)
	if err != nil {
		return nil, err
	}
	// The frame is read into a pooled buffer: a new one per chunk was
	// most of what staging allocated, and the collector, pacing by the
	// rate of allocation, let the heap grow with it.
	zp := framePool.Get().(*[]byte)
	defer framePool.Put(zp)
	if cap(*zp) < int(l.csize) {
		*zp = make([]byte, l.csize)
	}
	z := (*zp)[:l.csize]
	if err := l.readFrameInto(z); err != nil {
		return nil, fmt.Errorf("read chunk %s: %w", id, err)
	}
	out, err := zstdDecodeInto(z, dst, size)
	if err != nil {
		return nil, fmt.Errorf("chunk %s: %w: %v", id, ErrChunkCorrupt, err)
	}
	if core.ChunkIDOf(out) != id {
		return nil, fmt.Errorf("chunk %s: %w: content hash does not match", id, ErrChunkCorrupt)
	}
	return out, nil
}

var framePool = sync.Pool{New: func() any { return new([]byte) }}

// ReadFrameAt reads len(dst) bytes at off of chunk id's stored frame,
// which must be csize bytes long (ErrChunkMissing if the stored frame is
// another: the same chunk compressed by another build).
func (s *Store) ReadFrameAt(id core.ChunkID, csize int64, dst []byte, off int64) error {
	l, err := s.locate(id)
	if err != nil {
		return err
	}
	if int64(l.csize) != csize {
		return fmt.Errorf("chunk %s: %w: stored frame is %d bytes, want %d", id, ErrChunkMissing, l.csize, csize)
	}
	if off < 0 || off+int64(len(dst)) > csize {
		return fmt.Errorf("chunk %s: read of %d bytes at %d outside its %d-byte frame", id, len(dst), off, csize)
	}
	if _, err := l.pack.f.ReadAt(dst, l.off+off); err != nil {
		return fmt.Errorf("read chunk %s: %w", id, err)
	}
	return nil
}

// ReadCompressedChunk returns the stored zstd frame of chunk id as is.
func (s *Store) ReadCompressedChunk(id core.ChunkID) ([]byte, error) {
	l, err := s.locate(id)
	if err != nil {
		return nil, err
	}
	z, err := l.readFrame()
	if err != nil {
		return nil, fmt.Errorf("read chunk %s: %w", id, err)
	}
	return z, nil
}

// PutManifest stores a signed manifest.
func (s *Store) PutManifest(sm *Signed) error {
	dst := s.dir.Manifest(sm.ID)
	if err := writeAtomic(s.dir.Tmp(), dst, sm.Encode(), 0o444); err != nil {
		return fmt.Errorf("store manifest %s: %w", sm.ID.Short(), err)
	}
	return nil
}

// ManifestEnvelope returns the stored envelope of release id as is, for
// serving to peers: they verify it themselves, and decoding a large
// release's manifest only to encode it again costs megabytes.
func (s *Store) ManifestEnvelope(id core.ReleaseID) ([]byte, error) {
	b, err := os.ReadFile(s.dir.Manifest(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("release %s: %w", id.Short(), ErrReleaseUnknown)
	}
	if err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", id.Short(), err)
	}
	return b, nil
}

// OpenManifest opens the stored envelope of release id for reading, to
// send it on as is without holding it in memory.
func (s *Store) OpenManifest(id core.ReleaseID) (*os.File, error) {
	f, err := os.Open(s.manifestPath(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("release %s: %w", id.Short(), ErrReleaseUnknown)
	}
	if err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", id.Short(), err)
	}
	return f, nil
}

// Manifest reads and decodes the manifest of release id. The signature is
// checked against the key it names; callers that need trust use Open or
// Signed.VerifiedBy.
func (s *Store) Manifest(id core.ReleaseID) (*Signed, error) {
	b, err := s.ManifestEnvelope(id)
	if err != nil {
		return nil, err
	}
	sm, err := DecodeSigned(b)
	if err != nil {
		return nil, fmt.Errorf("release %s: %w", id.Short(), err)
	}
	if sm.ID != id {
		return nil, fmt.Errorf("release %s: manifest file holds release %s", id.Short(), sm.ID.Short())
	}
	return sm, nil
}

// ReleaseIDs lists the releases whose manifests the store holds.
func (s *Store) ReleaseIDs() ([]core.ReleaseID, error) {
	names, err := readDirNames(s.dir.Manifests())
	if err != nil {
		return nil, fmt.Errorf("list releases: %w", err)
	}
	var ids []core.ReleaseID
	for _, n := range names {
		id, err := core.ParseReleaseID(n)
		if err != nil {
			s.log.Warn("stray file in manifests directory", "name", n)
			continue
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// Releases returns the stored manifests, newest first (by build time, then ID).
func (s *Store) Releases() ([]*Signed, error) {
	ids, err := s.ReleaseIDs()
	if err != nil {
		return nil, err
	}
	out := make([]*Signed, 0, len(ids))
	for _, id := range ids {
		sm, err := s.Manifest(id)
		if err != nil {
			return nil, err
		}
		out = append(out, sm)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].Manifest.Time, out[j].Manifest.Time
		if !a.Equal(b) {
			return a.After(b)
		}
		return bytes.Compare(out[i].ID[:], out[j].ID[:]) < 0
	})
	return out, nil
}

// Resolve turns a full release ID or a unique prefix of at least 4 hex
// digits into the ID of a stored release.
func (s *Store) Resolve(ref string) (core.ReleaseID, error) {
	if id, err := core.ParseReleaseID(ref); err == nil {
		if _, err := os.Stat(s.dir.Manifest(id)); err != nil {
			return id, fmt.Errorf("release %s: %w", id.Short(), ErrReleaseUnknown)
		}
		return id, nil
	}
	if len(ref) < 4 || strings.Trim(ref, "0123456789abcdef") != "" {
		return core.ReleaseID{}, fmt.Errorf("release %q: want a release id or a prefix of at least 4 lower-case hex digits", ref)
	}
	ids, err := s.ReleaseIDs()
	if err != nil {
		return core.ReleaseID{}, err
	}
	var found []core.ReleaseID
	for _, id := range ids {
		if strings.HasPrefix(id.String(), ref) {
			found = append(found, id)
		}
	}
	switch len(found) {
	case 0:
		return core.ReleaseID{}, fmt.Errorf("release %q: %w", ref, ErrReleaseUnknown)
	case 1:
		return found[0], nil
	}
	return core.ReleaseID{}, fmt.Errorf("release %q matches %d releases: %w", ref, len(found), ErrAmbiguous)
}

// lock takes the store's lock file, shared for writers and exclusive for gc.
// The returned function releases it.
func (s *Store) lock(exclusive bool) (func(), error) {
	f, err := os.OpenFile(s.dir.StoreLock(), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock store: %w", err)
	}
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	if err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			if exclusive {
				return nil, fmt.Errorf("%w: a build or fetch is writing to %s", ErrStoreBusy, s.dir)
			}
			return nil, fmt.Errorf("%w: garbage collection is running on %s", ErrStoreBusy, s.dir)
		}
		return nil, fmt.Errorf("lock store: %w", err)
	}
	return func() { f.Close() }, nil
}

// writeAtomic writes data to dst through a temp file in tmpDir (on the same
// file system) and a rename. On any error the temp file is removed, so a
// full disk never leaves a partial file under dst's name.
func writeAtomic(tmpDir, dst string, data []byte, mode fs.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp, err := writeTemp(tmpDir, data, mode)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(dst))
}

// writeTemp writes data to a new synced file in tmpDir and returns its
// path; on error it leaves nothing behind.
func writeTemp(tmpDir string, data []byte, mode fs.FileMode) (string, error) {
	return writeTempFrom(tmpDir, bytes.NewReader(data), int64(len(data)), mode)
}

// writeTempFrom copies r, which must hold at most limit bytes, to a new
// file in tmpDir with the given mode, synced, and returns its path. On
// error nothing is left behind.
func writeTempFrom(tmpDir string, r io.Reader, limit int64, mode fs.FileMode) (string, error) {
	f, err := os.CreateTemp(tmpDir, "w-*")
	if err != nil {
		return "", err
	}
	tmp := f.Name()
	n, err := io.Copy(f, io.LimitReader(r, limit+1))
	if err == nil && n > limit {
		err = fmt.Errorf("more than %d bytes", limit)
	}
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return "", err
	}
	return tmp, nil
}

func readDirNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// CheckFrame checks that z is a zstd frame of a chunk of size bytes whose
// content hashes to id. It is how bytes from the network earn a place in
// the store.
func CheckFrame(id core.ChunkID, z []byte, size int) error {
	// Every chunk a host fetches passes here: a buffer per call was most
	// of a fetch's allocation (2.3 GB for a 2 GiB release) and kept the
	// collector busy.
	bp := frameBufs.Get().(*[]byte)
	defer frameBufs.Put(bp)
	out, err := zstdDecodeInto(z, *bp, size)
	if out != nil {
		*bp = out
	}
	if err != nil {
		return fmt.Errorf("chunk %s: %w: %v", id, ErrChunkCorrupt, err)
	}
	if core.ChunkIDOf(out) != id {
		return fmt.Errorf("chunk %s: %w: content hash does not match", id, ErrChunkCorrupt)
	}
	return nil
}

// frameBufs holds decode buffers for CheckFrame.
var frameBufs = sync.Pool{New: func() any { return new([]byte) }}
