package bench

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// SameTree reports whether two directory trees hold the same paths with the
// same types, permission bits, symlink targets and file contents: what
// `diff -r` checks, plus modes.
func SameTree(a, b string) (bool, error) {
	da, err := listTree(a)
	if err != nil {
		return false, err
	}
	db, err := listTree(b)
	if err != nil {
		return false, err
	}
	if len(da) != len(db) {
		return false, nil
	}
	for p, ia := range da {
		ib, ok := db[p]
		if !ok || ia.Mode() != ib.Mode() {
			return false, nil
		}
		switch {
		case ia.Mode()&fs.ModeSymlink != 0:
			ta, err1 := os.Readlink(filepath.Join(a, p))
			tb, err2 := os.Readlink(filepath.Join(b, p))
			if err1 != nil || err2 != nil || ta != tb {
				return false, nil
			}
		case ia.Mode().IsRegular():
			if ia.Size() != ib.Size() {
				return false, nil
			}
			same, err := sameContent(filepath.Join(a, p), filepath.Join(b, p))
			if err != nil || !same {
				return false, err
			}
		}
	}
	return true, nil
}

func listTree(root string) (map[string]fs.FileInfo, error) {
	out := map[string]fs.FileInfo{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		out[rel] = info
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", root, err)
	}
	return out, nil
}

func sameContent(a, b string) (bool, error) {
	fa, err := os.Open(a)
	if err != nil {
		return false, err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return false, err
	}
	defer fb.Close()
	ba, bb := make([]byte, 256<<10), make([]byte, 256<<10)
	for {
		na, ea := io.ReadFull(fa, ba)
		nb, eb := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false, nil
		}
		endA := ea == io.EOF || ea == io.ErrUnexpectedEOF
		endB := eb == io.EOF || eb == io.ErrUnexpectedEOF
		switch {
		case ea != nil && !endA:
			return false, ea
		case eb != nil && !endB:
			return false, eb
		case endA || endB:
			return endA == endB, nil
		}
	}
}
