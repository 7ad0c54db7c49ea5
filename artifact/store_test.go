package artifact

import (
	"bytes"
	"context"
	"crypto/ed25519"
	crand "crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"scatter/artifact/core"
)

func builtRelease(t *testing.T) (*Store, *Signed, string) {
	t.Helper()
	src := filepath.Join(t.TempDir(), "src")
	writeTree(t, src)
	st := newStore(t)
	return st, build(t, st, src, newKey(t), opts("mw", "1")).Signed, src
}

// chunkOf returns the ID of the first chunk of the named file.
func firstChunkOf(sm *Signed, path string) ChunkRef {
	for _, e := range sm.Manifest.Entries {
		if e.Path == path {
			return sm.Manifest.Chunks[e.Chunks[0]]
		}
	}
	panic("no such file " + path)
}

func TestCorruptChunkIsNamedAndRefused(t *testing.T) {
	st, sm, _ := builtRelease(t)
	bad := firstChunkOf(sm, "includes/Setup.php")
	corruptChunk(t, st, bad.ID)
	problems, err := Verify(context.Background(), st, sm.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) != 1 || problems[0].Chunk != bad.ID || !errors.Is(problems[0].Err, ErrChunkCorrupt) ||
		len(problems[0].Files) != 1 || problems[0].Files[0] != "includes/Setup.php" {
		t.Fatalf("verify found %v", problems)
	}
	dest := filepath.Join(t.TempDir(), "out")
	_, err = Materialize(context.Background(), st, sm, dest, MaterializeOptions{})
	if !errors.Is(err, ErrChunkCorrupt) || !strings.Contains(err.Error(), "includes/Setup.php") || !strings.Contains(err.Error(), bad.ID.String()) {
		t.Fatalf("materialize: got %v", err)
	}
	assertNothingLeft(t, filepath.Dir(dest))
}

func TestMissingChunkIsNamed(t *testing.T) {
	st, sm, _ := builtRelease(t)
	gone := firstChunkOf(sm, "includes/api/ApiMain.php")
	st = copyStore(t, st, sm, gone.ID)
	problems, err := Verify(context.Background(), st, sm.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) != 1 || !errors.Is(problems[0].Err, ErrChunkMissing) || len(problems[0].Files) != 2 {
		t.Fatalf("verify found %v (want the chunk, shared by ApiMain.php and Copy.php)", problems)
	}
}

// corruptChunk flips a byte in the middle of a chunk's stored frame.
func corruptChunk(t *testing.T, st *Store, id core.ChunkID) {
	t.Helper()
	l, err := st.locate(id)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(st.Dir(), "packs", l.pack.name), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := []byte{0}
	off := l.off + int64(l.csize)/2
	f.ReadAt(b, off)
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// copyStore copies release sm into a new store, leaving out chunk skip.
func copyStore(t *testing.T, from *Store, sm *Signed, skip core.ChunkID) *Store {
	t.Helper()
	to := newStore(t)
	w, err := to.NewWriter()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range sm.Manifest.Chunks {
		if c.ID == skip {
			continue
		}
		z, err := from.ReadCompressedChunk(c.ID)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.PutCompressed(c.ID, z, int(c.Size)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := to.PutManifest(sm); err != nil {
		t.Fatal(err)
	}
	return to
}

// assertNothingLeft fails if dir holds anything: a failed materialize must
// not leave a partial tree behind.
func assertNothingLeft(t *testing.T, dir string) {
	t.Helper()
	names, err := readDirNames(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 0 {
		t.Fatalf("left behind in %s: %v", dir, names)
	}
}

func TestMaterializeRefusesExistingDest(t *testing.T) {
	st, sm, _ := builtRelease(t)
	for _, make := range []func(string) error{
		func(p string) error { return os.Mkdir(p, 0o755) },
		func(p string) error { return os.WriteFile(p, nil, 0o644) },
		func(p string) error { return os.Symlink("/tmp", p) },
	} {
		parent := t.TempDir()
		dest := filepath.Join(parent, "out")
		if err := make(dest); err != nil {
			t.Fatal(err)
		}
		if _, err := Materialize(context.Background(), st, sm, dest, MaterializeOptions{}); !errors.Is(err, ErrDestExists) {
			t.Fatalf("got %v, want ErrDestExists", err)
		}
		if names, _ := readDirNames(parent); len(names) != 1 {
			t.Fatalf("materialize wrote next to an existing DEST: %v", names)
		}
	}
}

func TestMaterializeReusesPreviousTree(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	writeTree(t, src)
	st, key := newStore(t), newKey(t)
	r1 := build(t, st, src, key, opts("mw", "1"))
	writeFile(t, filepath.Join(src, "includes/Setup.php"), pseudoText(11, 20000))
	r2 := build(t, st, src, key, opts("mw", "2"))
	if r2.NewChunks == 0 || r2.NewChunks > 2 {
		t.Fatalf("one changed file gave %d new chunks", r2.NewChunks)
	}
	out := t.TempDir()
	if _, err := Materialize(context.Background(), st, r1.Signed, filepath.Join(out, "1"), MaterializeOptions{}); err != nil {
		t.Fatal(err)
	}
	res, err := Materialize(context.Background(), st, r2.Signed, filepath.Join(out, "2"), MaterializeOptions{
		Previous: &Previous{Manifest: r1.Signed.Manifest, Dir: filepath.Join(out, "1")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Linked != res.Files-1 {
		t.Fatalf("linked %d of %d files, want all but the changed one", res.Linked, res.Files)
	}
	if treeDigest(t, filepath.Join(out, "2")) != treeDigest(t, src) {
		t.Fatal("reused tree differs from the source")
	}
}

// A full disk during build or materialize is an error that leaves no chunk,
// manifest or tree that looks complete. Needs root to mount a small tmpfs.
func TestFullDisk(t *testing.T) {
	small := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", small).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small tmpfs (needs root): %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", small).Run() })

	src := filepath.Join(t.TempDir(), "src")
	writeTree(t, src) // about 620 KB of text, about 100 KB compressed
	writeFile(t, filepath.Join(src, "random.bin"), randomBytes(300<<10))
	st, err := OpenStore(filepath.Join(small, "store"), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Build(context.Background(), st, src, newKey(t), opts("mw", "1"))
	if err == nil || !strings.Contains(err.Error(), "no space left") {
		t.Fatalf("build on a full disk: got %v", err)
	}
	if ids, _ := st.ReleaseIDs(); len(ids) != 0 {
		t.Fatal("a manifest was stored for a failed build")
	}
	// Every chunk that did land must be intact.
	checkAllChunks(t, st)
	if names, _ := readDirNames(filepath.Join(st.Dir(), "tmp")); len(names) != 0 {
		t.Fatalf("temp files left: %v", names)
	}

	// Materialize onto the full disk from a store elsewhere.
	os.RemoveAll(filepath.Join(small, "store"))
	big, sm, _ := builtRelease(t)
	dest := filepath.Join(small, "out")
	_, err = Materialize(context.Background(), big, sm, dest, MaterializeOptions{})
	if err == nil || !strings.Contains(err.Error(), "no space left") {
		t.Fatalf("materialize on a full disk: got %v", err)
	}
	assertNothingLeft(t, small)
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	crand.Read(b)
	return b
}

// checkAllChunks reads every pack of the store and verifies every chunk.
func checkAllChunks(t *testing.T, st *Store) {
	t.Helper()
	names, _ := readDirNames(filepath.Join(st.Dir(), "packs"))
	for _, n := range names {
		p, entries, err := openPack(filepath.Join(st.Dir(), "packs", n))
		if err != nil {
			t.Errorf("pack %s: %v", n, err)
			continue
		}
		for _, e := range entries {
			z, err := chunkLoc{pack: p, off: e.off, csize: e.csize}.readFrame()
			if err == nil {
				_, err = zstdDecodeExact(z, int(e.size))
			}
			if err != nil {
				t.Errorf("pack %s: chunk %s: %v", n, e.id.Short(), err)
			}
		}
		p.f.Close()
	}
}

func TestGC(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	writeTree(t, src)
	st, key := newStore(t), newKey(t)
	var ids []*BuildResult
	for i, v := range []string{"1", "2", "3"} {
		o := opts("mw", v)
		o.Time = fixedTime.Add(time.Duration(i) * time.Hour)
		writeFile(t, filepath.Join(src, "version.txt"), pseudoText(uint64(100+i), 3000)) // one chunk
		ids = append(ids, build(t, st, src, key, o))
	}
	other := opts("other", "1")
	build(t, st, src, key, other)

	res, err := st.GC(GCOptions{Keep: 1, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.RemovedReleases) != 2 || res.RemovedChunks != 2 || res.FreedBytes == 0 {
		t.Fatalf("dry run: %+v", res)
	}
	if rel, _ := st.ReleaseIDs(); len(rel) != 4 {
		t.Fatal("dry run removed releases")
	}
	res, err = st.GC(GCOptions{Keep: 1, Pin: []core.ReleaseID{ids[0].Signed.ID}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.RemovedReleases) != 1 || res.RemovedReleases[0] != ids[1].Signed.ID || res.RemovedChunks != 1 {
		t.Fatalf("gc removed %+v, want release 2 and its one chunk", res)
	}
	// Release 2's pack held only its version.txt chunk: deleted outright.
	if st.HasChunk(firstChunkOf(ids[1].Signed, "version.txt").ID) {
		t.Fatal("gc kept a dead chunk")
	}
	checkAllChunks(t, st)
	for _, r := range []*BuildResult{ids[0], ids[2]} {
		problems, err := Verify(context.Background(), st, r.Signed.Manifest)
		if err != nil || len(problems) != 0 {
			t.Fatalf("kept release damaged by gc: %v %v", problems, err)
		}
	}
	// A writer holding the lock keeps gc out.
	unlock, err := st.lock(false)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	if _, err := st.GC(GCOptions{Keep: 1}); !errors.Is(err, ErrStoreBusy) {
		t.Fatalf("gc during a build: got %v", err)
	}
}

// A pack that is mostly dead is rewritten with only its live chunks.
func TestGCRewritesMostlyDeadPacks(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	os.MkdirAll(src, 0o755)
	for i := range 10 {
		writeFile(t, filepath.Join(src, fmt.Sprintf("f%d", i)), pseudoText(uint64(i), 20000))
	}
	st, key := newStore(t), newKey(t)
	o := opts("mw", "1")
	build(t, st, src, key, o)
	for i := range 8 { // 8 of 10 files change: release 1's pack becomes 20% live
		writeFile(t, filepath.Join(src, fmt.Sprintf("f%d", i)), pseudoText(uint64(100+i), 20000))
	}
	o = opts("mw", "2")
	o.Time = fixedTime.Add(time.Hour)
	r2 := build(t, st, src, key, o)
	res, err := st.GC(GCOptions{Keep: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.RewrittenPacks != 1 || res.FreedBytes == 0 {
		t.Fatalf("gc: %+v, want one pack rewritten", res)
	}
	names, _ := readDirNames(filepath.Join(st.Dir(), "packs"))
	if len(names) != 2 {
		t.Fatalf("packs after gc: %v, want release 2's and the rewritten one", names)
	}
	// A fresh open sees the same, complete store.
	st2, err := OpenStore(st.Dir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if problems, err := Verify(context.Background(), st2, r2.Signed.Manifest); err != nil || len(problems) != 0 {
		t.Fatalf("release 2 after gc: %v %v", problems, err)
	}
	checkAllChunks(t, st2)
}

// MaterializeStored reads both manifests from the store as it walks them,
// and refuses a stored manifest that no longer hashes to its release.
func TestMaterializeStored(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	writeTree(t, src)
	st, key := newStore(t), newKey(t)
	r1 := build(t, st, src, key, opts("mw", "1"))
	writeFile(t, filepath.Join(src, "includes/Setup.php"), pseudoText(11, 20000))
	r2 := build(t, st, src, key, opts("mw", "2"))
	pub := key.Public().(ed25519.PublicKey)
	t1, err := st.Table(r1.Signed.ID, pub)
	if err != nil {
		t.Fatal(err)
	}
	t2, err := st.Table(r2.Signed.ID, pub)
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	ctx := context.Background()
	if _, err := MaterializeStored(ctx, st, t1, filepath.Join(out, "1"), MaterializeOptions{}); err != nil {
		t.Fatal(err)
	}
	res, err := MaterializeStored(ctx, st, t2, filepath.Join(out, "2"), MaterializeOptions{
		Previous: &Previous{Release: t1.ID, Dir: filepath.Join(out, "1")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Linked != res.Files-1 {
		t.Fatalf("linked %d of %d files, want all but the changed one", res.Linked, res.Files)
	}
	if treeDigest(t, filepath.Join(out, "2")) != treeDigest(t, src) {
		t.Fatal("tree differs from the source")
	}

	// Release 1's envelope under release 2's name: signed, valid, wrong.
	env, err := st.ManifestEnvelope(t1.ID)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(st.Dir(), "manifests", t2.ID.String())
	os.Chmod(path, 0o644)
	if err := os.WriteFile(path, env, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := MaterializeStored(ctx, st, t2, filepath.Join(out, "3"), MaterializeOptions{}); err == nil {
		t.Fatal("materialized from a stored manifest of another release")
	}
	// Two trees and their records (datadir.TreeRecord).
	if names, _ := readDirNames(out); len(names) != 4 {
		t.Fatalf("a refused manifest left something behind: %v", names)
	}
}

// PutFetched stores an envelope only if it is the wanted release, signed
// by the trusted key, and leaves nothing behind otherwise.
func TestPutFetched(t *testing.T) {
	_, st, _ := builtRelease(t)
	env := st.Encode()
	pub := st.PubKey
	dst := newStore(t)
	for _, c := range []struct {
		name    string
		trusted ed25519.PublicKey
		want    core.ReleaseID
	}{
		{"another release", pub, core.ReleaseID{1}},
		{"another key", newKey(t).Public().(ed25519.PublicKey), st.ID},
	} {
		if _, err := dst.PutFetched(bytes.NewReader(env), c.trusted, c.want); err == nil {
			t.Fatalf("%s: stored", c.name)
		}
		for _, sub := range []string{"manifests", "tmp"} {
			if names, _ := readDirNames(filepath.Join(dst.Dir(), sub)); len(names) != 0 {
				t.Fatalf("%s: left %v in %s", c.name, names, sub)
			}
		}
	}
	tb, err := dst.PutFetched(bytes.NewReader(env), pub, st.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := dst.ManifestEnvelope(st.ID); err != nil || !bytes.Equal(got, env) {
		t.Fatalf("stored envelope differs: %v", err)
	}
	if tb.ID != st.ID || !reflect.DeepEqual(tableRefs(t, tb), st.Manifest.Chunks) {
		t.Fatal("table differs from the manifest's")
	}
}

// writeTempFrom refuses more than its limit and leaves nothing behind.
func TestWriteTempFromLimit(t *testing.T) {
	dir := t.TempDir()
	if _, err := writeTempFrom(dir, strings.NewReader("12345"), 4, 0o444); err == nil || !strings.Contains(err.Error(), "more than 4 bytes") {
		t.Fatalf("5 bytes, limit 4: %v", err)
	}
	if names, _ := readDirNames(dir); len(names) != 0 {
		t.Fatalf("left %v behind", names)
	}
	path, err := writeTempFrom(dir, strings.NewReader("1234"), 4, 0o444)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "1234" {
		t.Fatalf("read back %q, %v", b, err)
	}
}

// A fetched chunk is first checked by SHA-256 when it is staged: one that
// fails there is named, and dropped from the store (for good: the pack is
// rewritten without it) so that no later release reuses it; the rest of
// its pack stays. Once a good copy is stored again, the release stages.
func TestCorruptChunkIsDroppedAndStoredAgain(t *testing.T) {
	st, sm, src := builtRelease(t)
	bad := firstChunkOf(sm, "includes/Setup.php")
	good, err := st.ReadCompressedChunk(bad.ID)
	if err != nil {
		t.Fatal(err)
	}
	corruptChunk(t, st, bad.ID)
	dest := filepath.Join(t.TempDir(), "out")
	_, err = Materialize(context.Background(), st, sm, dest, MaterializeOptions{})
	if !errors.Is(err, ErrChunkCorrupt) || !strings.Contains(err.Error(), bad.ID.String()) || !strings.Contains(err.Error(), "dropped from the store") {
		t.Fatalf("materialize: got %v", err)
	}
	if st.HasChunk(bad.ID) {
		t.Fatal("the corrupt chunk is still in the store")
	}
	st.Close()
	st, err = OpenStore(st.Dir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	problems, err := Verify(context.Background(), st, sm.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) != 1 || problems[0].Chunk != bad.ID || !errors.Is(problems[0].Err, ErrChunkMissing) {
		t.Fatalf("after reopening, verify found %v; want only the dropped chunk missing", problems)
	}
	w, err := st.NewWriter()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.PutCompressed(bad.ID, good, int(bad.Size)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Materialize(context.Background(), st, sm, dest, MaterializeOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, want := treeDigest(t, dest), treeDigest(t, src); got != want {
		t.Fatalf("staged tree differs from its source:\n%s\nwant\n%s", got, want)
	}
}

// While a writer holds the store, a corrupt chunk is only forgotten by this
// process (its pack cannot be rewritten under a writer): the error says
// so, and a read after reopening finds it corrupt again.
func TestCorruptChunkDropWhileStoreBusy(t *testing.T) {
	st, sm, _ := builtRelease(t)
	bad := firstChunkOf(sm, "includes/Setup.php")
	corruptChunk(t, st, bad.ID)
	w, err := st.NewWriter()
	if err != nil {
		t.Fatal(err)
	}
	_, err = Materialize(context.Background(), st, sm, filepath.Join(t.TempDir(), "out"), MaterializeOptions{})
	w.Close()
	if !errors.Is(err, ErrChunkCorrupt) || !errors.Is(err, ErrStoreBusy) {
		t.Fatalf("materialize: got %v", err)
	}
	if st.HasChunk(bad.ID) {
		t.Fatal("the corrupt chunk is still in the store's index")
	}
	again, err := OpenStore(st.Dir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if _, err := again.ReadChunk(bad.ID, int(bad.Size), nil); !errors.Is(err, ErrChunkCorrupt) {
		t.Fatalf("after reopening: got %v, want the chunk corrupt again", err)
	}
}

// A writer gathers small frames before writing them out, and writes a
// frame larger than its buffer directly: every chunk, put in any order of
// sizes, reads back intact once the pack is complete, also after the
// store is opened again.
func TestWriterGathersSmallFrames(t *testing.T) {
	st := newStore(t)
	w, err := st.NewWriter()
	if err != nil {
		t.Fatal(err)
	}
	var ids []core.ChunkID
	var raws [][]byte
	for i, n := range []int{10, 3000, writeBuf - 100, 50, 2 * writeBuf, 7000, writeBuf, 1, 400 << 10, 20} {
		// Half random (incompressible), half text: frames above and
		// below the buffer's size.
		raw := randomBytes(n)
		if i%2 == 1 {
			raw = bytes.Repeat([]byte(fmt.Sprintf("line %d\n", i)), n/7+1)[:n]
		}
		id := core.ChunkIDOf(raw)
		if _, err := w.Put(id, raw, nil); err != nil {
			t.Fatal(err)
		}
		if st.HasChunk(id) {
			t.Fatal("a chunk is visible before its pack is complete")
		}
		ids, raws = append(ids, id), append(raws, raw)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	st2, err := OpenStore(st.Dir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	for _, s := range []*Store{st, st2} {
		for i, id := range ids {
			got, err := s.ReadChunk(id, len(raws[i]), nil)
			if err != nil || !bytes.Equal(got, raws[i]) {
				t.Fatalf("chunk %d (%d bytes): %v", i, len(raws[i]), err)
			}
		}
	}
	checkAllChunks(t, st2)
}
