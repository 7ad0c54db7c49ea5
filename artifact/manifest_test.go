package artifact

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"scatter/artifact/chunker"
	"scatter/artifact/core"
	"scatter/artifact/keys"
)

func sampleManifest() *Manifest {
	c1, c2 := core.ChunkIDOf([]byte("one")), core.ChunkIDOf([]byte("two"))
	return &Manifest{
		Repo: "mediawiki", Version: "1.44.0-wmf.1", Builder: "deploy@host", Message: "train", Time: fixedTime,
		Chunking: chunker.Default,
		Chunks:   []ChunkRef{{ID: c1, Size: 3}, {ID: c2, Size: 3}},
		Entries: []Entry{
			{Path: "a", Type: TypeDir, Mode: 0o755},
			{Path: "a/one", Type: TypeFile, Mode: 0o644, Size: 6, Chunks: []uint32{0, 1}},
			{Path: "a/two", Type: TypeFile, Mode: 0o755, Size: 3, Chunks: []uint32{1}},
			{Path: "l", Type: TypeSymlink, Mode: 0o777, Target: "a/one"},
		},
	}
}

func TestManifestRoundTrip(t *testing.T) {
	key := newKey(t)
	sm, err := Sign(sampleManifest(), key)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Open(sm.Encode(), key.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != sm.ID || !bytes.Equal(got.Body, sm.Body) {
		t.Fatal("decoded manifest differs")
	}
	body, err := got.Manifest.MarshalBody()
	if err != nil || !bytes.Equal(body, sm.Body) {
		t.Fatalf("re-encoding is not canonical: %v", err)
	}
	if got.Manifest.Time != fixedTime || got.Manifest.Entries[3].Target != "a/one" {
		t.Fatalf("fields lost: %+v", got.Manifest)
	}
}

func TestSignatureChecks(t *testing.T) {
	key, other := newKey(t), newKey(t)
	sm, err := Sign(sampleManifest(), key)
	if err != nil {
		t.Fatal(err)
	}
	trusted := key.Public().(ed25519.PublicKey)

	// Signed by another key: decodes, but is not trusted.
	sm2, _ := Sign(sampleManifest(), other)
	if _, err := Open(sm2.Encode(), trusted); !errors.Is(err, keys.ErrWrongKey) {
		t.Fatalf("other key: got %v", err)
	}
	// Signature bytes flipped.
	env := sm.Encode()
	env[len(envelopeMagic)+ed25519.PublicKeySize+3] ^= 1
	if _, err := Open(env, trusted); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("bad signature: got %v", err)
	}
	// Body changed after signing (re-compressed with a different message),
	// under the signed release ID or its own.
	m := sampleManifest()
	m.Message = "evil"
	body, _ := m.MarshalBody()
	for _, id := range []core.ReleaseID{sm.ID, sha256.Sum256(body)} {
		forged := &Signed{Body: body, ID: id, PubKey: sm.PubKey, Sig: sm.Sig}
		if _, err := Open(forged.Encode(), trusted); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("tampered body: got %v", err)
		}
		if err := forged.VerifiedBy(trusted); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("tampered body, VerifiedBy: got %v", err)
		}
	}
	// A format-1 envelope is refused with a clear error.
	v1 := append([]byte(envelopeMagicV1), sm.Encode()[len(envelopeMagic):]...)
	if _, err := Open(v1, trusted); err == nil || !strings.Contains(err.Error(), "format 1") {
		t.Fatalf("format 1: got %v", err)
	}
	// Swapping in the trusted key for another key's signature.
	swapped := &Signed{Body: sm2.Body, PubKey: trusted, Sig: sm2.Sig}
	if _, err := Open(swapped.Encode(), trusted); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("key swap: got %v", err)
	}
}

func TestManifestValidation(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(m *Manifest)
		want   string
	}{
		{"unsorted", func(m *Manifest) { m.Entries[2], m.Entries[3] = m.Entries[3], m.Entries[2] }, "not sorted"},
		{"duplicate", func(m *Manifest) { m.Entries[2].Path = "a/one" }, "not sorted or duplicated"},
		{"dotdot", func(m *Manifest) { m.Entries[3].Path = "../l" }, "escapes"},
		{"absolute", func(m *Manifest) { m.Entries[3].Path = "/l" }, "absolute"},
		{"unclean", func(m *Manifest) { m.Entries[3].Path = "l/" }, "not clean"},
		{"missing-parent", func(m *Manifest) { m.Entries = m.Entries[1:] }, "not a directory"},
		{"size-mismatch", func(m *Manifest) { m.Entries[1].Size = 7 }, "chunks hold"},
		{"chunk-range", func(m *Manifest) { m.Entries[1].Chunks = []uint32{0, 5} }, "out of range"},
		{"symlink-escape", func(m *Manifest) { m.Entries[3].Target = "../../x" }, "outside the release tree"},
		{"symlink-absolute", func(m *Manifest) { m.Entries[3].Target = "/etc" }, "must be relative"},
		{"setuid-mode", func(m *Manifest) { m.Entries[1].Mode |= 0o4000 }, "beyond 0777"},
		{"unused-chunk", func(m *Manifest) { m.Chunks = append(m.Chunks, ChunkRef{ID: core.ChunkIDOf(nil), Size: 1}) }, "no file uses"},
		{"chunk-order", func(m *Manifest) { m.Entries[1].Chunks = []uint32{1, 0} }, "order of first use"},
		{"bad-repo", func(m *Manifest) { m.Repo = "a b" }, "only letters"},
		{"chunk-too-big", func(m *Manifest) { m.Chunks[0].Size = 1 << 20 }, "outside"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := sampleManifest()
			c.mutate(m)
			err := m.Validate()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
}

// The same tree with the same metadata gives the same release ID, whatever
// the store, the mtimes or the walk order; other metadata gives another ID.
func TestReproducibleReleaseID(t *testing.T) {
	a, b := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	writeTree(t, a)
	writeTree(t, b)
	if err := chtimesAll(b, time.Unix(12345, 0)); err != nil {
		t.Fatal(err)
	}
	key := newKey(t)
	st := newStore(t)
	r1 := build(t, st, a, key, opts("mw", "1"))
	r2 := build(t, newStore(t), b, key, opts("mw", "1"))
	r3 := build(t, st, b, key, opts("mw", "1")) // rebuild into the same store
	if r1.Signed.ID != r2.Signed.ID || r1.Signed.ID != r3.Signed.ID {
		t.Fatalf("same tree, different IDs: %s %s %s", r1.Signed.ID, r2.Signed.ID, r3.Signed.ID)
	}
	if r3.NewChunks != 0 || r3.NewBytes != 0 {
		t.Fatalf("rebuild stored %d new chunks", r3.NewChunks)
	}
	o := opts("mw", "1")
	o.Message = "other"
	if r4 := build(t, st, a, key, o); r4.Signed.ID == r1.Signed.ID {
		t.Fatal("different message, same ID")
	}
	// A new version gets the newest other version as parent by default.
	r5 := build(t, st, a, key, opts("mw", "2"))
	if r5.Signed.Manifest.Parent != r1.Signed.ID && r5.Signed.Manifest.Parent.IsZero() {
		t.Fatalf("parent %s, want a release of version 1", r5.Signed.Manifest.Parent)
	}
}

// A body larger than the stream decoder's window reads the same from a
// stream, with or without the chunk table known beforehand, as from memory:
// fields that cross a refill of the window come out whole.
func TestEntryReaderStream(t *testing.T) {
	m := bigManifest(5000)
	// Messages of every length up to a table record's shift where the
	// window's refills fall, so that some falls inside a record.
	var body []byte
	for shift := range 40 {
		m.Message = strings.Repeat("x", shift)
		var err error
		if body, err = m.MarshalBody(); err != nil {
			t.Fatal(err)
		}
		if len(body) < 2*streamWindow {
			t.Fatalf("body of %d bytes does not cross the window", len(body))
		}
		want, err := UnmarshalBody(body)
		if err != nil {
			t.Fatal(err)
		}
		onDisk, err := readTable(&decoder{buf: body}, core.ReleaseID{}, nil, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		sinks := map[string]tableSink{
			"none":          nil,
			"on disk":       &fileSink{dir: t.TempDir()},
			"known":         &knownSink{t: ManifestTable(core.ReleaseID{}, want)},
			"known on disk": &knownSink{t: onDisk},
		}
		for name, sink := range sinks {
			got, err := readAllEntries(&decoder{rd: iotest.HalfReader(bytes.NewReader(body)), left: len(body)}, sink)
			if err != nil {
				t.Fatalf("shift %d, table %s: %v", shift, name, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("shift %d, table %s: streamed manifest differs", shift, name)
			}
		}
		onDisk.Close()
	}
	want, _ := UnmarshalBody(body)
	// A known table that differs is refused: by size, or in memory by ID.
	for _, change := range []func(*ChunkRef){func(c *ChunkRef) { c.Size++ }, func(c *ChunkRef) { c.ID[0]++ }} {
		other := slices.Clone(want.Chunks)
		change(&other[4000])
		known := &Table{refs: other}
		if _, err := readAllEntries(&decoder{rd: bytes.NewReader(body), left: len(body)}, &knownSink{t: known}); err == nil {
			t.Fatal("accepted a body whose table differs from the known one")
		}
	}
}

// A chunk table on disk refuses what one in memory refuses: an ID listed
// twice, whichever 8-byte prefix it shares with others.
func TestTableOnDiskRefusesDuplicates(t *testing.T) {
	m := sampleManifest()
	base, err := m.MarshalBody()
	if err != nil || len(m.Chunks) < 2 {
		t.Fatal(err)
	}
	if _, err := readTable(&decoder{buf: base}, core.ReleaseID{}, nil, t.TempDir()); err != nil {
		t.Fatalf("sample: %v", err)
	}
	// Chunk 1's ID replaced in the body (MarshalBody would refuse) by
	// chunk 0's with its last byte changed (same prefix, different ID:
	// fine) or whole (the same ID: refused). Both chunks are 3 bytes.
	for _, c := range []struct {
		name string
		flip bool
		ok   bool
	}{{"shared prefix", true, true}, {"duplicate", false, false}} {
		id := m.Chunks[0].ID
		if c.flip {
			id[31] ^= 0xff
		}
		body := bytes.Replace(base, m.Chunks[1].ID[:], id[:], 1)
		if bytes.Equal(body, base) {
			t.Fatal("chunk 1's ID not found in the body")
		}
		_, err := readTable(&decoder{buf: body}, core.ReleaseID{}, nil, t.TempDir())
		if (err == nil) != c.ok || !c.ok && !strings.Contains(err.Error(), "listed twice") {
			t.Fatalf("%s: %v", c.name, err)
		}
	}
}
