package artifact

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/klauspost/compress/zstd"
)

// dirSource reads a release tree from a directory. Symlinks are recorded,
// never followed; anything but files, directories and symlinks is refused.
type dirSource struct{ root string }

func (d dirSource) each(ctx context.Context, fn func(srcEntry, io.Reader) error) error {
	var list []srcEntry
	err := filepath.WalkDir(d.root, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == d.root {
			return nil
		}
		rel, err := filepath.Rel(d.root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		info, err := de.Info()
		if err != nil {
			return err
		}
		e, err := entryFromMode(rel, info.Mode())
		if err != nil {
			return err
		}
		if e.Type == TypeSymlink {
			if e.Target, err = os.Readlink(p); err != nil {
				return err
			}
		}
		list = append(list, srcEntry{Entry: e})
		return nil
	})
	if err != nil {
		return err
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Path < list[j].Path })
	for _, e := range list {
		if err := ctx.Err(); err != nil {
			return err
		}
		if e.Type != TypeFile {
			if err := fn(e, nil); err != nil {
				return err
			}
			continue
		}
		if err := d.file(e, fn); err != nil {
			return err
		}
	}
	return nil
}

func (d dirSource) file(e srcEntry, fn func(srcEntry, io.Reader) error) error {
	f, err := os.OpenFile(filepath.Join(d.root, filepath.FromSlash(e.Path)), os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	// The tree may change under us; only ever read what is still a file.
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return fmt.Errorf("%s: changed while reading", e.Path)
	}
	return fn(e, f)
}

// entryFromMode maps a file mode to an entry, refusing special files.
func entryFromMode(p string, mode fs.FileMode) (Entry, error) {
	perm, err := permOf(p, mode)
	if err != nil {
		return Entry{}, err
	}
	e := Entry{Path: p, Mode: perm}
	switch {
	case mode.IsRegular():
		e.Type = TypeFile
	case mode.IsDir():
		e.Type = TypeDir
	case mode&fs.ModeSymlink != 0:
		e.Type, e.Mode = TypeSymlink, 0o777
	case mode&(fs.ModeDevice|fs.ModeCharDevice) != 0:
		return e, fmt.Errorf("%s: device node; a release may hold only files, directories and symlinks", p)
	case mode&fs.ModeNamedPipe != 0:
		return e, fmt.Errorf("%s: FIFO; a release may hold only files, directories and symlinks", p)
	default:
		return e, fmt.Errorf("%s: special file (%s); a release may hold only files, directories and symlinks", p, mode.Type())
	}
	return e, refuseWorldWritable(e)
}

// Limits bound what a tarball may expand to, against decompression bombs.
// The zero value of each field means its default.
type Limits struct {
	// MaxExpanded is the most bytes the (decompressed) tar stream may hold.
	// Default 64 GiB.
	MaxExpanded int64
	// MaxRatio is the most the stream may expand relative to the file's
	// compressed size, checked once it has expanded past 64 MiB. Default 200.
	MaxRatio float64
	// MaxEntries is the most entries the tarball may hold. Default 10 million.
	MaxEntries int
}

func (l Limits) withDefaults() Limits {
	if l.MaxExpanded <= 0 {
		l.MaxExpanded = 64 << 30
	}
	if l.MaxRatio <= 0 {
		l.MaxRatio = 200
	}
	if l.MaxEntries <= 0 {
		l.MaxEntries = 10_000_000
	}
	return l
}

// ErrLimit is returned (wrapped) when a tarball exceeds a Limit.
var ErrLimit = errors.New("tarball exceeds a safety limit")

// ratioFloor is the expansion below which the ratio limit is not applied:
// small archives of highly compressible files are not bombs.
const ratioFloor = 64 << 20

// tarSource streams a release tree from a tarball, plain or compressed with
// gzip or zstd (detected from the content, not the name).
type tarSource struct {
	path   string
	limits Limits
}

func (t tarSource) each(ctx context.Context, fn func(srcEntry, io.Reader) error) error {
	f, err := os.Open(t.path)
	if err != nil {
		return err
	}
	defer f.Close()
	return readTar(ctx, f, t.limits, fn)
}

// streamSource is a tar stream that can be read once.
type streamSource struct {
	r      io.Reader
	limits Limits
}

func (t streamSource) each(ctx context.Context, fn func(srcEntry, io.Reader) error) error {
	return readTar(ctx, t.r, t.limits, fn)
}

// readTar reads a tar stream from r, checking every entry and the limits.
// It is the one decoder of untrusted tar bytes; FuzzReadTar exercises it.
func readTar(ctx context.Context, r io.Reader, lim Limits, fn func(srcEntry, io.Reader) error) error {
	lim = lim.withDefaults()
	compressed := &countReader{r: r}
	br := bufio.NewReaderSize(compressed, 64<<10)
	magic, _ := br.Peek(4)
	var stream io.Reader = br
	var what string
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("gzip: %w", err)
		}
		defer zr.Close()
		stream, what = zr, "gzip"
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(256<<20))
		if err != nil {
			return fmt.Errorf("zstd: %w", err)
		}
		defer zr.Close()
		stream, what = zr, "zstd"
	}
	guard := &expandGuard{r: stream, compressed: compressed, lim: lim, compressedInput: what != ""}
	tr := tar.NewReader(guard)
	entries := 0
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			if entries == 0 && compressed.n == 0 {
				return errors.New("tar: empty input")
			}
			return nil
		}
		if err != nil {
			return tarError(err, what)
		}
		entries++
		if entries > lim.MaxEntries {
			return fmt.Errorf("%w: more than %d entries (raise the entry limit if this is intended)", ErrLimit, lim.MaxEntries)
		}
		e, skip, err := tarEntry(h)
		if err != nil {
			return fmt.Errorf("tar: %w", err)
		}
		if skip {
			continue
		}
		var content io.Reader
		if e.Type == TypeFile && e.Link == "" {
			content = tr
		}
		if err := fn(e, content); err != nil {
			return tarError(err, what)
		}
	}
}

func tarError(err error, what string) error {
	what = map[string]string{"": "tar", "gzip": "tar.gz", "zstd": "tar.zst"}[what]
	switch {
	case errors.Is(err, ErrLimit), errors.Is(err, context.Canceled):
		return err
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%s: truncated stream: %w", what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// tarEntry checks one header and turns it into an entry; skip is set for
// the archive's root directory ("./").
func tarEntry(h *tar.Header) (e srcEntry, skip bool, err error) {
	name := h.Name
	if strings.HasPrefix(name, "/") {
		return e, false, fmt.Errorf("%q: absolute path", name)
	}
	for strings.HasPrefix(name, "./") {
		name = name[2:]
	}
	name = strings.TrimSuffix(name, "/")
	if name == "" || name == "." {
		if h.Typeflag == tar.TypeDir {
			return e, true, nil
		}
		return e, false, fmt.Errorf("%q: empty name", h.Name)
	}
	if err := ValidPath(name); err != nil {
		return e, false, err
	}
	perm, err := permOf(name, tarMode(h.Mode))
	if err != nil {
		return e, false, err
	}
	e.Path, e.Mode = name, perm
	switch h.Typeflag {
	case tar.TypeReg, tar.TypeRegA:
		e.Type = TypeFile
	case tar.TypeDir:
		e.Type = TypeDir
	case tar.TypeSymlink:
		e.Type, e.Mode, e.Target = TypeSymlink, 0o777, h.Linkname
		if strings.HasPrefix(h.Linkname, "/") {
			return e, false, fmt.Errorf("%s: symlink to absolute path %q points outside the release tree", name, h.Linkname)
		}
	case tar.TypeLink:
		target := strings.TrimPrefix(h.Linkname, "./")
		if err := ValidPath(target); err != nil {
			return e, false, fmt.Errorf("%s: hard link points outside the release tree: %w", name, err)
		}
		e.Type, e.Link = TypeFile, target
	case tar.TypeChar, tar.TypeBlock:
		return e, false, fmt.Errorf("%s: device node; a release may hold only files, directories and symlinks", name)
	case tar.TypeFifo:
		return e, false, fmt.Errorf("%s: FIFO; a release may hold only files, directories and symlinks", name)
	default:
		return e, false, fmt.Errorf("%s: unsupported tar entry type %q", name, h.Typeflag)
	}
	return e, false, refuseWorldWritable(e.Entry)
}

func tarMode(m int64) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	if m&0o4000 != 0 {
		mode |= fs.ModeSetuid
	}
	if m&0o2000 != 0 {
		mode |= fs.ModeSetgid
	}
	return mode
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// expandGuard counts the decompressed stream and stops it at the limits.
type expandGuard struct {
	r               io.Reader
	compressed      *countReader
	lim             Limits
	compressedInput bool
	n               int64
}

func (g *expandGuard) Read(p []byte) (int, error) {
	n, err := g.r.Read(p)
	g.n += int64(n)
	if g.n > g.lim.MaxExpanded {
		return n, fmt.Errorf("%w: expands to more than %d bytes (raise the expanded-size limit if this is intended)", ErrLimit, g.lim.MaxExpanded)
	}
	if g.compressedInput && g.n > ratioFloor && float64(g.n) > g.lim.MaxRatio*float64(g.compressed.n) {
		return n, fmt.Errorf("%w: expands more than %.0f:1 (%d bytes from %d); a decompression bomb? (raise the ratio limit if this is intended)",
			ErrLimit, g.lim.MaxRatio, g.n, g.compressed.n)
	}
	return n, err
}

// TarTree writes the release tree in dir to w as a plain tar stream, with
// the checks and the order of a build from dir (setuid bits, world-writable
// entries and special files are refused here already, naming the entry).
// BuildStream of the stream builds the same release as Build of dir: `scatter
// publish` sends a source directory to the origin daemon this way, reading
// it as the deploying user.
func TarTree(ctx context.Context, w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	err := dirSource{root: dir}.each(ctx, func(e srcEntry, r io.Reader) error {
		h := &tar.Header{Name: e.Path, Mode: int64(e.Mode.Perm()), Format: tar.FormatPAX}
		switch e.Type {
		case TypeDir:
			h.Typeflag, h.Name = tar.TypeDir, e.Path+"/"
		case TypeSymlink:
			h.Typeflag, h.Linkname = tar.TypeSymlink, e.Target
		case TypeFile:
			h.Typeflag = tar.TypeReg
			f, ok := r.(*os.File)
			if !ok {
				return fmt.Errorf("%s: not a file", e.Path)
			}
			fi, err := f.Stat()
			if err != nil {
				return err
			}
			h.Size = fi.Size()
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("%s: %w", e.Path, err)
		}
		if r != nil {
			if _, err := io.Copy(tw, r); err != nil {
				return fmt.Errorf("%s: %w (changed while reading?)", e.Path, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}
