package artifact

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

func gz(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func zst(t testing.TB, b []byte) []byte {
	w, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	return w.EncodeAll(b, nil)
}

var goodTar = []tarEnt{
	{name: "./", typ: tar.TypeDir, mode: 0o755},
	{name: "./a/", typ: tar.TypeDir, mode: 0o755},
	{name: "./a/x.php", typ: tar.TypeReg, body: []byte("<?php echo 1;\n")},
	{name: "./a/run", typ: tar.TypeReg, mode: 0o755, body: []byte("#!/bin/sh\n")},
	{name: "./a/link", typ: tar.TypeSymlink, linkname: "x.php"},
	{name: "./a/hard", typ: tar.TypeLink, linkname: "./a/x.php"},
	{name: "b/c/deep.txt", typ: tar.TypeReg, body: pseudoText(9, 70000)}, // parents implicit
}

// Every compression the builder accepts gives the same release.
func TestBuildFromTarballs(t *testing.T) {
	raw := makeTar(t, goodTar)
	dir := t.TempDir()
	st, key := newStore(t), newKey(t)
	var ids []string
	for name, data := range map[string][]byte{"r.tar": raw, "r.tar.gz": gz(t, raw), "r.tar.zst": zst(t, raw), "no-extension": gz(t, raw)} {
		res := build(t, st, writeFile(t, filepath.Join(dir, name), data), key, opts("mw", "1"))
		ids = append(ids, res.Signed.ID.String())
		m := res.Signed.Manifest
		if res.Files != 4 {
			t.Fatalf("%s: %d files, want 4", name, res.Files)
		}
		got := map[string]Entry{}
		for _, e := range m.Entries {
			got[e.Path] = e
		}
		if got["a/run"].Mode != 0o755 || got["a/link"].Target != "x.php" || got["b/c"].Type != TypeDir || got["a/hard"].Size != 14 {
			t.Fatalf("%s: unexpected entries %+v", name, m.Entries)
		}
	}
	for _, id := range ids[1:] {
		if id != ids[0] {
			t.Fatalf("the same tree in different containers gave different releases: %v", ids)
		}
	}
}

func TestBuildRejectsBadTarballs(t *testing.T) {
	file := func(name string) tarEnt { return tarEnt{name: name, typ: tar.TypeReg, body: []byte("x")} }
	cases := []struct {
		name string
		ents []tarEnt
		want string
	}{
		{"dotdot", []tarEnt{file("a/../../etc/passwd")}, "escapes the tree"},
		{"dotdot-leading", []tarEnt{file("../x")}, "escapes the tree"},
		{"absolute", []tarEnt{file("/etc/passwd")}, "absolute path"},
		{"symlink-absolute", []tarEnt{{name: "l", typ: tar.TypeSymlink, linkname: "/etc/passwd"}}, "points outside the release tree"},
		{"symlink-escape", []tarEnt{{name: "a/l", typ: tar.TypeSymlink, linkname: "../../etc"}}, "points outside the release tree"},
		{"symlink-chain-escape", []tarEnt{
			{name: "x/d", typ: tar.TypeSymlink, linkname: ".."},
			{name: "x/e", typ: tar.TypeSymlink, linkname: "d/../.."},
		}, "points outside the release tree"},
		{"symlink-parent", []tarEnt{{name: "l", typ: tar.TypeSymlink, linkname: "a"}, file("l/x")}, "not a directory"},
		{"hardlink-outside", []tarEnt{{name: "h", typ: tar.TypeLink, linkname: "../etc/shadow"}}, "hard link points outside"},
		{"hardlink-absolute", []tarEnt{{name: "h", typ: tar.TypeLink, linkname: "/etc/shadow"}}, "hard link points outside"},
		{"hardlink-unknown", []tarEnt{{name: "h", typ: tar.TypeLink, linkname: "later"}, file("later")}, "not an earlier file"},
		{"device", []tarEnt{{name: "dev", typ: tar.TypeChar}}, "device node"},
		{"block-device", []tarEnt{{name: "dev", typ: tar.TypeBlock}}, "device node"},
		{"fifo", []tarEnt{{name: "p", typ: tar.TypeFifo}}, "FIFO"},
		{"setuid", []tarEnt{{name: "su", typ: tar.TypeReg, mode: 0o4755, body: []byte("x")}}, "setuid/setgid"},
		{"setgid", []tarEnt{{name: "sg", typ: tar.TypeReg, mode: 0o2755, body: []byte("x")}}, "setuid/setgid"},
		{"world-writable-file", []tarEnt{{name: "w", typ: tar.TypeReg, mode: 0o666, body: []byte("x")}}, "w: world-writable (mode 0666)"},
		{"world-writable-dir", []tarEnt{{name: "d/", typ: tar.TypeDir, mode: 0o777}}, "d: world-writable (mode 0777)"},
		{"duplicate", []tarEnt{file("a"), file("a")}, "duplicate entry"},
		{"duplicate-dir", []tarEnt{{name: "d/", typ: tar.TypeDir}, {name: "d/", typ: tar.TypeDir}}, "duplicate entry"},
		{"file-then-child", []tarEnt{file("a"), file("a/b")}, "not a directory"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := newStore(t)
			src := writeFile(t, filepath.Join(t.TempDir(), "r.tar"), makeTar(t, c.ents))
			_, err := Build(context.Background(), st, src, newKey(t), opts("mw", "1"))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got error %v, want one containing %q", err, c.want)
			}
			if ids, _ := st.ReleaseIDs(); len(ids) != 0 {
				t.Fatal("a failed build stored a manifest")
			}
		})
	}
}

func TestBuildRejectsDamagedStreams(t *testing.T) {
	raw := makeTar(t, goodTar)
	gzd, zsd := gz(t, raw), zst(t, raw)
	corrupt := func(b []byte) []byte {
		c := bytes.Clone(b)
		for i := len(c) / 2; i < len(c)/2+16 && i < len(c); i++ {
			c[i] ^= 0x5a
		}
		return c
	}
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"truncated-tar", raw[:1000], "truncated"},
		{"truncated-gzip", gzd[:len(gzd)/2], "truncated"},
		{"truncated-zstd", zsd[:len(zsd)/2], "tar.zst"},
		{"corrupt-gzip", corrupt(gzd), "tar.gz"},
		{"corrupt-zstd", corrupt(zsd), "tar.zst"},
		{"not-a-tar", bytes.Repeat([]byte("hello world\n"), 100), "tar"},
		{"empty", nil, "empty input"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := newStore(t)
			src := writeFile(t, filepath.Join(t.TempDir(), "r.tar"), c.data)
			_, err := Build(context.Background(), st, src, newKey(t), opts("mw", "1"))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got error %v, want one containing %q", err, c.want)
			}
			if ids, _ := st.ReleaseIDs(); len(ids) != 0 {
				t.Fatal("a failed build stored a manifest")
			}
		})
	}
}

func TestDecompressionBombLimits(t *testing.T) {
	zeros := make([]byte, 80<<20) // compresses about 1000:1
	bomb := gz(t, makeTar(t, []tarEnt{{name: "zeros", typ: tar.TypeReg, body: zeros}}))
	src := writeFile(t, filepath.Join(t.TempDir(), "bomb.tar.gz"), bomb)

	o := opts("mw", "1")
	_, err := Build(context.Background(), newStore(t), src, newKey(t), o)
	if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "decompression bomb") {
		t.Fatalf("default ratio limit: got %v", err)
	}
	o.Limits = Limits{MaxExpanded: 10 << 20, MaxRatio: 1e6}
	_, err = Build(context.Background(), newStore(t), src, newKey(t), o)
	if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "expands to more than 10485760 bytes") {
		t.Fatalf("size limit: got %v", err)
	}
	o.Limits = Limits{MaxRatio: 1e6} // limits raised: the same tarball builds
	if _, err := Build(context.Background(), newStore(t), src, newKey(t), o); err != nil {
		t.Fatalf("raised limits: %v", err)
	}
}

func TestBuildRejectsSpecialFilesInDirectory(t *testing.T) {
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "ok"), []byte("x"))
	if err := mkfifo(filepath.Join(src, "pipe")); err != nil {
		t.Skip("mkfifo:", err)
	}
	_, err := Build(context.Background(), newStore(t), src, newKey(t), opts("mw", "1"))
	if err == nil || !strings.Contains(err.Error(), "FIFO") {
		t.Fatalf("got %v, want a FIFO error", err)
	}
	os.Remove(filepath.Join(src, "pipe"))
	writeFile(t, filepath.Join(src, "suid"), []byte("x"))
	if err := os.Chmod(filepath.Join(src, "suid"), 0o755|os.ModeSetuid); err != nil {
		t.Fatal(err)
	}
	_, err = Build(context.Background(), newStore(t), src, newKey(t), opts("mw", "1"))
	if err == nil || !strings.Contains(err.Error(), "setuid") {
		t.Fatalf("got %v, want a setuid error", err)
	}
}
