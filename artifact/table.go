package artifact

import (
	"bufio"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/zstd"

	"scatter/artifact/core"
)

// readTable reads a whole body, checking every entry, and returns its
// table, with the IDs in an unlinked file in dir, or in memory if dir is
// "". end, if not nil, is checked after the body's last byte.
func readTable(r *decoder, id core.ReleaseID, end func() error, dir string) (*Table, error) {
	var sink tableSink = &memSink{}
	fs := &fileSink{dir: dir}
	if dir != "" {
		sink = fs
	}
	t, err := readTableInto(r, sink, end)
	if err != nil {
		fs.abort()
		return nil, err
	}
	t.ID = id
	return t, nil
}

func readTableInto(r *decoder, sink tableSink, end func() error) (*Table, error) {
	er, err := newEntryReader(r, sink)
	if err != nil {
		return nil, err
	}
	er.end = end
	var e Entry // entries are checked and dropped: one will do
	for {
		if err := er.nextInto(&e); errors.Is(err, io.EOF) {
			return er.table, nil
		} else if err != nil {
			return nil, err
		}
	}
}

// tableFromFile reads the chunk table of the envelope file at path, which
// must hold release id signed by the trusted key. The signature is checked
// before anything is decompressed, and the body streams: it is never in
// memory whole, and must hash to id before the table is returned.
func tableFromFile(path string, id core.ReleaseID, trusted ed25519.PublicKey, tmpDir string) (*Table, error) {
	h, body, sum, closeBody, err := openBody(path)
	if err != nil {
		return nil, err
	}
	defer closeBody()
	if err := h.verify(trusted); err != nil {
		return nil, err
	}
	if h.ID != id {
		return nil, fmt.Errorf("manifest of release %s, want %s", h.ID.Short(), id.Short())
	}
	return readTable(&decoder{rd: body, left: h.Size}, id, func() error { return checkBodyEnd(body, sum, id) }, tmpDir)
}

// PutFetched stores an envelope fetched from a peer, read from r, and
// returns its chunk table, if it is release want signed by the trusted
// key and its manifest passes every check UnmarshalBody makes. It is
// copied to a temporary file as it arrives and checked from there,
// streaming, and renamed into place only once it has passed: neither the
// envelope nor its decoded body is ever in memory whole.
func (s *Store) PutFetched(r io.Reader, trusted ed25519.PublicKey, want core.ReleaseID) (*Table, error) {
	tmp, err := writeTempFrom(s.dir.Tmp(), r, MaxEnvelopeSize, 0o444)
	if err != nil {
		return nil, fmt.Errorf("receive manifest %s: %w", want.Short(), err)
	}
	t, err := tableFromFile(tmp, want, trusted, s.dir.Tmp())
	if err == nil {
		dst := s.manifestPath(want)
		if err = os.Rename(tmp, dst); err == nil {
			err = syncDir(filepath.Dir(dst))
		}
		if err != nil {
			err = fmt.Errorf("store manifest %s: %w", want.Short(), err)
		}
	}
	if err != nil {
		os.Remove(tmp)
		return nil, err
	}
	return t, nil
}

// Table reads the stored manifest of release id and returns its chunk
// table, once the trusted key's signature and the whole manifest check
// out. Like PutFetched it streams the body.
func (s *Store) Table(id core.ReleaseID, trusted ed25519.PublicKey) (*Table, error) {
	t, err := tableFromFile(s.manifestPath(id), id, trusted, s.dir.Tmp())
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("release %s: %w", id.Short(), ErrReleaseUnknown)
	}
	if err != nil {
		return nil, fmt.Errorf("release %s: %w", id.Short(), err)
	}
	return t, nil
}

func (s *Store) manifestPath(id core.ReleaseID) string {
	return s.dir.Manifest(id)
}

// entryReader reads a manifest's entries one at a time, each checked as
// UnmarshalBody checks it, so that a tree can be walked without holding
// all its entries. What only the whole tree shows (unused chunks,
// symlinks that leave the tree) is checked after the last entry: next
// returns io.EOF only once the manifest has passed everything.
type entryReader struct {
	head  *Manifest // metadata; Chunks and Entries nil
	table *Table
	r     *decoder
	n, i  int
	check *entryCheck
	end   func() error // after the body's last byte; may be nil
}

// newEntryReader reads the head of a body, handing its chunk table to sink.
func newEntryReader(r *decoder, sink tableSink) (*entryReader, error) {
	m, n := decodeHead(r, sink)
	if r.err != nil {
		return nil, fmt.Errorf("decode manifest: %w", r.err)
	}
	if err := sink.finish(); err != nil {
		return nil, fmt.Errorf("decode manifest: chunk table: %w", err)
	}
	if err := m.validHead(); err != nil {
		return nil, fmt.Errorf("decode manifest: %w", err)
	}
	t := sink.table(m)
	if _, known := sink.(*knownSink); !known { // a known table passed when it was read
		if err := validTable(t, m.Chunking); err != nil {
			return nil, fmt.Errorf("decode manifest: %w", err)
		}
	}
	return &entryReader{head: m, table: t, r: r, n: n, check: newEntryCheck(t)}, nil
}

// next returns the next entry, which the caller may keep.
func (er *entryReader) next() (*Entry, error) {
	e := &Entry{}
	if err := er.nextInto(e); err != nil {
		return nil, err
	}
	return e, nil
}

// nextInto reads the next entry into e, reusing its chunk list.
func (er *entryReader) nextInto(e *Entry) error {
	if er.i == er.n {
		if err := er.r.end(); err != nil {
			return fmt.Errorf("decode manifest: %w", err)
		}
		if er.end != nil {
			if err := er.end(); err != nil {
				return err
			}
		}
		if err := er.check.finish(); err != nil {
			return fmt.Errorf("decode manifest: %w", err)
		}
		er.n = -1 // a later call fails rather than check again
		return io.EOF
	}
	if er.i > er.n {
		return errors.New("decode manifest: read past the end")
	}
	*e = Entry{Chunks: e.Chunks[:0]}
	decodeEntry(er.r, er.i, er.table.Len(), e)
	er.i++
	if er.r.err != nil {
		return fmt.Errorf("decode manifest: %w", er.r.err)
	}
	if err := er.check.check(e); err != nil {
		return fmt.Errorf("decode manifest: %w", err)
	}
	return nil
}

// storedEntries streams the entries of release id from its stored
// envelope: a few hundred KiB of buffers instead of the decoded body.
// known is the release's chunk table if the caller holds it, or nil: then
// the table is read to an unlinked file in the store's tmp directory.
// The body was verified when it was stored; read back, it must hash to id
// again, and next returns io.EOF only if it does. The caller calls the
// returned function to close the stream.
func (s *Store) storedEntries(id core.ReleaseID, known *Table) (*entryReader, func(), error) {
	body, size, sum, closeBody, err := s.openStoredBody(id)
	if err != nil {
		return nil, nil, err
	}
	var sink tableSink = &knownSink{t: known}
	fs := &fileSink{dir: s.dir.Tmp()}
	if known == nil {
		sink = fs
	}
	er, err := newEntryReader(&decoder{rd: body, left: size}, sink)
	if err != nil {
		fs.abort()
		closeBody()
		return nil, nil, fmt.Errorf("release %s: %w", id.Short(), err)
	}
	er.end = func() error {
		if err := checkBodyEnd(body, sum, id); err != nil {
			return fmt.Errorf("release %s: %w", id.Short(), err)
		}
		return nil
	}
	if known == nil {
		closeBody = func(closeBody func()) func() {
			return func() { closeBody(); er.table.Close() }
		}(closeBody)
	}
	return er, closeBody, nil
}

// verifyStored checks that the stored body of release id hashes to id,
// without holding it: done before a stored manifest's entries are used.
func (s *Store) verifyStored(id core.ReleaseID) error {
	body, size, sum, closeBody, err := s.openStoredBody(id)
	if err != nil {
		return err
	}
	defer closeBody()
	if _, err := io.CopyN(io.Discard, body, int64(size)); err != nil {
		return fmt.Errorf("release %s: read manifest: %w", id.Short(), err)
	}
	if err := checkBodyEnd(body, sum, id); err != nil {
		return fmt.Errorf("release %s: %w", id.Short(), err)
	}
	return nil
}

// checkBodyEnd checks that body, read to its declared size, ends there
// and hashed (sum) to id.
func checkBodyEnd(body io.Reader, sum hash.Hash, id core.ReleaseID) error {
	var one [1]byte
	if n, err := body.Read(one[:]); n != 0 || !errors.Is(err, io.EOF) {
		return errors.New("manifest body longer than declared")
	}
	if core.ReleaseID(sum.Sum(nil)) != id {
		return errors.New("manifest body does not hash to its release id")
	}
	return nil
}

// openStoredBody is openBody for the stored manifest of release id, whose
// signature was checked when it was stored: the body must hash to id.
func (s *Store) openStoredBody(id core.ReleaseID) (io.Reader, int, hash.Hash, func(), error) {
	h, body, sum, closeBody, err := openBody(s.manifestPath(id))
	if errors.Is(err, os.ErrNotExist) {
		return nil, 0, nil, nil, fmt.Errorf("release %s: %w", id.Short(), ErrReleaseUnknown)
	}
	if err != nil {
		return nil, 0, nil, nil, fmt.Errorf("read manifest %s: %w", id.Short(), err)
	}
	return body, h.Size, sum, closeBody, nil
}

// openBody opens the envelope file at path and returns its header and its
// body as a stream of h.Size bytes, hashed into sum as it is read. Nothing
// is checked but the header's form: the caller checks the signature
// (h.verify) or knows which release the body must hash to.
func openBody(path string) (*envelopeHeader, io.Reader, hash.Hash, func(), error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	fail := func(err error) (*envelopeHeader, io.Reader, hash.Hash, func(), error) {
		f.Close()
		return nil, nil, nil, nil, err
	}
	br := bufio.NewReader(f)
	h, err := readHeader(br)
	if err != nil {
		return fail(err)
	}
	// Manifests are compressed with a 1 MiB window (zstd.go). Low-memory
	// mode keeps the decoder's buffers near the window.
	zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxMemory(maxBodySize+1), zstd.WithDecoderMaxWindow(maxBodySize+1))
	if err != nil {
		return fail(err)
	}
	sum := sha256.New()
	closeBody := func() {
		zr.Close()
		f.Close()
	}
	return h, io.TeeReader(zr, sum), sum, closeBody, nil
}
