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
	id, body, err := verifyEnvelope(b, trusted)
	if err != nil {
		return nil, err
	}
	return readTable(&decoder{buf: body}, id, nil)
}

// verifyEnvelope checks that the trusted key signed envelope b, and
// returns its release ID and body.
func verifyEnvelope(b []byte, trusted ed25519.PublicKey) (core.ReleaseID, []byte, error) {
	if err := signerTrusted(b, trusted); err != nil {
		return core.ReleaseID{}, nil, err
	}
	s, body, err := openEnvelope(b)
	if err != nil {
		return core.ReleaseID{}, nil, err
	}
	if !bytes.Equal(s.PubKey, trusted) {
		return core.ReleaseID{}, nil, fmt.Errorf("manifest: %w", keys.ErrWrongKey)
	}
	return sha256.Sum256(body), body, nil
}

// readTable reads a whole body, checking every entry, and returns its
// table. end, if not nil, is checked after the body's last byte.
func readTable(r *decoder, id core.ReleaseID, end func() error) (*Table, error) {
	er, err := newEntryReader(r, nil)
	if err != nil {
		return nil, err
	}
	er.end = end
	var e Entry // entries are checked and dropped: one will do
	for {
		if err := er.nextInto(&e); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, err
		}
	}
	m := er.head
	return &Table{ID: id, Parent: m.Parent, Chunking: m.Chunking, Chunks: m.Chunks}, nil
}

// tableFromFile is readTable for the envelope file at path, whose body must
// hash to id. It streams the body: the decoded body and the table are
// never in memory together (they were a host's peak).
func tableFromFile(path string, id core.ReleaseID) (*Table, error) {
	body, size, sum, closeBody, err := openBody(path)
	if err != nil {
		return nil, err
	}
	defer closeBody()
	return readTable(&decoder{rd: body, left: size}, id, func() error { return checkBodyEnd(body, sum, id) })
}

// PutFetched opens an envelope fetched from a peer as OpenTable does and,
// once it passes and is release want, stores it as received: encoding the
// manifest again would hold a second compressed copy and its encoder's
// buffers. Once the signature verifies, the envelope is written to a
// temporary file and its entries are read back from there, renamed into
// place only once they have all passed. A caller that keeps no other
// reference to b lets it and the decoded body be collected before the
// chunk table is decoded: envelope, body and table together were a
// fetching host's peak.
func (s *Store) PutFetched(b []byte, trusted ed25519.PublicKey, want core.ReleaseID) (*Table, error) {
	id, _, err := verifyEnvelope(b, trusted)
	if err != nil {
		return nil, err
	}
	if id != want {
		return nil, fmt.Errorf("manifest of release %s, want %s", id.Short(), want.Short())
	}
	tmp, err := writeTemp(filepath.Join(s.dir, "tmp"), b, 0o444)
	if err != nil {
		return nil, fmt.Errorf("store manifest %s: %w", id.Short(), err)
	}
	t, err := tableFromFile(tmp, id)
	if err == nil {
		dst := s.manifestPath(id)
		if err = os.Rename(tmp, dst); err == nil {
			err = syncDir(filepath.Dir(dst))
		}
		if err != nil {
			err = fmt.Errorf("store manifest %s: %w", id.Short(), err)
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
// out. Like PutFetched it holds the decoded body and the table one after
// the other, not together.
func (s *Store) Table(id core.ReleaseID, trusted ed25519.PublicKey) (*Table, error) {
	b, err := s.ManifestEnvelope(id)
	if err != nil {
		return nil, err
	}
	got, _, err := verifyEnvelope(b, trusted)
	if err != nil {
		return nil, fmt.Errorf("release %s: %w", id.Short(), err)
	}
	if got != id {
		return nil, fmt.Errorf("release %s: manifest file holds release %s", id.Short(), got.Short())
	}
	t, err := tableFromFile(s.manifestPath(id), id)
	if err != nil {
		return nil, fmt.Errorf("release %s: %w", id.Short(), err)
	}
	return t, nil
}

func (s *Store) manifestPath(id core.ReleaseID) string {
	return filepath.Join(s.dir, "manifests", id.String())
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
	decodeEntry(er.r, er.i, len(er.head.Chunks), e)
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
		if err := checkBodyEnd(body, sum, id); err != nil {
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

// openStoredBody is openBody for the stored manifest of release id.
func (s *Store) openStoredBody(id core.ReleaseID) (io.Reader, int, hash.Hash, func(), error) {
	body, size, sum, closeBody, err := openBody(s.manifestPath(id))
	if errors.Is(err, os.ErrNotExist) {
		return nil, 0, nil, nil, fmt.Errorf("release %s: %w", id.Short(), ErrReleaseUnknown)
	}
	if err != nil {
		return nil, 0, nil, nil, fmt.Errorf("read manifest %s: %w", id.Short(), err)
	}
	return body, size, sum, closeBody, nil
}

// openBody opens the envelope file at path and returns its body as a
// stream of size bytes, hashed into sum as it is read. The signature is
// not checked: the caller knows which release the body must hash to.
func openBody(path string) (io.Reader, int, hash.Hash, func(), error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, nil, nil, err
	}
	br := bufio.NewReader(f)
	fail := func(err error) (io.Reader, int, hash.Hash, func(), error) {
		f.Close()
		return nil, 0, nil, nil, err
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
