package chunker

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"
)

func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func split(t testing.TB, r io.Reader, p Params) [][]byte {
	t.Helper()
	c := New(r, p)
	var out [][]byte
	for {
		b, err := c.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, bytes.Clone(b))
	}
}

func TestChunksCoverInputWithinBounds(t *testing.T) {
	data := randomBytes(1, 3<<20)
	chunks := split(t, bytes.NewReader(data), Default)
	if got := bytes.Join(chunks, nil); !bytes.Equal(got, data) {
		t.Fatal("chunks do not reassemble the input")
	}
	for i, c := range chunks {
		if len(c) > Default.Max || (len(c) < Default.Min && i != len(chunks)-1) {
			t.Fatalf("chunk %d has size %d outside [%d,%d]", i, len(c), Default.Min, Default.Max)
		}
	}
	avg := len(data) / len(chunks)
	if avg < Default.Avg/2 || avg > Default.Avg*2 {
		t.Fatalf("average chunk %d far from %d", avg, Default.Avg)
	}
}

// Reads of any size must give the same cuts: the buffer is an implementation detail.
func TestCutsIndependentOfReadSizes(t *testing.T) {
	data := randomBytes(2, 1<<20)
	a := split(t, bytes.NewReader(data), Default)
	b := split(t, iotest.OneByteReader(bytes.NewReader(data)), Default)
	c := split(t, iotest.HalfReader(bytes.NewReader(data)), Default)
	if len(a) != len(b) || len(a) != len(c) {
		t.Fatalf("chunk counts differ: %d %d %d", len(a), len(b), len(c))
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) || !bytes.Equal(a[i], c[i]) {
			t.Fatalf("chunk %d differs", i)
		}
	}
}

// An insertion in the middle changes only the chunks near it.
func TestEditMovesOnlyNearbyChunks(t *testing.T) {
	data := randomBytes(3, 4<<20)
	edited := append(append(bytes.Clone(data[:2<<20]), []byte("a small edit")...), data[2<<20:]...)
	before := map[string]bool{}
	for _, c := range split(t, bytes.NewReader(data), Default) {
		before[string(c)] = true
	}
	newChunks := 0
	for _, c := range split(t, bytes.NewReader(edited), Default) {
		if !before[string(c)] {
			newChunks++
		}
	}
	if newChunks < 1 || newChunks > 3 {
		t.Fatalf("edit produced %d new chunks, want 1..3", newChunks)
	}
}

// The gear table and cut rule define chunk IDs forever: pin them.
func TestFrozenCuts(t *testing.T) {
	data := randomBytes(4, 256<<10)
	var sizes []int
	for _, c := range split(t, bytes.NewReader(data), Default) {
		sizes = append(sizes, len(c))
	}
	want := frozenSizes
	if len(sizes) != len(want) {
		t.Fatalf("got %d chunks %v, want %v", len(sizes), sizes, want)
	}
	for i := range want {
		if sizes[i] != want[i] {
			t.Fatalf("chunk sizes %v, want %v: the chunking format changed", sizes, want)
		}
	}
}

func TestValidate(t *testing.T) {
	if err := Default.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []Params{{Min: 10, Avg: 64, Max: 128}, {Min: 4096, Avg: 10000, Max: 65536}, {Min: 8192, Avg: 8192, Max: 65536}, {Min: 4096, Avg: 1 << 24, Max: 1 << 26}} {
		if p.Validate() == nil {
			t.Errorf("%+v: want an error", p)
		}
	}
}

func BenchmarkChunker(b *testing.B) {
	data := randomBytes(5, 64<<20)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		c := New(bytes.NewReader(data), Default)
		for {
			if _, err := c.Next(); err != nil {
				break
			}
		}
	}
}
