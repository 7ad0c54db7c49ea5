package bench

import (
	"testing"

	"scatter/artifact"
	"scatter/artifact/core"
)

func TestLayouts(t *testing.T) {
	id := func(s string) core.ChunkID { return core.ChunkIDOf([]byte(s)) }
	sizes := map[core.ChunkID]int64{id("a"): 100, id("b"): 50, id("c"): 30, id("d"): 120}
	parent := &artifact.Manifest{Chunks: []artifact.ChunkRef{{ID: id("a")}, {ID: id("b")}}}
	// Child: a (held), c (new), b (held), d (new); piece length 64.
	child := &artifact.Manifest{Chunks: []artifact.ChunkRef{{ID: id("a")}, {ID: id("c")}, {ID: id("b")}, {ID: id("d")}}}
	got := map[string]WireCost{}
	for _, c := range Layouts(parent, child, func(i core.ChunkID) int64 { return sizes[i] }, 64) {
		got[c.Layout] = c
	}
	// aligned: c takes 1 piece, d takes 2: 3 pieces of 64.
	if c := got["aligned"]; c.NewBytes != 150 || c.WireBytes != 192 || c.Pieces != 2+1+1+2 {
		t.Errorf("aligned: %+v", c)
	}
	// packed: c and d back to back, 150 bytes in 3 pieces; no padding.
	if c := got["packed"]; c.WireBytes != 150 || c.Pieces != 3 {
		t.Errorf("packed: %+v", c)
	}
	// whole: a[0,100) c[100,130) b[130,180) d[180,300); pieces of 64:
	// c touches piece 1 (64–127) and 2 (128–191); d touches 2,3,4: pieces 1–4.
	if c := got["whole"]; c.WireBytes != 4*64 || c.Pieces != 5 {
		t.Errorf("whole: %+v", c)
	}
}
