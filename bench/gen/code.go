package gen

import (
	"path"
	"strconv"
	"strings"
)

// licenseHeader is copied verbatim into many files, as in MediaWiki; it is
// the kind of exact cross-file repeat a deduplicating store should notice.
const licenseHeader = `/**
 * This program is free software; you can redistribute it and/or modify
 * it under the terms of the GNU General Public License as published by
 * the Free Software Foundation; either version 2 of the License, or
 * (at your option) any later version.
 *
 * This program is distributed in the hope that it will be useful,
 * but WITHOUT ANY WARRANTY; without even the implied warranty of
 * MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE. See the
 * GNU General Public License for more details.
 *
 * You should have received a copy of the GNU General Public License along
 * with this program; if not, write to the Free Software Foundation, Inc.,
 * 51 Franklin Street, Fifth Floor, Boston, MA 02110-1301, USA.
 * http://www.gnu.org/copyleft/gpl.html
 *
 * @file
 */

`

var (
	phpBuiltins = strings.Fields(`count isset empty array_merge in_array is_array
		is_string strlen substr implode explode array_keys array_map sprintf
		str_replace trim intval strtolower array_filter preg_match json_encode
		array_values array_slice str_starts_with is_int max min`)
	phpTypes = strings.Fields(`int string bool array ?string ?int mixed
		callable iterable ?array float`)
	phpExceptions = strings.Fields(`InvalidArgumentException RuntimeException
		LogicException UnexpectedValueException DomainException`)
)

// codeGen writes PHP-like source. Identifiers come from the tree pool, with
// a small file-local working set reused heavily, like real classes do.
type codeGen struct {
	v       *treeVocab
	r       *rng
	s       *sink
	local   [12]string
	classes [6]string // classes this file keeps referring to
	repeats [6]string // lines this file keeps repeating
	depth   int
}

func (g *codeGen) id() string {
	if g.r.percent(85) {
		return g.local[g.r.intn(len(g.local))]
	}
	return g.v.ident(g.r)
}

func (g *codeGen) class() string {
	if g.r.percent(70) && g.classes[0] != "" {
		return g.classes[g.r.intn(len(g.classes))]
	}
	return g.v.class(g.r)
}

func (g *codeGen) indent() {
	for i := 0; i < g.depth; i++ {
		g.s.buf = append(g.s.buf, '\t')
	}
}

func (g *codeGen) str(s string) { g.s.buf = append(g.s.buf, s...) }

func (g *codeGen) variable() {
	g.s.buf = append(g.s.buf, '$')
	g.str(g.id())
}

func (g *codeGen) sentence(lo, hi int) {
	n := g.r.between(lo, hi)
	for i := 0; i < n; i++ {
		w := g.v.word(g.r)
		if i == 0 {
			w = upperFirst(w)
		} else {
			g.s.buf = append(g.s.buf, ' ')
		}
		g.str(w)
	}
	g.s.buf = append(g.s.buf, '.')
}

func (g *codeGen) msgKey() {
	g.str(g.v.part(g.r))
	for n := g.r.between(1, 3); n > 0; n-- {
		g.s.buf = append(g.s.buf, '-')
		g.str(g.v.part(g.r))
	}
}

// writePHP emits a class file whose name and namespace follow its path.
func writePHP(s *sink, p *plan, rel string, target int64) {
	g := &codeGen{v: p.vocab, r: rngFor(p.cfg.Seed, "php", rel), s: s}
	for i := range g.local {
		g.local[i] = g.v.ident(g.r)
	}
	for i := range g.classes {
		g.classes[i] = g.v.class(g.r)
	}
	for i := range g.repeats {
		n := len(s.buf)
		g.simpleStmt()
		g.repeats[i] = string(s.buf[n:])
		s.buf = s.buf[:n]
	}
	class := strings.TrimSuffix(path.Base(rel), ".php")

	g.str("<?php\n")
	if g.r.percent(60) {
		g.str(licenseHeader)
	} else {
		g.str("\n")
	}
	if ns := phpNamespace(rel); ns != "" {
		g.str("namespace " + ns + ";\n\n")
	}
	for n := g.r.between(2, 9); n > 0; n-- {
		g.str("use MediaWiki\\")
		g.str(upperFirst(g.v.part(g.r)))
		g.str("\\")
		g.str(g.class())
		g.str(";\n")
	}
	g.str("\n/**\n")
	for n := g.r.between(1, 4); n > 0; n-- {
		g.str(" * ")
		g.note(5, 14)
		g.str("\n")
	}
	g.str(" *\n * @since 1." + strconv.Itoa(g.r.between(17, 43)) + "\n */\n")
	g.str("class " + class)
	if g.r.percent(50) {
		g.str(" extends ")
		g.str(g.class())
	}
	g.str(" {\n")
	g.depth = 1
	for n := g.r.between(0, 4); n > 0; n-- {
		g.indent()
		g.str("private const ")
		g.str(strings.ToUpper(g.v.part(g.r)) + "_" + strings.ToUpper(g.v.part(g.r)))
		g.str(" = '")
		g.msgKey()
		g.str("';\n")
	}
	for n := g.r.between(1, 6); n > 0; n-- {
		g.str("\n")
		g.indent()
		g.str("/** @var ")
		g.typ()
		g.str(" */\n")
		g.indent()
		g.str("private ")
		g.variable()
		g.str(";\n")
	}
	for s.size() < target-2 {
		g.method()
		s.flushIfFull()
	}
	g.str("}\n")
}

func (g *codeGen) typ() {
	if g.r.percent(60) {
		g.str(phpTypes[g.r.intn(len(phpTypes))])
	} else {
		g.str(g.class())
	}
}

func (g *codeGen) method() {
	g.depth = 1
	g.str("\n")
	g.indent()
	g.str("/**\n")
	for n := g.r.between(1, 3); n > 0; n-- {
		g.indent()
		g.str(" * ")
		g.note(4, 16)
		g.str("\n")
	}
	params := g.r.between(0, 3)
	var names [3]string
	if params > 0 {
		g.indent()
		g.str(" *\n")
	}
	for i := 0; i < params; i++ {
		names[i] = g.id()
		g.indent()
		g.str(" * @param ")
		g.typ()
		g.str(" $" + names[i] + " ")
		g.sentence(2, 7)
		g.str("\n")
	}
	g.indent()
	g.str(" * @return ")
	g.typ()
	g.str("\n")
	g.indent()
	g.str(" */\n")
	g.indent()
	g.str([]string{"public", "public", "protected", "private", "public static"}[g.r.intn(5)])
	g.str(" function ")
	g.str(g.id())
	g.str("(")
	for i := 0; i < params; i++ {
		if i > 0 {
			g.str(",")
		}
		g.str(" ")
		if g.r.percent(50) {
			g.typ()
			g.str(" ")
		}
		g.str("$" + names[i])
	}
	if params > 0 {
		g.str(" ")
	}
	g.str(") {\n")
	g.depth = 2
	g.block(g.r.between(2, 12))
	g.depth = 1
	g.indent()
	g.str("}\n")
}

func (g *codeGen) block(n int) {
	for ; n > 0; n-- {
		g.stmt()
	}
}

// stmt writes one indented statement, possibly a nested block.
func (g *codeGen) stmt() {
	g.indent()
	if g.depth >= 5 {
		g.simpleStmt()
		return
	}
	switch p := g.r.intn(100); {
	case p < 10:
		g.str("if ( ")
		g.cond()
		g.str(" ) {\n")
		g.nested(g.r.between(1, 4))
		if g.r.percent(25) {
			g.indent()
			g.str("} else {\n")
			g.nested(g.r.between(1, 3))
		}
		g.indent()
		g.str("}\n")
	case p < 16:
		g.str("foreach ( ")
		g.variable()
		g.str(" as ")
		if g.r.percent(50) {
			g.variable()
			g.str(" => ")
		}
		g.variable()
		g.str(" ) {\n")
		g.nested(g.r.between(1, 4))
		g.indent()
		g.str("}\n")
	case p < 21:
		g.variable()
		g.str(" = [\n")
		for n := g.r.between(2, 6); n > 0; n-- {
			g.depth++
			g.indent()
			g.depth--
			g.str("'")
			g.str(g.id())
			g.str("' => ")
			g.expr()
			g.str(",\n")
		}
		g.indent()
		g.str("];\n")
	case p < 30:
		g.str("// ")
		g.note(3, 14)
		g.str("\n")
	case p < 30+stockPercent:
		g.str(g.v.stock[g.v.stockZ.pick(g.r)])
	case p < 30+stockPercent+repeatPercent:
		g.str(g.repeats[g.r.intn(len(g.repeats))])
	default:
		g.simpleStmt()
	}
}

// Shares of statements that are tree-wide boilerplate or repeats of the
// file's own idioms; together with the identifier pools they set how well
// code compresses.
const (
	stockPercent  = 30
	repeatPercent = 20
)

// note writes a comment sentence, often a stock one.
func (g *codeGen) note(lo, hi int) {
	if g.r.percent(80) {
		g.str(g.v.stockNotes[g.v.stockNotesZ.pick(g.r)])
		return
	}
	g.sentence(lo, hi)
}

// simpleStmt writes a one-line statement (no indentation) and its newline.
func (g *codeGen) simpleStmt() {
	switch p := g.r.intn(100); {
	case p < 30:
		g.variable()
		g.str(" = ")
		g.expr()
	case p < 40:
		g.str("return ")
		g.expr()
	case p < 62:
		g.str("$this->")
		g.str(g.id())
		g.str("->")
		g.call()
	case p < 66:
		g.str("throw new ")
		g.str(phpExceptions[g.r.intn(len(phpExceptions))])
		g.str("( \"")
		g.note(3, 8)
		g.str(" $")
		g.str(g.id())
		g.str("\" )")
	case p < 82:
		g.str("$this->")
		g.str(g.id())
		g.str(" = ")
		g.expr()
	case p < 90:
		g.str("$this->logger->debug( __METHOD__ . ': ")
		g.note(3, 9)
		g.str("', [ '")
		g.str(g.id())
		g.str("' => ")
		g.variable()
		g.str(" ] )")
	default:
		g.variable()
		g.str("[] = ")
		g.expr()
	}
	g.str(";\n")
}

func (g *codeGen) nested(n int) {
	g.depth++
	g.block(n)
	g.depth--
}

func (g *codeGen) call() {
	g.str(g.id())
	g.str("(")
	n := g.r.between(0, 3)
	for i := 0; i < n; i++ {
		if i > 0 {
			g.str(",")
		}
		g.str(" ")
		g.atom()
	}
	if n > 0 {
		g.str(" ")
	}
	g.str(")")
}

func (g *codeGen) atom() {
	switch p := g.r.intn(100); {
	case p < 50:
		g.variable()
	case p < 65:
		g.str("'")
		g.msgKey()
		g.str("'")
	case p < 75:
		g.str("$this->")
		g.str(g.id())
	case p < 82:
		g.str(strconv.Itoa(g.r.intn(1000)))
	case p < 90:
		g.str([]string{"null", "true", "false", "[]"}[g.r.intn(4)])
	default:
		g.str(g.class())
		g.str("::class")
	}
}

func (g *codeGen) expr() {
	switch p := g.r.intn(100); {
	case p < 30:
		g.atom()
	case p < 50:
		g.str("$this->")
		g.call()
	case p < 65:
		g.variable()
		g.str("->")
		g.call()
	case p < 75:
		g.str(g.class())
		g.str("::")
		g.call()
	case p < 83:
		g.str("new ")
		g.str(g.class())
		g.str("( ")
		g.atom()
		g.str(" )")
	case p < 93:
		g.str(phpBuiltins[g.r.intn(len(phpBuiltins))])
		g.str("( ")
		g.atom()
		g.str(" )")
	default:
		g.variable()
		g.str(" ?? ")
		g.atom()
	}
}

func (g *codeGen) cond() {
	switch p := g.r.intn(100); {
	case p < 25:
		g.variable()
		g.str([]string{" === null", " !== null", " === false", " > 0"}[g.r.intn(4)])
	case p < 45:
		g.str("!")
		g.variable()
	case p < 60:
		g.variable()
		g.str(" instanceof ")
		g.str(g.class())
	case p < 75:
		g.str("isset( ")
		g.variable()
		g.str("['")
		g.str(g.id())
		g.str("'] )")
	case p < 90:
		g.str("$this->")
		g.call()
	default:
		g.variable()
		g.str(" && ")
		g.variable()
	}
}

// phpNamespace derives a namespace from a file's directory, the way
// MediaWiki's PSR-4 autoloading maps directories to namespaces.
func phpNamespace(rel string) string {
	parts := strings.Split(path.Dir(rel), "/")
	var ns []string
	switch parts[0] {
	case "includes":
		ns = []string{"MediaWiki"}
		parts = parts[1:]
	case "extensions":
		ns = []string{"MediaWiki", "Extension"}
		parts = parts[1:]
	case "skins":
		ns = []string{"MediaWiki", "Skins"}
		parts = parts[1:]
	case "tests":
		ns = []string{"MediaWiki", "Tests"}
		parts = parts[1:]
	default:
		return ""
	}
	for _, p := range parts {
		if p == "includes" || p == "." {
			continue
		}
		ns = append(ns, upperFirst(p))
	}
	return strings.Join(ns, "\\")
}
