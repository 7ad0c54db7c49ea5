package artifact

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"reflect"
	"slices"
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
	// A table is read with one entry reused throughout.
	if tb, err := readTable(&decoder{buf: data}, core.ReleaseID{}, nil); (err == nil) != (wantErr == nil) {
		t.Fatalf("readTable: err %v, UnmarshalBody: %v", err, wantErr)
	} else if err == nil && !reflect.DeepEqual(tb.Chunks, want.Chunks) {
		t.Fatal("readTable and UnmarshalBody decode different tables")
	}
	if wantErr == nil {
		// Staging reads the body again with the table it holds.
		r := &decoder{rd: iotest.OneByteReader(bytes.NewReader(data)), left: len(data)}
		if got, err := readAllEntries(r, slices.Clone(want.Chunks)); err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("entry reader with the known table: %v", err)
		}
	}
}

// readAllEntries reads a body with an entryReader (known: see decodeHead).
func readAllEntries(r *decoder, known []ChunkRef) (*Manifest, error) {
	er, err := newEntryReader(r, known)
	if err != nil {
		return nil, err
	}
	m := er.head
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
