package gen

import (
	"bytes"
	"compress/flate"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// snapshot maps every entry of a tree to a digest of its type, mode and
// content (or link target).
func snapshot(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		h := sha256.New()
		fmt.Fprintf(h, "%v\n", info.Mode())
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			h.Write([]byte(target))
		case d.Type().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h.Write(b)
		}
		out[filepath.ToSlash(rel)] = hex.EncodeToString(h.Sum(nil))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// treeHash folds a snapshot into one digest.
func treeHash(snap map[string]string) string {
	h := sha256.New()
	for _, k := range sortedKeys(snap) {
		fmt.Fprintf(h, "%s %s\n", k, snap[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// changed lists entries whose digest differs, including added or removed ones.
func changed(before, after map[string]string) []string {
	var out []string
	for k, v := range after {
		if before[k] != v {
			out = append(out, k)
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

func generate(t testing.TB, cfg Config) (string, Stats) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tree")
	st, err := Generate(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return dir, st
}

func isL10n(rel string) bool { return strings.HasPrefix(rel, "cache/l10n/l10n_cache-") }

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		cfg Config
		ok  bool
	}{
		{Config{}, true},
		{Config{TotalBytes: 8 << 20, Languages: 12}, true},
		{Config{TotalBytes: -1}, false},
		{Config{TotalBytes: 1000}, false},
		{Config{Languages: -3}, false},
		{Config{Languages: maxLanguages + 1}, false},
		{Config{TotalBytes: 1 << 20, Languages: 4000}, false},
	} {
		err := c.cfg.Validate()
		if (err == nil) != c.ok {
			t.Errorf("Validate(%+v) = %v, want ok=%v", c.cfg, err, c.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("Validate(%+v) = %v, does not wrap ErrInvalidConfig", c.cfg, err)
		}
		if !c.ok {
			if _, gerr := Generate(filepath.Join(t.TempDir(), "x"), c.cfg); gerr == nil {
				t.Errorf("Generate(%+v) succeeded", c.cfg)
			}
		}
	}
}

func TestGenerateRefusesNonEmptyDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Generate(dir, Config{TotalBytes: 1 << 20}); err == nil {
		t.Fatal("Generate into a non-empty directory succeeded")
	}
}

// TestDeterminismAndMutations generates the same tree twice, checks they are
// identical, then mutates both and checks the mutations are deterministic
// and touch only what they should.
func TestDeterminismAndMutations(t *testing.T) {
	cfg := Config{Seed: 42, TotalBytes: 4 << 20}
	a, stA := generate(t, cfg)
	b, stB := generate(t, cfg)
	c, _ := generate(t, Config{Seed: 43, TotalBytes: 4 << 20})
	snapA, snapB := snapshot(t, a), snapshot(t, b)
	if stA != stB || treeHash(snapA) != treeHash(snapB) {
		t.Fatalf("same seed produced different trees: %+v vs %+v, %d changed entries", stA, stB, len(changed(snapA, snapB)))
	}
	if treeHash(snapA) == treeHash(snapshot(t, c)) {
		t.Fatal("different seeds produced identical trees")
	}

	var php, l10n []string
	for rel := range snapA {
		switch {
		case strings.HasSuffix(rel, ".php") && rel != definesPath:
			php = append(php, rel)
		case isL10n(rel):
			l10n = append(l10n, rel)
		}
	}

	// Mutation (a): code change.
	var mstA MutationStats
	for i, dir := range []string{a, b} {
		mst, err := MutateCode(dir, 7)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			mstA = mst
		} else if mst != mstA {
			t.Fatalf("MutateCode stats differ between identical trees: %+v vs %+v", mstA, mst)
		}
	}
	codeA := snapshot(t, a)
	if treeHash(codeA) != treeHash(snapshot(t, b)) {
		t.Fatal("MutateCode is not deterministic")
	}
	diff := changed(snapA, codeA)
	want := max(1, (len(php)+50)/100)
	if len(diff) != want+1 || mstA.FilesChanged != want+1 {
		t.Errorf("MutateCode changed %d files (stats %d), want %d PHP files + %s", len(diff), mstA.FilesChanged, want, definesPath)
	}
	sawDefines := false
	for _, rel := range diff {
		sawDefines = sawDefines || rel == definesPath
		if !strings.HasSuffix(rel, ".php") {
			t.Errorf("MutateCode changed non-PHP file %s", rel)
		}
	}
	if !sawDefines {
		t.Errorf("MutateCode did not bump %s", definesPath)
	}
	if mstA.BytesChanged <= 0 || mstA.BytesChanged > int64(want+1)*2000 {
		t.Errorf("MutateCode BytesChanged = %d, implausible for %d files", mstA.BytesChanged, want+1)
	}

	// Mutation (b): localisation update.
	for _, dir := range []string{a, b} {
		mst, err := MutateL10n(dir, 9)
		if err != nil {
			t.Fatal(err)
		}
		if mst.FilesChanged != len(l10n) {
			t.Errorf("MutateL10n reports %d files changed, want %d", mst.FilesChanged, len(l10n))
		}
	}
	l10nA := snapshot(t, a)
	if treeHash(l10nA) != treeHash(snapshot(t, b)) {
		t.Fatal("MutateL10n is not deterministic")
	}
	diff = changed(codeA, l10nA)
	if len(diff) != len(l10n) {
		t.Errorf("MutateL10n changed %d files, want all %d language files", len(diff), len(l10n))
	}
	for _, rel := range diff {
		if !isL10n(rel) {
			t.Errorf("MutateL10n changed %s", rel)
		}
	}
	for _, rel := range l10n {
		checkL10nFile(t, filepath.Join(a, rel))
	}

	// Some seeds add a message to every language; make sure that path runs
	// and keeps the files valid.
	en := filepath.Join(a, "cache", "l10n", "l10n_cache-en.json")
	base := len(checkL10nFile(t, en))
	added := false
	for seed := uint64(100); seed < 106; seed++ {
		if _, err := MutateL10n(a, seed); err != nil {
			t.Fatal(err)
		}
		n := len(checkL10nFile(t, en))
		added = added || n > base
		base = n
	}
	if !added {
		t.Error("no MutateL10n seed in 100..105 added a message")
	}
}

// checkL10nFile verifies a cache file is valid JSON with sorted message
// keys, and returns its messages.
func checkL10nFile(t *testing.T, name string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Lang     string            `json:"lang"`
		Messages map[string]string `json:"messages"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if len(doc.Messages) < minMessages {
		t.Errorf("%s: only %d messages", name, len(doc.Messages))
	}
	_, body, _ := strings.Cut(string(data), `"messages": {`)
	prev := ""
	for _, line := range strings.Split(body, "\n") {
		key, _, ok := strings.Cut(strings.TrimPrefix(line, "\t\t\""), `": "`)
		if !ok {
			continue
		}
		if key <= prev {
			t.Errorf("%s: key %q after %q", name, key, prev)
		}
		prev = key
	}
	return doc.Messages
}

func TestManyLanguages(t *testing.T) {
	dir, _ := generate(t, Config{Seed: 5, TotalBytes: 4 << 20, Languages: 200})
	entries, err := os.ReadDir(filepath.Join(dir, "cache", "l10n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 200 {
		t.Fatalf("%d language files, want 200", len(entries))
	}
	for _, e := range entries[:10] {
		checkL10nFile(t, filepath.Join(dir, "cache", "l10n", e.Name()))
	}
}

func TestShape(t *testing.T) {
	for _, total := range []int64{8 << 20, 32 << 20} {
		t.Run(fmt.Sprint(total>>20, "MiB"), func(t *testing.T) {
			if testing.Short() && total > 8<<20 {
				t.Skip("large tree skipped in -short mode")
			}
			dir, st := generate(t, Config{Seed: 1, TotalBytes: total})
			checkShape(t, dir, st, total)
		})
	}
}

func checkShape(t *testing.T, dir string, st Stats, total int64) {
	var code, l10n, assets, sum int64
	var files, dirs, links, langs int
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			dirs++
			if info.Mode().Perm() != 0o755 {
				t.Errorf("%s: mode %v, want 0755", rel, info.Mode())
			}
		case d.Type()&fs.ModeSymlink != 0:
			links++
			target, _ := os.Readlink(p)
			if filepath.IsAbs(target) {
				t.Errorf("%s: absolute symlink %s", rel, target)
			}
			if _, err := os.Stat(p); err != nil {
				t.Errorf("%s: dangling symlink: %v", rel, err)
			}
		default:
			files++
			size := info.Size()
			sum += size
			wantMode := fs.FileMode(0o644)
			if strings.HasSuffix(rel, ".sh") {
				wantMode = 0o755
			}
			if info.Mode().Perm() != wantMode {
				t.Errorf("%s: mode %v, want %v", rel, info.Mode(), wantMode)
			}
			switch {
			case isL10n(rel):
				l10n += size
				langs++
			case strings.HasPrefix(rel, "resources/assets/"):
				assets += size
			default:
				code += size
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if st.Files != files || st.Dirs != dirs || st.Symlinks != links || st.Bytes != sum {
		t.Errorf("Stats %+v disagree with walk: files %d dirs %d links %d bytes %d", st, files, dirs, links, sum)
	}
	if sum < total*8/10 || sum > total*12/10 {
		t.Errorf("tree is %d bytes, want %d ±20%%", sum, total)
	}
	for _, c := range []struct {
		name     string
		n        int64
		min, max float64
	}{{"code", code, 0.28, 0.42}, {"l10n", l10n, 0.52, 0.68}, {"assets", assets, 0.02, 0.10}} {
		if f := float64(c.n) / float64(sum); f < c.min || f > c.max {
			t.Errorf("%s is %.1f%% of the tree, want %.0f–%.0f%%", c.name, 100*f, 100*c.min, 100*c.max)
		}
	}
	if want := defaultLanguages(total); langs != want {
		t.Errorf("%d language files, want %d", langs, want)
	}
	if target, err := os.Readlink(filepath.Join(dir, "skins", "default")); err != nil || target != "Vector" {
		t.Errorf("skins/default -> %q, %v; want Vector", target, err)
	}
	if entries, err := os.ReadDir(filepath.Join(dir, "images")); err != nil || len(entries) != 0 {
		t.Errorf("images/ should be an empty directory: %v, %d entries", err, len(entries))
	}
	t.Logf("%d files, %d dirs, %d bytes: code %d, l10n %d (%d langs), assets %d", files, dirs, sum, code, l10n, langs, assets)
}

// TestCompressibility uses flate as a stand-in for zstd: code and text
// should compress like real code and text, neither like noise nor like
// repeated boilerplate.
func TestCompressibility(t *testing.T) {
	dir, _ := generate(t, Config{Seed: 3, TotalBytes: 4 << 20})
	ratio := func(match func(string) bool) float64 {
		var raw, packed int64
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() || !match(filepath.ToSlash(p)) {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			var buf bytes.Buffer
			w, _ := flate.NewWriter(&buf, flate.DefaultCompression)
			w.Write(b)
			w.Close()
			raw += int64(len(b))
			packed += int64(buf.Len())
			return nil
		})
		return float64(raw) / float64(packed)
	}
	code := ratio(func(p string) bool { return strings.HasSuffix(p, ".php") })
	l10n := ratio(func(p string) bool { return strings.Contains(p, "/l10n_cache-") })
	assets := ratio(func(p string) bool { return strings.Contains(p, "/resources/assets/") })
	t.Logf("flate ratios: code %.2f, l10n %.2f, assets %.3f", code, l10n, assets)
	if code < 2.5 || code > 8 {
		t.Errorf("code compresses %.2fx, want 2.5–8x", code)
	}
	if l10n < 2 || l10n > 8 {
		t.Errorf("l10n compresses %.2fx, want 2–8x", l10n)
	}
	if assets > 1.01 {
		t.Errorf("assets compress %.3fx, want incompressible", assets)
	}
}

// BenchmarkGenerate measures end-to-end throughput into TMPDIR. Trees are
// kept until the benchmark ends: deleting thousands of files right before
// creating more makes some filesystems (ext4 without a journal) scan their
// recently-deleted inodes on every create, which would measure the disk's
// bookkeeping rather than the generator.
func BenchmarkGenerate(b *testing.B) {
	root := b.TempDir()
	cfg := Config{Seed: 1, TotalBytes: 64 << 20}
	for i := 0; b.Loop(); i++ {
		st, err := Generate(filepath.Join(root, fmt.Sprint(i)), cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(st.Bytes)
	}
}
