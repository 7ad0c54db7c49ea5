package bench

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
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

// compareBufs holds sameContent's two read buffers: a fresh 512 KiB per
// file made comparing 32 hosts' trees in a --netns run cost more CPU than
// reading them (allocating and zeroing 38 GB).
var compareBufs = sync.Pool{New: func() any { return new([2][256 << 10]byte) }}

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
	bufs := compareBufs.Get().(*[2][256 << 10]byte)
	defer compareBufs.Put(bufs)
	ba, bb := bufs[0][:], bufs[1][:]
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
