package artifact

import (
	"bytes"
	"context"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"scatter/artifact/datadir"
)

// A world-writable file or directory in a source directory is refused,
// naming it; a symlink's 0777 is not a mode and passes.
func TestBuildRefusesWorldWritable(t *testing.T) {
	for _, c := range []struct {
		name string
		make func(src string)
		want string
	}{
		{"file", func(src string) { os.Chmod(filepath.Join(src, "run.sh"), 0o757) }, "run.sh: world-writable (mode 0757)"},
		{"dir", func(src string) { os.Chmod(filepath.Join(src, "skins/Vector"), 0o777) }, "skins/Vector: world-writable (mode 0777)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			src := filepath.Join(t.TempDir(), "src")
			writeTree(t, src)
			c.make(src)
			st := newStore(t)
			_, err := Build(context.Background(), st, src, newKey(t), opts("mw", "1"))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
}

// A staged tree has no path writable by group or others, whatever the
// manifest says (group-writable entries in the source, here).
func TestStagedTreeNotWritableByOthers(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	writeTree(t, src)
	os.Chmod(filepath.Join(src, "includes/Setup.php"), 0o664)
	os.Chmod(filepath.Join(src, "skins"), 0o775)
	st, key := newStore(t), newKey(t)
	r := build(t, st, src, key, opts("mw", "1"))
	dest := filepath.Join(t.TempDir(), "1")
	if _, err := Materialize(context.Background(), st, r.Signed, dest, MaterializeOptions{}); err != nil {
		t.Fatal(err)
	}
	assertNotWritableByOthers(t, dest)
}

func assertNotWritableByOthers(t *testing.T, dir string) {
	t.Helper()
	n := 0
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := d.Info()
		if fi.Mode()&fs.ModeSymlink == 0 && fi.Mode().Perm()&0o022 != 0 {
			t.Errorf("%s: mode %v is writable by group or others", p, fi.Mode())
		}
		n++
		return nil
	})
	if n < 5 {
		t.Fatalf("walked only %d paths", n)
	}
}

// Reuse links a previous tree's file only while its bytes are proven
// unchanged. An in-place edit of the previous tree, same size and with its
// modification time put back, is noticed (the change time moved), the file
// is hashed, found different and written from the store; a tree without
// its record is hashed file by file before anything is linked.
func TestReuseSkipsEditedFile(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	writeTree(t, src)
	st, key := newStore(t), newKey(t)
	r1 := build(t, st, src, key, opts("mw", "1"))
	writeFile(t, filepath.Join(src, "skins/Vector/skin.json"), pseudoText(9, 900))
	r2 := build(t, st, src, key, opts("mw", "2"))
	out := t.TempDir()
	ctx := context.Background()
	tree1 := filepath.Join(out, "1")
	if _, err := Materialize(ctx, st, r1.Signed, tree1, MaterializeOptions{}); err != nil {
		t.Fatal(err)
	}
	prev := &Previous{Manifest: r1.Signed.Manifest, Release: r1.Signed.ID, Dir: tree1}

	// Untouched, with its record: linked without reading.
	res, err := Materialize(ctx, st, r2.Signed, filepath.Join(out, "2a"), MaterializeOptions{Previous: prev})
	if err != nil {
		t.Fatal(err)
	}
	if res.Linked != res.Files-1 || res.Rehashed != 0 || res.Mismatched != 0 {
		t.Fatalf("untouched previous tree: %+v, want all but one file linked, none re-hashed", res)
	}

	// Edit tree 1 in place: same size, modification time restored.
	edited := filepath.Join(tree1, "includes/Setup.php")
	fi, err := os.Stat(edited)
	if err != nil {
		t.Fatal(err)
	}
	orig, _ := os.ReadFile(edited)
	bad := bytes.Clone(orig)
	copy(bad, "<?php evil();")
	os.Chmod(edited, 0o644)
	if err := os.WriteFile(edited, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(edited, time.Time{}, fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(out, "2b")
	res, err = Materialize(ctx, st, r2.Signed, dest, MaterializeOptions{Previous: prev})
	if err != nil {
		t.Fatal(err)
	}
	if res.Mismatched != 1 || res.Linked != res.Files-2 {
		t.Fatalf("edited previous tree: %+v, want 1 mismatched and all but 2 files linked", res)
	}
	if got, _ := os.ReadFile(filepath.Join(dest, "includes/Setup.php")); !bytes.Equal(got, orig) {
		t.Fatal("the edit to the previous tree reached the new one")
	}
	if treeDigest(t, dest) != treeDigest(t, src) {
		t.Fatal("new tree differs from its source")
	}
	assertNotWritableByOthers(t, dest)

	// No record beside the previous tree: every candidate is hashed first.
	if err := os.Remove(datadir.TreeRecord(tree1)); err != nil {
		t.Fatal(err)
	}
	res, err = Materialize(ctx, st, r2.Signed, filepath.Join(out, "2c"), MaterializeOptions{Previous: prev})
	if err != nil {
		t.Fatal(err)
	}
	if res.Mismatched != 1 || res.Rehashed != res.Linked || res.Linked != res.Files-2 {
		t.Fatalf("previous tree without a record: %+v, want every linked file re-hashed", res)
	}
}

// A directory sent as a tar stream (TarTree, BuildStream) builds the same
// release as the directory itself.
func TestTarTreeBuildsTheSameRelease(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	writeTree(t, src)
	key := newKey(t)
	o := opts("mw", "1")
	o.Time = time.Unix(1700000000, 0)
	o.NoParent = true
	a := build(t, newStore(t), src, key, o)
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(TarTree(context.Background(), pw, src)) }()
	b, err := BuildStream(context.Background(), newStore(t), pr, "stream", key, o)
	if err != nil {
		t.Fatal(err)
	}
	if a.Signed.ID != b.Signed.ID {
		t.Fatalf("stream built %s, directory %s", b.Signed.ID.Short(), a.Signed.ID.Short())
	}
}
