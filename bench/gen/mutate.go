package gen

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// MutateCode applies a typical code deploy to the tree at dir: about 1% of
// the PHP files (at least one) get a few lines edited, inserted or deleted,
// and the MW_VERSION string in includes/Defines.php is bumped. The result
// depends only on the tree's contents and seed.
func MutateCode(dir string, seed uint64) (MutationStats, error) {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && strings.HasSuffix(p, ".php") {
			rel, err := filepath.Rel(dir, p)
			if err != nil {
				return err
			}
			if rel = filepath.ToSlash(rel); rel != definesPath {
				files = append(files, rel)
			}
		}
		return nil
	})
	if err != nil {
		return MutationStats{}, fmt.Errorf("gen: mutate code: %w", err)
	}
	if len(files) == 0 {
		return MutationStats{}, fmt.Errorf("gen: mutate code: no PHP files under %s", dir)
	}
	// Check the version file first so a tree without one is left untouched.
	defines, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(definesPath)))
	if err != nil {
		return MutationStats{}, fmt.Errorf("gen: mutate code: %w", err)
	}
	if !versionRE.Match(defines) {
		return MutationStats{}, fmt.Errorf("gen: mutate code: no MW_VERSION in %s", definesPath)
	}

	var st MutationStats
	for _, rel := range pickFiles(files, seed, max(1, (len(files)+50)/100)) {
		n, err := rewrite(dir, rel, func(data []byte) ([]byte, int64) {
			return editCode(data, rngFor(seed, "mutate-code", rel))
		})
		if err != nil {
			return st, fmt.Errorf("gen: mutate code: %w", err)
		}
		st.FilesChanged++
		st.BytesChanged += n
	}
	n, err := rewrite(dir, definesPath, bumpVersion)
	if err != nil {
		return st, fmt.Errorf("gen: mutate code: %w", err)
	}
	st.FilesChanged++
	st.BytesChanged += n
	return st, nil
}

// pickFiles chooses n files by ranking them on a seeded hash of their path,
// which makes the choice independent of walk order.
func pickFiles(files []string, seed uint64, n int) []string {
	type ranked struct {
		rank uint64
		path string
	}
	rs := make([]ranked, len(files))
	for i, f := range files {
		h, _ := seedFor(seed, "pick", f)
		rs[i] = ranked{h, f}
	}
	slices.SortFunc(rs, func(a, b ranked) int {
		return cmp.Or(cmp.Compare(a.rank, b.rank), strings.Compare(a.path, b.path))
	})
	out := make([]string, 0, n)
	for _, r := range rs[:min(n, len(rs))] {
		out = append(out, r.path)
	}
	return out
}

// rewrite replaces a file's contents via edit, keeping its mode. edit
// returns the new contents and how many bytes it touched.
func rewrite(dir, rel string, edit func([]byte) ([]byte, int64)) (int64, error) {
	name := filepath.Join(dir, filepath.FromSlash(rel))
	fi, err := os.Stat(name)
	if err != nil {
		return 0, err
	}
	data, err := os.ReadFile(name)
	if err != nil {
		return 0, err
	}
	out, n := edit(data)
	if bytes.Equal(out, data) {
		return 0, fmt.Errorf("%s: edit left the file unchanged", rel)
	}
	return n, os.WriteFile(name, out, fi.Mode().Perm())
}

var identRE = regexp.MustCompile(`[A-Za-z_][A-Za-z0-9_]{3,}`)

// editCode applies 1–3 edits at random places. New code is assembled from
// identifiers already in the file, so the patch looks like it belongs.
func editCode(data []byte, r *rng) ([]byte, int64) {
	lines := bytes.SplitAfter(data, []byte("\n"))
	idents := identRE.FindAll(data, 400)
	if len(idents) == 0 {
		idents = [][]byte{[]byte("value")}
	}
	pick := func() []byte { return idents[r.intn(len(idents))] }
	var touched int64
	for ops := r.between(1, 3); ops > 0; ops-- {
		at := 1 + r.intn(max(len(lines)-1, 1)) // never touch the "<?php" line
		at = min(at, len(lines))
		switch op := r.intn(3); {
		case op == 0 && at < len(lines): // edit a few lines in place
			for i := at; i < min(at+r.between(1, 3), len(lines)); i++ {
				line := lines[i]
				old, repl := identRE.Find(line), pick()
				var edited []byte
				if old != nil && !bytes.Equal(old, repl) {
					edited = bytes.Replace(line, old, repl, 1)
				}
				if edited == nil || bytes.Equal(edited, line) {
					trimmed := bytes.TrimRight(line, "\n")
					edited = append(append(append([]byte(nil), trimmed...), " // "...), pick()...)
					edited = append(edited, '\n')
				}
				lines[i] = edited
				touched += int64(len(edited))
			}
		case op == 1 && len(lines) > 10: // delete a few lines
			end := min(at+r.between(1, 3), len(lines))
			for _, l := range lines[at:end] {
				touched += int64(len(l))
			}
			lines = slices.Delete(lines, at, end)
		default: // insert a few lines
			indent := []byte("\t\t")
			if at < len(lines) {
				line := lines[at]
				indent = line[:len(line)-len(bytes.TrimLeft(line, "\t "))]
			}
			var add [][]byte
			for n := r.between(1, 4); n > 0; n-- {
				var b []byte
				b = append(b, indent...)
				b = append(b, '$')
				b = append(b, pick()...)
				b = append(b, " = $this->"...)
				b = append(b, pick()...)
				b = append(b, "( $"...)
				b = append(b, pick()...)
				b = append(b, " );\n"...)
				add = append(add, b)
				touched += int64(len(b))
			}
			lines = slices.Insert(lines, at, add...)
		}
	}
	out := bytes.Join(lines, nil)
	if bytes.Equal(out, data) { // deletions and insertions can cancel out
		out = append(out, "// "...)
		out = append(out, pick()...)
		out = append(out, '\n')
	}
	return out, touched
}

var versionRE = regexp.MustCompile(`(define\( 'MW_VERSION', '\d+\.\d+\.)(\d+)`)

// bumpVersion increments the patch level of MW_VERSION.
func bumpVersion(data []byte) ([]byte, int64) {
	m := versionRE.FindSubmatchIndex(data)
	if m == nil {
		return data, 0 // rewrite reports the unchanged file
	}
	patch, err := strconv.Atoi(string(data[m[4]:m[5]]))
	if err != nil {
		return data, 0
	}
	next := strconv.Itoa(patch + 1)
	out := slices.Concat(data[:m[4]], []byte(next), data[m[5]:])
	lineStart := bytes.LastIndexByte(data[:m[0]], '\n') + 1
	lineEnd := m[5] + max(bytes.IndexByte(data[m[5]:], '\n'), 0)
	return out, int64(lineEnd - lineStart + len(next) - (m[5] - m[4]))
}

// MutateL10n applies a typical localisation update: every language file in
// cache/l10n gets 3–6 message values rewritten and, for some seeds, one new
// message (the same key in every language). The result depends only on the
// tree's contents and seed.
func MutateL10n(dir string, seed uint64) (MutationStats, error) {
	entries, err := os.ReadDir(filepath.Join(dir, "cache", "l10n"))
	if err != nil {
		return MutationStats{}, fmt.Errorf("gen: mutate l10n: %w", err)
	}
	var files []string
	for _, e := range entries {
		if e.Type().IsRegular() && strings.HasPrefix(e.Name(), "l10n_cache-") && strings.HasSuffix(e.Name(), ".json") {
			files = append(files, "cache/l10n/"+e.Name())
		}
	}
	if len(files) == 0 {
		return MutationStats{}, fmt.Errorf("gen: mutate l10n: no language files under %s", dir)
	}
	r := rngFor(seed, "mutate-l10n", "")
	var newKey string
	if r.percent(50) {
		newKey = strings.Join([]string{keyPrefixes[r.intn(len(keyPrefixes))],
			codeParts[r.intn(len(codeParts))], codeParts[r.intn(len(codeParts))]}, "-")
	}

	var (
		mu   sync.Mutex
		st   MutationStats
		errs []error
		wg   sync.WaitGroup
	)
	jobs := make(chan string)
	for range min(max(runtime.GOMAXPROCS(0), 2), 4) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for rel := range jobs {
				n, err := rewrite(dir, rel, func(data []byte) ([]byte, int64) {
					return editL10n(data, rngFor(seed, "mutate-l10n", rel), newKey)
				})
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					st.FilesChanged++
					st.BytesChanged += n
				}
				mu.Unlock()
			}
		}()
	}
	for _, f := range files {
		jobs <- f
	}
	close(jobs)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return st, fmt.Errorf("gen: mutate l10n: %w", err)
	}
	return st, nil
}

// A message line is `\t\t"key": "value"` plus an optional comma; values never
// contain quotes, which keeps parsing trivial.
var (
	msgSep = []byte(`": "`)
	msgEnd = []byte("\t}")
)

// editL10n rewrites 3–6 message values with words harvested from the file
// itself (its language's vocabulary) and optionally inserts newKey.
func editL10n(data []byte, r *rng, newKey string) ([]byte, int64) {
	lines := bytes.SplitAfter(data, []byte("\n"))
	first := slices.IndexFunc(lines, func(l []byte) bool { return bytes.HasPrefix(l, []byte("\t\"messages\": {")) }) + 1
	if first == 0 {
		return data, 0
	}
	last := first // one past the last message line
	for last < len(lines) && !bytes.HasPrefix(lines[last], msgEnd) {
		last++
	}
	if last == first {
		return data, 0
	}
	msgs := slices.Clip(lines[first:last]) // growing msgs must not overwrite lines[last:]

	var pool [][]byte // words of this language, sampled from its messages
	for range 64 {
		_, val, _ := splitMessage(msgs[r.intn(len(msgs))])
		for _, w := range bytes.Fields(val) {
			if !bytes.ContainsAny(w, "$[]{}<>|") {
				pool = append(pool, w)
			}
		}
	}
	if len(pool) == 0 {
		pool = [][]byte{[]byte("x")}
	}
	newValue := func(old []byte) []byte {
		words := bytes.Fields(old)
		var out [][]byte
		for _, w := range words {
			if r.percent(50) && !bytes.ContainsAny(w, "$[]{}<>|") {
				w = pool[r.intn(len(pool))]
			}
			out = append(out, w)
		}
		if r.percent(30) || len(out) == 0 {
			out = append(out, pool[r.intn(len(pool))])
		}
		v := bytes.Join(out, []byte(" "))
		if bytes.Equal(v, old) {
			v = append(v, " "...)
			v = append(v, pool[r.intn(len(pool))]...)
		}
		return v
	}

	var touched int64
	for _, i := range r.sample(len(msgs), r.between(3, 6)) {
		key, val, comma := splitMessage(msgs[i])
		msgs[i] = messageLine(key, newValue(val), comma)
		touched += int64(len(msgs[i]))
	}
	if newKey != "" {
		at, found := slices.BinarySearchFunc(msgs, newKey, func(l []byte, k string) int {
			key, _, _ := splitMessage(l)
			return bytes.Compare(key, []byte(k))
		})
		_, val, _ := splitMessage(msgs[r.intn(len(msgs))])
		switch {
		case found:
			key, _, comma := splitMessage(msgs[at])
			msgs[at] = messageLine(key, newValue(val), comma)
		case at == len(msgs): // new last entry: the previous one gains a comma
			key, v, _ := splitMessage(msgs[at-1])
			msgs[at-1] = messageLine(key, v, true)
			msgs = append(msgs, messageLine([]byte(newKey), newValue(val), false))
		default:
			msgs = slices.Insert(msgs, at, messageLine([]byte(newKey), newValue(val), true))
		}
		touched += int64(len(msgs[at]))
	}
	return bytes.Join(slices.Concat(lines[:first], msgs, lines[last:]), nil), touched
}

func splitMessage(line []byte) (key, val []byte, comma bool) {
	line = bytes.TrimSuffix(line, []byte("\n"))
	comma = bytes.HasSuffix(line, []byte(","))
	line = bytes.TrimSuffix(line, []byte(","))
	line = bytes.TrimSuffix(bytes.TrimPrefix(line, []byte("\t\t\"")), []byte(`"`))
	key, val, _ = bytes.Cut(line, msgSep)
	return key, val, comma
}

func messageLine(key, val []byte, comma bool) []byte {
	b := make([]byte, 0, len(key)+len(val)+10)
	b = append(b, "\t\t\""...)
	b = append(b, key...)
	b = append(b, msgSep...)
	b = append(b, val...)
	b = append(b, '"')
	if comma {
		b = append(b, ',')
	}
	return append(b, '\n')
}
