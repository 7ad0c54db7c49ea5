package artifact

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// scratchDir prefers a tmpfs for tests that create many files: they measure
// our code's scaling, not the disk's metadata speed.
func scratchDir(t *testing.T) string {
	t.Helper()
	if d, err := os.MkdirTemp("/dev/shm", "scatter-test-"); err == nil {
		t.Cleanup(func() { RemoveTree(d) })
		return d
	}
	return t.TempDir()
}

// A release of 100k files builds, verifies and materializes identically
// (5k files with -short).
func TestManyFiles(t *testing.T) {
	n := 100_000
	if testing.Short() {
		n = 5_000
	}
	dir := scratchDir(t)
	src := filepath.Join(dir, "src")
	for i := range n {
		p := filepath.Join(src, fmt.Sprintf("d%02d/e%03d/f%06d.php", i%64, i%997, i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(fmt.Sprintf("<?php // file %d\nreturn %d;\n", i, i*i)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	st := newStore(t)
	res := build(t, st, src, newKey(t), opts("mw", "1"))
	if res.Files != n {
		t.Fatalf("built %d files, want %d", res.Files, n)
	}
	sm, err := st.Manifest(res.Signed.ID)
	if err != nil {
		t.Fatal(err)
	}
	if problems, err := Verify(context.Background(), st, sm.Manifest); err != nil || len(problems) != 0 {
		t.Fatalf("verify: %v %v", problems, err)
	}
	dest := filepath.Join(dir, "out")
	if _, err := Materialize(context.Background(), st, sm, dest, MaterializeOptions{}); err != nil {
		t.Fatal(err)
	}
	if treeDigest(t, dest) != treeDigest(t, src) {
		t.Fatal("materialized tree differs from the source")
	}
	t.Logf("%d files: manifest %d bytes, build %.2fs", n, len(sm.Encode()), res.Duration.Seconds())
}
