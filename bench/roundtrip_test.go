package bench

import (
	"context"
	"testing"
)

// The round trip on a small tree: every materialized tree equals its source,
// the deltas stay small, reuse links the unchanged files, the figures are
// consistent with each other.
func TestRoundTripSmall(t *testing.T) {
	size := int64(16 << 20)
	if testing.Short() {
		size = 4 << 20
	}
	rep, err := RoundTrip(context.Background(), RoundTripConfig{Dir: t.TempDir(), Size: size, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Identical {
		t.Fatal("a materialized tree differs from its source")
	}
	if rep.First.NewChunks != rep.First.Chunks || rep.First.NewBytes <= 0 || rep.First.NewBytes >= rep.First.Bytes {
		t.Fatalf("first build figures inconsistent: %+v", rep.First)
	}
	if rep.Code.NewChunks == 0 || rep.CodeDeltaRatio > 0.05 {
		t.Fatalf("code change delta %.4f (%d new chunks)", rep.CodeDeltaRatio, rep.Code.NewChunks)
	}
	if rep.L10n.NewChunks == 0 || rep.L10nDeltaRatio > 0.25 {
		t.Fatalf("l10n update delta %.4f (%d new chunks)", rep.L10nDeltaRatio, rep.L10n.NewChunks)
	}
	if rep.ReuseLinkedFiles < rep.Code.Files*9/10 {
		t.Fatalf("reuse linked %d of %d files", rep.ReuseLinkedFiles, rep.Code.Files)
	}
	for _, c := range append(rep.CodeLayouts, rep.L10nLayouts...) {
		if c.Layout == "packed" && c.WireBytes != c.NewBytes {
			t.Fatalf("packed layout sends %d bytes for %d new", c.WireBytes, c.NewBytes)
		}
		if c.WireBytes < c.NewBytes {
			t.Fatalf("%s layout sends less than the new bytes: %+v", c.Layout, c)
		}
	}
}
