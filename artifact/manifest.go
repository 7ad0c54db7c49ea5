package artifact

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"path"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"scatter/artifact/chunker"
	"scatter/artifact/core"
)

// EntryType is the kind of a tree entry.
type EntryType uint8

const (
	TypeFile EntryType = 1 + iota
	TypeDir
	TypeSymlink
)

func (t EntryType) String() string {
	switch t {
	case TypeFile:
		return "file"
	case TypeDir:
		return "dir"
	case TypeSymlink:
		return "symlink"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Entry is one path of a release tree.
type Entry struct {
	Path   string      // slash-separated, relative, clean; never "." or ".."-bearing
	Type   EntryType   //
	Mode   fs.FileMode // permission bits only (0o777); setuid/setgid/sticky are refused at build
	Size   int64       // files: the uncompressed size
	Chunks []uint32    // files: indexes into Manifest.Chunks, in file order
	Target string      // symlinks: relative target that resolves inside the tree
}

// ChunkRef describes one distinct chunk of a release.
type ChunkRef struct {
	ID   core.ChunkID
	Size uint32 // uncompressed bytes
}

// Manifest describes a release: its metadata and its tree. It is what the
// deploy key signs; its canonical encoding (MarshalBody) defines the release ID.
type Manifest struct {
	Repo     string
	Version  string
	Parent   core.ReleaseID // zero when the release has no parent
	Builder  string
	Message  string
	Time     time.Time // second precision, UTC
	Chunking chunker.Params
	Chunks   []ChunkRef // distinct chunks, in order of first use by Entries
	Entries  []Entry    // sorted by Path, byte-wise; parents precede children
}

// Size returns the total uncompressed size of the files.
func (m *Manifest) Size() int64 {
	var n int64
	for i := range m.Entries {
		n += m.Entries[i].Size
	}
	return n
}

// Files counts the regular files.
func (m *Manifest) Files() int {
	n := 0
	for i := range m.Entries {
		if m.Entries[i].Type == TypeFile {
			n++
		}
	}
	return n
}

// Limits on what a manifest may hold. They bound the memory a hostile
// manifest can claim long before its bytes are read.
const (
	maxBodySize  = 512 << 20
	maxPathLen   = 4096
	maxTextLen   = 64 << 10
	maxNameLen   = 256
	maxSymlinkLn = 4096
)

const bodyMagic = "scatter manifest\n"
const bodyVersion = 1
const hashName = "sha256"

// MarshalBody returns the canonical encoding of m: the bytes that are signed
// and hashed into the release ID. It validates m first.
func (m *Manifest) MarshalBody() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	var w encoder
	w.buf = make([]byte, 0, 64+len(m.Chunks)*36+len(m.Entries)*48)
	w.raw([]byte(bodyMagic))
	w.uvarint(bodyVersion)
	w.str(m.Repo)
	w.str(m.Version)
	if m.Parent.IsZero() {
		w.bytes(nil)
	} else {
		w.bytes(m.Parent[:])
	}
	w.str(m.Builder)
	w.str(m.Message)
	w.varint(m.Time.Unix())
	w.str(chunker.Algorithm)
	w.uvarint(uint64(m.Chunking.Min))
	w.uvarint(uint64(m.Chunking.Avg))
	w.uvarint(uint64(m.Chunking.Max))
	w.str(hashName)
	w.uvarint(uint64(len(m.Chunks)))
	for _, c := range m.Chunks {
		w.raw(c.ID[:])
		w.uvarint(uint64(c.Size))
	}
	w.uvarint(uint64(len(m.Entries)))
	for i := range m.Entries {
		e := &m.Entries[i]
		w.str(e.Path)
		w.buf = append(w.buf, byte(e.Type))
		w.uvarint(uint64(e.Mode))
		switch e.Type {
		case TypeFile:
			w.uvarint(uint64(e.Size))
			w.uvarint(uint64(len(e.Chunks)))
			// Chunks mostly follow each other: store the step from the
			// previous index plus one, which is usually zero.
			next := int64(0)
			for _, c := range e.Chunks {
				w.varint(int64(c) - next)
				next = int64(c) + 1
			}
		case TypeSymlink:
			w.str(e.Target)
		}
	}
	return w.buf, nil
}

// UnmarshalBody decodes and validates a manifest body. It never panics and
// bounds its allocations by the input size.
func UnmarshalBody(b []byte) (*Manifest, error) {
	m, err := unmarshalBody(b)
	if err != nil {
		return nil, fmt.Errorf("decode manifest: %w", err)
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("decode manifest: %w", err)
	}
	return m, nil
}

func unmarshalBody(b []byte) (*Manifest, error) {
	if len(b) > maxBodySize {
		return nil, fmt.Errorf("body of %d bytes exceeds %d", len(b), maxBodySize)
	}
	r := &decoder{buf: b}
	var sink memSink
	m, n := decodeHead(r, &sink)
	if r.err != nil {
		return nil, r.err
	}
	m.Chunks = sink.chunks
	m.Entries = make([]Entry, n)
	for i := range m.Entries {
		if decodeEntry(r, i, len(m.Chunks), &m.Entries[i]); r.err != nil {
			return nil, r.err
		}
	}
	return m, r.end()
}

// decodeHead reads a body's metadata, hands its chunk table to sink, and
// returns the metadata with the number of entries that follow.
func decodeHead(r *decoder, sink tableSink) (*Manifest, int) {
	if !bytes.Equal(r.raw(len(bodyMagic)), []byte(bodyMagic)) {
		r.fail(errors.New("not a scatter manifest (bad magic)"))
		return nil, 0
	}
	if v := r.uvarint(); r.err == nil && v != bodyVersion {
		r.fail(fmt.Errorf("manifest version %d not supported (want %d)", v, bodyVersion))
		return nil, 0
	}
	m := &Manifest{}
	m.Repo = r.str(maxNameLen)
	m.Version = r.str(maxNameLen)
	if p := r.bytes(core.HashSize); len(p) == core.HashSize {
		copy(m.Parent[:], p)
	} else if len(p) != 0 {
		r.fail(fmt.Errorf("parent id of %d bytes", len(p)))
	}
	m.Builder = r.str(maxNameLen)
	m.Message = r.str(maxTextLen)
	sec := r.varint()
	m.Time = time.Unix(sec, 0).UTC()
	if alg := r.str(maxNameLen); r.err == nil && alg != chunker.Algorithm {
		r.fail(fmt.Errorf("chunking %q not supported (want %q)", alg, chunker.Algorithm))
		return nil, 0
	}
	m.Chunking.Min = r.int(math.MaxInt32)
	m.Chunking.Avg = r.int(math.MaxInt32)
	m.Chunking.Max = r.int(math.MaxInt32)
	if h := r.str(maxNameLen); r.err == nil && h != hashName {
		r.fail(fmt.Errorf("hash %q not supported (want %q)", h, hashName))
		return nil, 0
	}
	n := r.count(core.HashSize + 1)
	if r.err != nil {
		return nil, 0
	}
	if err := sink.start(n); err != nil {
		r.fail(err)
		return nil, 0
	}
	var id core.ChunkID
	for i := range n {
		copy(id[:], r.raw(core.HashSize)) // the next read may reuse its bytes
		size := r.int(math.MaxUint32)
		if r.err != nil {
			return nil, 0
		}
		if err := sink.chunk(i, id[:], uint32(size)); err != nil {
			r.fail(err)
			return nil, 0
		}
	}
	n = r.count(3)
	if r.err != nil {
		return nil, 0
	}
	return m, n
}

// decodeEntry reads entry i into e, given the size of the chunk table.
func decodeEntry(r *decoder, i, chunks int, e *Entry) {
	e.Path = r.str(maxPathLen)
	e.Type = EntryType(r.byte())
	e.Mode = fs.FileMode(r.int(0o777))
	switch e.Type {
	case TypeFile:
		e.Size = int64(r.uvarint())
		k := r.count(1)
		if r.err != nil {
			return
		}
		if e.Chunks != nil && cap(e.Chunks) >= k {
			e.Chunks = e.Chunks[:k] // reused (entryReader.nextInto)
		} else {
			e.Chunks = make([]uint32, k)
		}
		next := int64(0)
		for j := range e.Chunks {
			c := r.varint() + next
			if c < 0 || c >= int64(chunks) {
				r.fail(fmt.Errorf("%s: chunk index out of range", e.Path))
				return
			}
			e.Chunks[j] = uint32(c)
			next = c + 1
		}
	case TypeSymlink:
		e.Target = r.str(maxSymlinkLn)
	case TypeDir:
	default:
		r.fail(fmt.Errorf("entry %d: unknown type %d", i, e.Type))
	}
}

// Validate checks that m is well formed and safe to materialize: metadata
// sizes, chunking parameters, paths (clean, relative, sorted, unique, parents
// are directories), symlink targets that stay inside the tree, file sizes
// that match their chunks, and a canonical chunk table. It changes nothing.
func (m *Manifest) Validate() error {
	if err := m.validHead(); err != nil {
		return err
	}
	t := ManifestTable(core.ReleaseID{}, m)
	if err := validTable(t, m.Chunking); err != nil {
		return err
	}
	c := newEntryCheck(t)
	for i := range m.Entries {
		if err := c.check(&m.Entries[i]); err != nil {
			return err
		}
	}
	return c.finish()
}

// validHead checks m's metadata and chunk table, leaving the entries to an
// entryCheck.
func (m *Manifest) validHead() error {
	if err := ValidName("repo", m.Repo); err != nil {
		return err
	}
	if err := ValidName("version", m.Version); err != nil {
		return err
	}
	if len(m.Builder) > maxNameLen || !utf8.ValidString(m.Builder) {
		return errors.New("builder: too long or not UTF-8")
	}
	if len(m.Message) > maxTextLen || !utf8.ValidString(m.Message) {
		return errors.New("message: too long or not UTF-8")
	}
	if err := m.Chunking.Validate(); err != nil {
		return err
	}
	return nil
}

// validTable checks a chunk table: sizes within the chunking's bounds and
// no ID listed twice. Duplicates are found among 8-byte prefixes, sorted:
// 8 bytes a chunk where a set of IDs took about 60 (every host validates
// every manifest it fetches, and a large release has 160k chunks), and a
// table on disk is read once, in order. Equal prefixes are compared whole.
func validTable(t *Table, c chunker.Params) error {
	n := t.Len()
	if n > math.MaxUint32 {
		return errors.New("chunk table too large")
	}
	prefixes := make([]uint64, n)
	for i := range n {
		ref, err := t.Ref(i)
		if err != nil {
			return err
		}
		if ref.Size == 0 || int(ref.Size) > c.Max {
			return fmt.Errorf("chunk %d (%s): size %d outside 1..%d", i, ref.ID.Short(), ref.Size, c.Max)
		}
		prefixes[i] = binary.BigEndian.Uint64(ref.ID[:8])
	}
	slices.Sort(prefixes)
	var shared []uint64
	for i := 1; i < n; i++ {
		if prefixes[i] == prefixes[i-1] && (len(shared) == 0 || shared[len(shared)-1] != prefixes[i]) {
			shared = append(shared, prefixes[i])
		}
	}
	if len(shared) == 0 {
		return nil
	}
	// Rare unless the table lists a chunk twice: find those IDs whole.
	seen := map[core.ChunkID]bool{}
	for i := range n {
		ref, err := t.Ref(i)
		if err != nil {
			return err
		}
		if _, ok := slices.BinarySearch(shared, binary.BigEndian.Uint64(ref.ID[:8])); !ok {
			continue
		}
		if seen[ref.ID] {
			return fmt.Errorf("chunk %s listed twice", ref.ID.Short())
		}
		seen[ref.ID] = true
	}
	return nil
}

// entryCheck validates entries one at a time, in manifest order, so that a
// manifest's entries can be checked as they are read from its body instead
// of all decoded first. It keeps the directories' paths (to check parents)
// and the symlinks (checked together at the end), not the files.
type entryCheck struct {
	chunks    *Table
	n         int
	last      string
	dirs      []string // sorted, since entries are
	links     map[string]string
	nextChunk uint32 // canonical: each chunk first used in table order
}

func newEntryCheck(chunks *Table) *entryCheck {
	return &entryCheck{chunks: chunks, links: map[string]string{}}
}

// check validates the next entry.
func (c *entryCheck) check(e *Entry) error {
	if err := ValidPath(e.Path); err != nil {
		return err
	}
	if c.n > 0 && c.last >= e.Path {
		return fmt.Errorf("%s: entries not sorted or duplicated", e.Path)
	}
	c.n++
	c.last = e.Path
	// Directories before this entry are sorted and a parent sorts before
	// its children: search them rather than keep a map of paths.
	if dir := path.Dir(e.Path); dir != "." {
		if _, ok := slices.BinarySearch(c.dirs, dir); !ok {
			return fmt.Errorf("%s: parent %s is not a directory in the tree", e.Path, dir)
		}
	}
	if e.Mode&^0o777 != 0 {
		return fmt.Errorf("%s: mode %o has bits beyond 0777", e.Path, e.Mode)
	}
	switch e.Type {
	case TypeFile:
		var sum int64
		for _, i := range e.Chunks {
			if int(i) >= c.chunks.Len() {
				return fmt.Errorf("%s: chunk index %d out of range", e.Path, i)
			}
			if i > c.nextChunk {
				return fmt.Errorf("%s: chunk table not in order of first use", e.Path)
			}
			if i == c.nextChunk {
				c.nextChunk++
			}
			ref, err := c.chunks.Ref(int(i))
			if err != nil {
				return err
			}
			sum += int64(ref.Size)
		}
		if sum != e.Size {
			return fmt.Errorf("%s: size %d but chunks hold %d bytes", e.Path, e.Size, sum)
		}
	case TypeDir:
		if len(e.Chunks) != 0 || e.Size != 0 || e.Target != "" {
			return fmt.Errorf("%s: directory with content", e.Path)
		}
		c.dirs = append(c.dirs, e.Path)
	case TypeSymlink:
		if len(e.Chunks) != 0 || e.Size != 0 {
			return fmt.Errorf("%s: symlink with content", e.Path)
		}
		if e.Mode != 0o777 {
			return fmt.Errorf("%s: symlink mode %o, want 777", e.Path, e.Mode)
		}
		c.links[e.Path] = e.Target
	default:
		return fmt.Errorf("%s: unknown entry type %d", e.Path, e.Type)
	}
	return nil
}

// finish checks what only the whole tree shows: every chunk used, and
// symlinks that stay inside the tree.
func (c *entryCheck) finish() error {
	if int(c.nextChunk) != c.chunks.Len() {
		return fmt.Errorf("chunk table lists %d chunks that no file uses", c.chunks.Len()-int(c.nextChunk))
	}
	return checkSymlinks(c.links)
}

// ValidName checks a repo or version name: 1–256 letters, digits and . _ - + @.
func ValidName(what, s string) error {
	if s == "" || len(s) > maxNameLen {
		return fmt.Errorf("%s: must be 1..%d bytes", what, maxNameLen)
	}
	for _, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-+@", r)
		if !ok {
			return fmt.Errorf("%s %q: only letters, digits and . _ - + @ are allowed", what, s)
		}
	}
	if s == "." || s == ".." {
		return fmt.Errorf("%s %q: not a valid name", what, s)
	}
	return nil
}

// ValidPath reports whether p may name an entry of a release tree: relative,
// clean, UTF-8, without NUL, "." or ".." components, at most 4096 bytes.
func ValidPath(p string) error {
	switch {
	case p == "" || p == ".":
		return errors.New("empty path")
	case len(p) > maxPathLen:
		return fmt.Errorf("path of %d bytes exceeds %d", len(p), maxPathLen)
	case !utf8.ValidString(p) || strings.ContainsRune(p, 0):
		return fmt.Errorf("path %q: not UTF-8 or contains NUL", p)
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("path %q: absolute", p)
	case p == ".." || strings.HasPrefix(p, "../") || strings.Contains(p, "/../") || strings.HasSuffix(p, "/.."):
		return fmt.Errorf("path %q: escapes the tree (..)", p)
	case path.Clean(p) != p:
		return fmt.Errorf("path %q: not clean", p)
	}
	return nil
}

// checkSymlinks makes sure that every symlink, followed through the other
// symlinks of the tree, stays inside it. A lexical check is not enough: with
// "d -> .." in a subdirectory, "d/../x" looks harmless but leaves the tree.
func checkSymlinks(targets map[string]string) error {
	for p, t := range targets {
		if t == "" || strings.HasPrefix(t, "/") || strings.ContainsRune(t, 0) || !utf8.ValidString(t) {
			return fmt.Errorf("%s: symlink target %q must be relative, non-empty UTF-8", p, t)
		}
		if err := resolveInside(path.Dir(p), t, targets); err != nil {
			return fmt.Errorf("%s: symlink to %q: %w", p, t, err)
		}
	}
	return nil
}

var errEscapes = errors.New("points outside the release tree")

// resolveInside follows target from directory dir as the kernel would, with
// the tree's own symlinks, and fails if it ever climbs above the root.
func resolveInside(dir, target string, links map[string]string) error {
	var stack []string // resolved components from the root
	if dir != "." {
		stack = strings.Split(dir, "/")
	}
	pending := strings.Split(target, "/")
	hops := 0
	for len(pending) > 0 {
		c := pending[0]
		pending = pending[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(stack) == 0 {
				return errEscapes
			}
			stack = stack[:len(stack)-1]
			continue
		}
		cur := strings.Join(append(stack, c), "/")
		if t, ok := links[cur]; ok {
			hops++
			if hops > 40 {
				return errors.New("too many levels of symbolic links")
			}
			if strings.HasPrefix(t, "/") {
				return errEscapes
			}
			pending = append(strings.Split(t, "/"), pending...)
			continue
		}
		stack = append(stack, c)
	}
	return nil
}

// SortEntries sorts entries into manifest order.
func SortEntries(es []Entry) {
	sort.Slice(es, func(i, j int) bool { return es[i].Path < es[j].Path })
}

type encoder struct{ buf []byte }

func (w *encoder) raw(b []byte)     { w.buf = append(w.buf, b...) }
func (w *encoder) uvarint(v uint64) { w.buf = binary.AppendUvarint(w.buf, v) }
func (w *encoder) varint(v int64)   { w.buf = binary.AppendVarint(w.buf, v) }
func (w *encoder) bytes(b []byte)   { w.uvarint(uint64(len(b))); w.raw(b) }
func (w *encoder) str(s string)     { w.uvarint(uint64(len(s))); w.buf = append(w.buf, s...) }

// decoder reads a body, from memory (buf) or from a stream (rd, of which
// left bytes remain). Slices it returns are valid until the next read.
// After the first error every read returns zero values and r.err keeps
// that first error.
type decoder struct {
	buf  []byte
	rd   io.Reader
	left int
	err  error
	win  []byte // a stream's read buffer; buf is its unread part
}

// streamWindow is a stream decoder's buffer: room for the longest field
// (a message, maxTextLen) and a varint.
const streamWindow = maxTextLen + 16

// has makes n bytes available in buf if the body holds them, reading
// from the stream as needed.
func (r *decoder) has(n int) bool {
	if len(r.buf) >= n || r.rd == nil || r.left == 0 {
		return len(r.buf) >= n
	}
	if r.win == nil {
		r.win = make([]byte, streamWindow)
	}
	k := copy(r.win, r.buf)
	want := min(len(r.win)-k, r.left)
	got, err := io.ReadFull(r.rd, r.win[k:k+want])
	r.left -= got
	r.buf = r.win[:k+got]
	if err != nil {
		r.fail(fmt.Errorf("read body: %w", err))
		return false
	}
	return len(r.buf) >= n
}

// remaining is how many bytes of the body are left to read.
func (r *decoder) remaining() int { return len(r.buf) + r.left }

// end checks that the body has been read to its end.
func (r *decoder) end() error {
	if r.err != nil {
		return r.err
	}
	if n := r.remaining(); n != 0 {
		return fmt.Errorf("%d trailing bytes", n)
	}
	return nil
}

func (r *decoder) fail(err error) {
	if r.err == nil {
		r.err = err
	}
	r.buf, r.rd, r.left = nil, nil, 0
}

func (r *decoder) raw(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n > len(r.buf) && (n > r.remaining() || !r.has(n)) {
		r.fail(errors.New("truncated"))
		return nil
	}
	b := r.buf[:n]
	r.buf = r.buf[n:]
	return b
}

func (r *decoder) byte() byte {
	if b := r.raw(1); b != nil {
		return b[0]
	}
	return 0
}

func (r *decoder) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	r.has(binary.MaxVarintLen64)
	v, n := binary.Uvarint(r.buf)
	if n <= 0 {
		r.fail(errors.New("bad varint"))
		return 0
	}
	r.buf = r.buf[n:]
	return v
}

func (r *decoder) varint() int64 {
	if r.err != nil {
		return 0
	}
	r.has(binary.MaxVarintLen64)
	v, n := binary.Varint(r.buf)
	if n <= 0 {
		r.fail(errors.New("bad varint"))
		return 0
	}
	r.buf = r.buf[n:]
	return v
}

func (r *decoder) int(max uint64) int {
	v := r.uvarint()
	if v > max {
		r.fail(fmt.Errorf("value %d exceeds %d", v, max))
		return 0
	}
	return int(v)
}

// count reads an element count and checks it against the bytes left, given
// the smallest encoding of one element, so a forged count cannot make us
// allocate more than the input could describe.
func (r *decoder) count(minSize int) int {
	v := r.uvarint()
	if r.err == nil && v > uint64(r.remaining()/minSize) {
		r.fail(fmt.Errorf("count %d exceeds what %d bytes can hold", v, r.remaining()))
		return 0
	}
	return int(v)
}

func (r *decoder) bytes(max int) []byte {
	n := r.uvarint()
	if r.err == nil && n > uint64(max) {
		r.fail(fmt.Errorf("field of %d bytes exceeds %d", n, max))
		return nil
	}
	return r.raw(int(n))
}

func (r *decoder) str(max int) string { return string(r.bytes(max)) }
