package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Error is one problem in a config file, located by the path of keys that
// leads to it and, when it came from a file, the line.
type Error struct {
	File string // the name given to Parse…; "" when the error came from Validate
	Line int    // 1-based; 0 when unknown
	Path string // keys from the top, such as "hosts.select.dc" or "hooks.prepare[1]"; "" for the whole file
	Err  error
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	} else if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// readError is a config file that could not be read, as an *Error: the
// file's name once, then why (errors.Is(err, fs.ErrNotExist) still holds).
func readError(file string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = fmt.Errorf("cannot %s: %w", pe.Op, pe.Err)
	}
	return &Error{File: file, Err: err}
}

// nodeBudget bounds how many nodes one file may expand to. Aliases are not
// expanded by the YAML parser, so a small file of nested aliases could
// otherwise make the walk below take exponential time.
const nodeBudget = 1 << 20

// decoder walks a yaml.Node tree. It records where each key path is, so that
// the one set of checks in validate can report lines, and it collects every
// problem instead of stopping at the first.
type decoder struct {
	file   string
	errs   []*Error
	bad    map[string]bool // paths that failed to decode; validate stays quiet about them
	pos    map[string]int  // key path → line of its key
	budget int
}

func newDecoder(file string) *decoder {
	return &decoder{file: file, bad: map[string]bool{}, pos: map[string]int{}, budget: nodeBudget}
}

// parse reads exactly one YAML document. It returns nil for an empty file.
func (d *decoder) parse(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		d.syntax(err)
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		d.errs = append(d.errs, &Error{File: d.file, Line: extra.Line, Err: errors.New("more than one YAML document; want one")})
		return nil
	} else if !errors.Is(err, io.EOF) {
		d.syntax(err)
		return nil
	}
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		return doc.Content[0]
	}
	return nil
}

var syntaxLine = regexp.MustCompile(`^yaml: line (\d+): `)

// syntax turns the parser's "yaml: line N: msg" into this package's form.
func (d *decoder) syntax(err error) {
	msg := err.Error()
	line := 0
	if m := syntaxLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	d.errs = append(d.errs, &Error{File: d.file, Line: line, Err: fmt.Errorf("invalid YAML: %s", msg)})
}

func (d *decoder) failf(n *yaml.Node, path, format string, args ...any) {
	d.fail(n, path, fmt.Errorf(format, args...))
}

func (d *decoder) fail(n *yaml.Node, path string, err error) {
	line := 0
	if n != nil {
		line = n.Line
	}
	d.bad[path] = true
	d.errs = append(d.errs, &Error{File: d.file, Line: line, Path: path, Err: err})
}

// resolve follows aliases and spends the node budget; nil means stop.
func (d *decoder) resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	if n == nil || n.Kind == yaml.AliasNode {
		return nil
	}
	d.budget--
	if d.budget == 0 {
		d.fail(n, "", errors.New("file expands to too many nodes (aliases?)"))
	}
	if d.budget <= 0 {
		return nil
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func kind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "nothing"
		case "!!bool":
			return "a boolean"
		case "!!int", "!!float":
			return "a number"
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

type pair struct{ key, value *yaml.Node }

// pairs lists a mapping's entries with merge keys (<<) applied: an explicit
// key wins over a merged one, and the first merged source wins over later ones.
func (d *decoder) pairs(n *yaml.Node, path string) []pair {
	var out, merged []pair
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merged = append(merged, d.mergeSources(v, path)...)
			continue
		}
		if k.Kind != yaml.ScalarNode || isNull(k) {
			// Not marked bad: that would silence every check of the parent.
			d.errs = append(d.errs, &Error{File: d.file, Line: k.Line, Path: path, Err: fmt.Errorf("key is %s; want a name", kind(k))})
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.failf(k, join(path, k.Value), "duplicate key (first at line %d)", first.Line)
			continue
		}
		seen[k.Value] = k
		out = append(out, pair{k, v})
	}
	for _, p := range merged {
		if _, dup := seen[p.key.Value]; !dup {
			seen[p.key.Value] = p.key
			out = append(out, p)
		}
	}
	return out
}

func (d *decoder) mergeSources(v *yaml.Node, path string) []pair {
	v = d.resolve(v)
	if v == nil {
		return nil
	}
	switch v.Kind {
	case yaml.MappingNode:
		return d.pairs(v, path)
	case yaml.SequenceNode:
		var out []pair
		for _, m := range v.Content {
			if m = d.resolve(m); m != nil && m.Kind == yaml.MappingNode {
				out = append(out, d.pairs(m, path)...)
			} else if m != nil {
				d.failf(m, path, "merge (<<) of %s; want a mapping", kind(m))
			}
		}
		return out
	}
	d.failf(v, path, "merge (<<) of %s; want a mapping", kind(v))
	return nil
}

// field decodes the value of one known key; path is the key's own path.
type field func(v *yaml.Node, path string)

// fields decodes a mapping with a fixed set of keys. A key with an empty
// value (null) counts as absent, so its default stays.
func (d *decoder) fields(n *yaml.Node, path string, fs map[string]field) {
	n = d.resolve(n)
	if n == nil || isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.failf(n, path, "got %s; want a mapping of keys", kind(n))
		return
	}
	for _, p := range d.pairs(n, path) {
		key := p.key.Value
		f, ok := fs[key]
		if !ok {
			d.unknown(p.key, path, key, fs)
			continue
		}
		kp := join(path, key)
		d.pos[kp] = p.key.Line
		if v := d.resolve(p.value); v != nil && !isNull(v) {
			f(v, kp)
		}
	}
}

func (d *decoder) unknown(k *yaml.Node, path, key string, fs map[string]field) {
	known := make([]string, 0, len(fs))
	for name := range fs {
		known = append(known, name)
	}
	if s := suggest(key, known); s != "" {
		d.failf(k, join(path, key), "unknown key; did you mean %q?", s)
		return
	}
	sort.Strings(known)
	d.failf(k, join(path, key), "unknown key; want one of %s", strings.Join(known, ", "))
}

// entries decodes a mapping whose keys are names chosen by the user (repos,
// actions, env, labels). Every entry is visited, even one with an empty value.
func (d *decoder) entries(n *yaml.Node, path string, f func(key string, v *yaml.Node, path string)) {
	if n.Kind != yaml.MappingNode {
		d.failf(n, path, "got %s; want a mapping of names", kind(n))
		return
	}
	for _, p := range d.pairs(n, path) {
		kp := join(path, p.key.Value)
		d.pos[kp] = p.key.Line
		if v := d.resolve(p.value); v != nil {
			f(p.key.Value, v, kp)
		}
	}
}

// list decodes a sequence, item by item.
func (d *decoder) list(n *yaml.Node, path string, want string, f func(v *yaml.Node, path string)) {
	if n.Kind != yaml.SequenceNode {
		d.failf(n, path, "got %s; want %s", kind(n), want)
		return
	}
	for i, item := range n.Content {
		ip := index(path, i)
		d.pos[ip] = item.Line
		if v := d.resolve(item); v != nil {
			f(v, ip)
		}
	}
}

func (d *decoder) str(n *yaml.Node, path string) (string, bool) {
	if n.Kind != yaml.ScalarNode || isNull(n) {
		d.failf(n, path, "got %s; want a string", kind(n))
		return "", false
	}
	return n.Value, true
}

// text is a field that stores a string in dst.
func (d *decoder) text(dst *string) field {
	return func(v *yaml.Node, p string) {
		if s, ok := d.str(v, p); ok {
			*dst = s
		}
	}
}

func (d *decoder) strs(n *yaml.Node, path string) []string {
	out := []string{}
	d.list(n, path, "a list like [a, b]", func(v *yaml.Node, p string) {
		if s, ok := d.str(v, p); ok {
			out = append(out, s)
		}
	})
	return out
}

func (d *decoder) strMap(n *yaml.Node, path string) map[string]string {
	out := map[string]string{}
	d.entries(n, path, func(key string, v *yaml.Node, p string) {
		if s, ok := d.str(v, p); ok {
			out[key] = s
		}
	})
	return out
}

// typed decodes a scalar of one YAML type, named by its tag, into dst.
func typed[T any](d *decoder, n *yaml.Node, path, tag, want string, dst *T) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != tag {
		d.failf(n, path, "got %s; want %s", kind(n), want)
		return
	}
	var v T
	if err := n.Decode(&v); err != nil {
		d.failf(n, path, "%q: want %s", n.Value, want)
		return
	}
	*dst = v
}

func (d *decoder) integer(n *yaml.Node, path string, dst *int) {
	typed(d, n, path, "!!int", "a whole number", dst)
}

func (d *decoder) boolean(n *yaml.Node, path string, dst *bool) {
	typed(d, n, path, "!!bool", "true or false", dst)
}

// scalar decodes a plain scalar with parse, reporting parse's error as is.
func scalar[T any](d *decoder, n *yaml.Node, path string, parse func(string) (T, error), dst *T) {
	if n.Kind != yaml.ScalarNode {
		d.failf(n, path, "got %s; want a single value", kind(n))
		return
	}
	v, err := parse(n.Value)
	if err != nil {
		d.fail(n, path, err)
		return
	}
	*dst = v
}

func (d *decoder) duration(n *yaml.Node, path string, dst *time.Duration) {
	scalar(d, n, path, ParseDuration, dst)
}

// report is how validate hands over a problem: the path it concerns and why.
type report func(path string, err error)

// check runs validate with lines taken from the decoded file, skipping paths
// that already failed to decode, and returns every error sorted by line.
func (d *decoder) check(validate func(report)) error {
	validate(func(path string, err error) {
		for b := range d.bad {
			if related(b, path) {
				return
			}
		}
		line := 0
		for p := path; line == 0; p = parent(p) {
			line = d.pos[p]
			if p == "" {
				break
			}
		}
		d.errs = append(d.errs, &Error{File: d.file, Line: line, Path: path, Err: err})
	})
	return d.err()
}

func (d *decoder) err() error {
	if len(d.errs) == 0 {
		return nil
	}
	sort.SliceStable(d.errs, func(i, j int) bool { return d.errs[i].Line < d.errs[j].Line })
	if len(d.errs) == 1 {
		return d.errs[0]
	}
	errs := make([]error, len(d.errs))
	for i, e := range d.errs {
		errs[i] = e
	}
	return errors.Join(errs...)
}

// related reports whether one path is the other or lies inside it. A value
// that failed to decode is not judged further, nor is anything that holds
// it: its zero value would only cause a second, misleading error.
func related(a, b string) bool {
	if len(a) > len(b) {
		a, b = b, a
	}
	return a == "" || a == b || strings.HasPrefix(b, a+".") || strings.HasPrefix(b, a+"[")
}

// parent drops the last key or index of a path: "a.b[2]" → "a.b" → "a" → "".
func parent(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

// validation collects Validate's errors, which have paths but no lines.
func validation(validate func(report)) error {
	var errs []error
	validate(func(path string, err error) { errs = append(errs, &Error{Path: path, Err: err}) })
	if len(errs) == 1 {
		return errs[0]
	}
	return errors.Join(errs...)
}

// suggest returns the known name closest to key, if it is close enough to be
// a likely typo.
func suggest(key string, known []string) string {
	sort.Strings(known)
	best, bestDist := "", 3
	for _, k := range known {
		dist := editDistance(strings.ToLower(key), k)
		if dist < bestDist && 2*dist <= len(key) {
			best, bestDist = k, dist
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
