package artifact

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// Files are created with their final mode, and chmodded only when the
// umask stripped bits of it: under any umask every staged file and
// directory has exactly stagedMode of its manifest mode, symlinks point
// where the manifest says, and the tree record matches every file as it
// was left (a chmod after the record was taken would not match: it moves
// the change time). Not parallel: the umask is the process's.
func TestStagedModesUnderAnyUmask(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	writeTree(t, src)
	modes := map[string]fs.FileMode{
		"includes/Setup.php": 0o600, "includes/api/ApiMain.php": 0o444, "includes/api/Copy.php": 0o640,
		"run.sh": 0o750, "empty.txt": 0o400, "skins/Vector/skin.json": 0o604,
	}
	for p, m := range modes {
		if err := os.Chmod(filepath.Join(src, p), m); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(src, "cache/empty"), 0o500); err != nil {
		t.Fatal(err)
	}
	st, key := newStore(t), newKey(t)
	r := build(t, st, src, key, opts("mw", "1"))
	want := treeDigest(t, src)
	for _, umask := range []int{0o022, 0o077, 0o277, 0o000} {
		t.Run(fmt.Sprintf("umask %04o", umask), func(t *testing.T) {
			old := syscall.Umask(umask)
			defer syscall.Umask(old)
			dest := filepath.Join(t.TempDir(), "1")
			if _, err := Materialize(context.Background(), st, r.Signed, dest, MaterializeOptions{}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { RemoveTree(dest) })
			if got := treeDigest(t, dest); got != want {
				t.Fatalf("staged tree differs from its source:\n%s\nwant\n%s", got, want)
			}
			rec := openTreeRecord(dest, r.Signed.ID)
			if rec == nil {
				t.Fatal("no tree record")
			}
			defer rec.close()
			files := 0
			for _, e := range r.Signed.Manifest.Entries {
				if e.Type != TypeFile {
					continue
				}
				st, err := lstatSys(filepath.Join(dest, e.Path))
				if err != nil {
					t.Fatal(err)
				}
				if !unchangedSince(st, rec.get(files), stagedMode(e.Mode)) {
					t.Errorf("%s: record slot %+v does not match the file %+v", e.Path, rec.get(files), slotOf(st))
				}
				files++
			}
			if files != len(modes) {
				t.Fatalf("checked %d files, want %d", files, len(modes))
			}
		})
	}
}
