package artifact

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"reflect"
	"testing"
	"testing/iotest"

	"scatter/artifact/core"
)

// FuzzManifest feeds arbitrary bytes to the manifest decoders. They must
// never panic, and whatever they accept must re-encode to a manifest that
// decodes to the same thing.
func FuzzManifest(f *testing.F) {
	key := newKey(f)
	sm, err := Sign(sampleManifest(), key)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sm.Body)
	f.Add(sm.Encode())
	m := sampleManifest()
	m.Entries = m.Entries[:1]
	m.Chunks = nil
	if b, err := m.MarshalBody(); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := DecodeSigned(data); err == nil {
			// Only a real signature can pass; the fuzzer will not forge one.
			if !bytes.HasPrefix(data, []byte(envelopeMagic)) {
				t.Fatal("accepted an envelope without magic")
			}
		}
		m, err := UnmarshalBody(data)
		checkEntryReader(t, data, m, err)
		if err != nil {
			return
		}
		body, err := m.MarshalBody()
		if err != nil {
			t.Fatalf("decoded manifest does not re-encode: %v", err)
		}
		m2, err := UnmarshalBody(body)
		if err != nil {
			t.Fatalf("re-encoded manifest does not decode: %v", err)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatal("manifest changed across a round trip")
		}
	})
}

// FuzzReadTar feeds arbitrary bytes to the tar reader. It must never panic,
// and every entry it lets through must have a safe path.
func FuzzReadTar(f *testing.F) {
	f.Add(makeTar(f, goodTar))
	f.Add(gz(f, makeTar(f, goodTar)))
	f.Add(zst(f, makeTar(f, goodTar)))
	f.Add(makeTar(f, []tarEnt{{name: "../x", typ: tar.TypeReg, body: []byte("x")}}))
	f.Add(makeTar(f, []tarEnt{{name: "l", typ: tar.TypeSymlink, linkname: "/etc"}}))
	f.Fuzz(func(t *testing.T, data []byte) {
		lim := Limits{MaxExpanded: 4 << 20, MaxEntries: 1000}
		readTar(context.Background(), bytes.NewReader(data), lim, func(e srcEntry, r io.Reader) error {
			if err := ValidPath(e.Path); err != nil {
				t.Fatalf("unsafe path passed through: %v", err)
			}
			if e.Link != "" {
				if err := ValidPath(e.Link); err != nil {
					t.Fatalf("unsafe hard link passed through: %v", err)
				}
			}
			if e.Mode&^0o777 != 0 {
				t.Fatalf("mode %o passed through", e.Mode)
			}
			if r != nil {
				_, err := io.Copy(io.Discard, r)
				return err
			}
			return nil
		})
	})
}

// checkEntryReader requires the streaming entry reader, over memory and
// over a stream, to refuse exactly what UnmarshalBody refuses (want, wantErr)
// and to yield the same entries.
func checkEntryReader(t *testing.T, data []byte, want *Manifest, wantErr error) {
	t.Helper()
	if len(data) > maxBodySize {
		return
	}
	for _, r := range []*decoder{
		{buf: data},
		{rd: iotest.OneByteReader(bytes.NewReader(data)), left: len(data)},
	} {
		got, err := readAllEntries(r, nil)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("entry reader: err %v, UnmarshalBody: %v", err, wantErr)
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Fatal("entry reader and UnmarshalBody decode differently")
		}
	}
	// A table is read with one entry reused throughout, its IDs in memory
	// or on disk.
	for _, dir := range []string{"", t.TempDir()} {
		tb, err := readTable(&decoder{buf: data}, core.ReleaseID{}, nil, dir)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("readTable (dir %q): err %v, UnmarshalBody: %v", dir, err, wantErr)
		}
		if err != nil {
			continue
		}
		if got := tableRefs(t, tb); !reflect.DeepEqual(got, want.Chunks) {
			t.Fatalf("readTable (dir %q) and UnmarshalBody decode different tables", dir)
		}
		if wantErr == nil {
			// Staging reads the body again with the table it holds.
			r := &decoder{rd: iotest.OneByteReader(bytes.NewReader(data)), left: len(data)}
			if got, err := readAllEntries(r, &knownSink{t: tb}); err != nil || !reflect.DeepEqual(got, want) {
				t.Fatalf("entry reader with the known table: %v", err)
			}
		}
		tb.Close()
	}
}

// tableRefs reads a whole table.
func tableRefs(t testing.TB, tb *Table) []ChunkRef {
	t.Helper()
	refs, err := tableRefsOf(tb)
	if err != nil {
		t.Fatal(err)
	}
	return refs
}

func tableRefsOf(tb *Table) ([]ChunkRef, error) {
	refs := make([]ChunkRef, tb.Len())
	for i := range refs {
		ref, err := tb.Ref(i)
		if err != nil {
			return nil, err
		}
		refs[i] = ref
	}
	return refs, nil
}

// readAllEntries reads a body with an entryReader (nil sink: in memory).
func readAllEntries(r *decoder, sink tableSink) (*Manifest, error) {
	if sink == nil {
		sink = &memSink{}
	}
	er, err := newEntryReader(r, sink)
	if err != nil {
		return nil, err
	}
	m := er.head
	if m.Chunks, err = tableRefsOf(er.table); err != nil {
		return nil, err
	}
	m.Entries = []Entry{}
	for {
		e, err := er.next()
		if errors.Is(err, io.EOF) {
			return m, nil
		}
		if err != nil {
			return nil, err
		}
		m.Entries = append(m.Entries, *e)
	}
}
