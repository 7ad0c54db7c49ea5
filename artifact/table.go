package artifact

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/zstd"

	"scatter/artifact/chunker"
	"scatter/artifact/core"
	"scatter/artifact/keys"
)

// Table is what fetching and serving a release need of its manifest: the
// chunk table, without the entries. A daemon holds it for as long as it
// serves the release; the entries (about 130 bytes a file decoded, most of
// a large manifest) stay in the stored envelope and are read from there
// when the tree is materialized (MaterializeStored).
type Table struct {
	ID       core.ReleaseID
	Parent   core.ReleaseID
	Chunking chunker.Params
	Chunks   []ChunkRef
}

// Table returns the chunk table of a decoded manifest, sharing its array.
func (s *Signed) Table() *Table {
	m := s.Manifest
	return &Table{ID: s.ID, Parent: m.Parent, Chunking: m.Chunking, Chunks: m.Chunks}
}

// OpenTable is Open keeping only the chunk table: the envelope must carry
// the trusted key's signature and a manifest that UnmarshalBody accepts,
// but its entries are checked as they are read and not kept.
func OpenTable(b []byte, trusted ed25519.PublicKey) (*Table, error) {
	return openTable(b, trusted, nil)
}

// openTable is OpenTable; keep, if not nil, is given the envelope once its
// signature verifies and before the entries are decoded, the envelope's
// last use here: a caller that drops it too lets it be collected before
// the chunk table is allocated.
func openTable(b []byte, trusted ed25519.PublicKey, keep func([]byte) error) (*Table, error) {
	if err := signerTrusted(b, trusted); err != nil {
		return nil, err
	}
	s, body, err := openEnvelope(b)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(s.PubKey, trusted) {
		return nil, fmt.Errorf("manifest: %w", keys.ErrWrongKey)
	}
	if keep != nil {
		if err := keep(b); err != nil {
			return nil, err
		}
	}
	er, err := newEntryReader(&decoder{buf: body}, nil)
	if err != nil {
		return nil, err
	}
	for {
		if _, err := er.next(); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, err
		}
	}
	m := er.head
	return &Table{ID: sha256.Sum256(body), Parent: m.Parent, Chunking: m.Chunking, Chunks: m.Chunks}, nil
}

// PutFetched opens an envelope fetched from a peer as OpenTable does and,
// once it passes and is release want, stores it as received: encoding the manifest again would
// hold a second compressed copy and its encoder's buffers. The envelope is
// written to a temporary file as soon as its signature verifies and is
// renamed into place only once the whole manifest has passed; a caller
// that keeps no other reference to b lets it be collected before the chunk
// table is decoded (b, body and table together were a host's peak).
func (s *Store) PutFetched(b []byte, trusted ed25519.PublicKey, want core.ReleaseID) (*Table, error) {
	var tmp string
	t, err := openTable(b, trusted, func(env []byte) error {
		var err error
		tmp, err = writeTemp(filepath.Join(s.dir, "tmp"), env, 0o444)
		return err
	})
	if err == nil && t.ID != want {
		err = fmt.Errorf("manifest of release %s, want %s", t.ID.Short(), want.Short())
	}
	if err == nil {
		dst := filepath.Join(s.dir, "manifests", t.ID.String())
		if err = os.Rename(tmp, dst); err == nil {
			err = syncDir(filepath.Dir(dst))
		}
		if err != nil {
			err = fmt.Errorf("store manifest %s: %w", t.ID.Short(), err)
		}
	}
	if err != nil {
		if tmp != "" {
			os.Remove(tmp)
		}
		return nil, err
	}
	return t, nil
}

// Table reads the stored manifest of release id and returns its chunk
// table, once the trusted key's signature and the whole manifest check out.
func (s *Store) Table(id core.ReleaseID, trusted ed25519.PublicKey) (*Table, error) {
	b, err := s.ManifestEnvelope(id)
	if err != nil {
		return nil, err
	}
	t, err := OpenTable(b, trusted)
	if err != nil {
		return nil, fmt.Errorf("release %s: %w", id.Short(), err)
	}
	if t.ID != id {
		return nil, fmt.Errorf("release %s: manifest file holds release %s", id.Short(), t.ID.Short())
	}
	return t, nil
}

// entryReader reads a manifest's entries one at a time, each checked as
// UnmarshalBody checks it, so that a tree can be walked without holding
// all its entries. What only the whole tree shows (unused chunks,
// symlinks that leave the tree) is checked after the last entry: next
// returns io.EOF only once the manifest has passed everything.
type entryReader struct {
	head  *Manifest // metadata and chunk table; Entries nil
	r     *decoder
	n, i  int
	check *entryCheck
	end   func() error // after the body's last byte; may be nil
}

// newEntryReader reads the head of a body; known is its chunk table if
// the caller holds it already (see decodeHead), or nil.
func newEntryReader(r *decoder, known []ChunkRef) (*entryReader, error) {
	m, n := decodeHead(r, known)
	if r.err != nil {
		return nil, fmt.Errorf("decode manifest: %w", r.err)
	}
	if err := m.validHead(); err != nil {
		return nil, fmt.Errorf("decode manifest: %w", err)
	}
	return &entryReader{head: m, r: r, n: n, check: newEntryCheck(m.Chunks)}, nil
}

// next returns the next entry, which the caller may keep.
func (er *entryReader) next() (*Entry, error) {
	if er.i == er.n {
		if err := er.r.end(); err != nil {
			return nil, fmt.Errorf("decode manifest: %w", err)
		}
		if er.end != nil {
			if err := er.end(); err != nil {
				return nil, err
			}
		}
		if err := er.check.finish(); err != nil {
			return nil, fmt.Errorf("decode manifest: %w", err)
		}
		er.n = -1 // a later call fails rather than check again
		return nil, io.EOF
	}
	if er.i > er.n {
		return nil, errors.New("decode manifest: read past the end")
	}
	e := &Entry{}
	decodeEntry(er.r, er.i, len(er.head.Chunks), e)
	er.i++
	if er.r.err != nil {
		return nil, fmt.Errorf("decode manifest: %w", er.r.err)
	}
	if err := er.check.check(e); err != nil {
		return nil, fmt.Errorf("decode manifest: %w", err)
	}
	return e, nil
}

// storedEntries streams the entries of release id from its stored
// envelope: a few hundred KiB of buffers instead of the decoded body.
// known is the release's chunk table if the caller holds it, or nil.
// The body was verified when it was stored; read back, it must hash to id
// again, and next returns io.EOF only if it does. The caller calls the
// returned function to close the stream.
func (s *Store) storedEntries(id core.ReleaseID, known []ChunkRef) (*entryReader, func(), error) {
	body, size, sum, closeBody, err := s.openStoredBody(id)
	if err != nil {
		return nil, nil, err
	}
	er, err := newEntryReader(&decoder{rd: body, left: size}, known)
	if err != nil {
		closeBody()
		return nil, nil, fmt.Errorf("release %s: %w", id.Short(), err)
	}
	er.end = func() error {
		if err := checkStoredEnd(body, sum, id); err != nil {
			return fmt.Errorf("release %s: %w", id.Short(), err)
		}
		return nil
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
	if err := checkStoredEnd(body, sum, id); err != nil {
		return fmt.Errorf("release %s: %w", id.Short(), err)
	}
	return nil
}

// checkStoredEnd checks that body, read to its declared size, ends there
// and hashed (sum) to id.
func checkStoredEnd(body io.Reader, sum hash.Hash, id core.ReleaseID) error {
	var one [1]byte
	if n, err := body.Read(one[:]); n != 0 || !errors.Is(err, io.EOF) {
		return errors.New("stored manifest body longer than declared")
	}
	if core.ReleaseID(sum.Sum(nil)) != id {
		return errors.New("stored manifest does not hash to its release id")
	}
	return nil
}

// openStoredBody opens the stored envelope of release id and returns its
// body as a stream of size bytes, hashed into sum as it is read.
func (s *Store) openStoredBody(id core.ReleaseID) (io.Reader, int, hash.Hash, func(), error) {
	f, err := os.Open(filepath.Join(s.dir, "manifests", id.String()))
	if errors.Is(err, os.ErrNotExist) {
		return nil, 0, nil, nil, fmt.Errorf("release %s: %w", id.Short(), ErrReleaseUnknown)
	}
	if err != nil {
		return nil, 0, nil, nil, fmt.Errorf("read manifest %s: %w", id.Short(), err)
	}
	br := bufio.NewReader(f)
	fail := func(err error) (io.Reader, int, hash.Hash, func(), error) {
		f.Close()
		return nil, 0, nil, nil, fmt.Errorf("read manifest %s: %w", id.Short(), err)
	}
	if _, err := br.Discard(len(envelopeMagic) + ed25519.PublicKeySize + ed25519.SignatureSize); err != nil {
		return fail(err)
	}
	size, err := binary.ReadUvarint(br)
	if err != nil {
		return fail(err)
	}
	if size > maxBodySize {
		return fail(errors.New("bad body length"))
	}
	// Manifests are compressed with a 1 MiB window (zstd.go); older ones
	// with the chunk encoder's. Low-memory mode keeps the decoder's
	// buffers near the window.
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
	return io.TeeReader(zr, sum), int(size), sum, closeBody, nil
}
