package artifact

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/ed25519"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

var fixedTime = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func newKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return priv
}

func newStore(t testing.TB) *Store {
	t.Helper()
	st, err := OpenStore(filepath.Join(t.TempDir(), "store"), nil)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func opts(repo, version string) BuildOptions {
	return BuildOptions{Repo: repo, Version: version, Builder: "test@host", Message: "test", Time: fixedTime}
}

// pseudoText returns n bytes of compressible text that does not repeat.
func pseudoText(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	words := []string{"function", "return", "$this->", "array(", "'message'", "=>", "if", "else", "null", "true", "foreach", "as", "public", "static", "private"}
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[r.IntN(len(words))])
		if r.IntN(8) == 0 {
			b.WriteString("\n\t")
		} else {
			b.WriteByte(' ')
		}
		if r.IntN(5) == 0 {
			b.WriteString(hex.EncodeToString([]byte{byte(r.Uint32()), byte(r.Uint32())}))
		}
	}
	return b.Bytes()[:n]
}

// writeTree creates a small tree with every entry kind under dir.
func writeTree(t testing.TB, dir string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "includes/api"), 0o755))
	must(os.MkdirAll(filepath.Join(dir, "skins/Vector"), 0o755))
	must(os.MkdirAll(filepath.Join(dir, "cache/empty"), 0o750))
	must(os.WriteFile(filepath.Join(dir, "includes/Setup.php"), pseudoText(1, 20000), 0o644))
	must(os.WriteFile(filepath.Join(dir, "includes/api/ApiMain.php"), pseudoText(2, 300000), 0o644))
	must(os.WriteFile(filepath.Join(dir, "includes/api/Copy.php"), pseudoText(2, 300000), 0o644)) // dedupes
	must(os.WriteFile(filepath.Join(dir, "skins/Vector/skin.json"), pseudoText(3, 900), 0o644))
	must(os.WriteFile(filepath.Join(dir, "run.sh"), []byte("#!/bin/sh\necho hi\n"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "empty.txt"), nil, 0o644))
	must(os.Symlink("Vector", filepath.Join(dir, "skins/default")))
	must(os.Symlink("../includes/Setup.php", filepath.Join(dir, "skins/setup-link")))
}

// treeDigest summarises a tree: every path, type, mode, symlink target and
// content. Two trees with equal digests are identical for diff -r and more.
func treeDigest(t testing.TB, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		line := rel + " " + info.Mode().String()
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			line += " -> " + target
		case info.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			line += " " + hex.EncodeToString(sum[:])
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

type tarEnt struct {
	name     string
	typ      byte
	mode     int64
	body     []byte
	linkname string
}

func makeTar(t testing.TB, ents []tarEnt) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Size: int64(len(e.body)), Linkname: e.linkname, Format: tar.FormatPAX}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			if _, err := tw.Write(e.body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func writeFile(t testing.TB, path string, data []byte) string {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func build(t testing.TB, st *Store, src string, key ed25519.PrivateKey, o BuildOptions) *BuildResult {
	t.Helper()
	res, err := Build(context.Background(), st, src, key, o)
	if err != nil {
		t.Fatal(err)
	}
	return res
}
