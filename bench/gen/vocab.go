package gen

import "strings"

// codeParts are the morphemes identifiers are glued from. Real code reuses a
// small domain vocabulary in many combinations; that mix of repetition and
// variety is what makes source compress 3–5× rather than 50×.
var codeParts = strings.Fields(`
get set page title user revision parser cache text content link name id data
config service factory handler store lookup manager context request response
output html message status result value key list item option param field
table query row db load save update delete create build format render parse
check validate is has can should add remove find fetch make apply resolve
normalize escape wiki namespace category file image media template skin hook
job queue log entry event session token auth permission group block limit
count size time timestamp date lang language local remote api module action
special form input search index hash map array string json xml url path dir
prefix suffix target source base main default current old new last first
next prev total max min offset batch chunk stream reader writer buffer state
mode flag type kind class method callback filter sort order rank score diff
patch change edit watch notify mail email account password rights role
policy rule spec schema version label title anchor section header footer
body node tree element attribute style script resource bundle asset icon
cluster shard replica primary lag lock mutex pool worker task schedule retry
timeout deadline metric stats counter gauge timer trace debug warning error
exception fatal notice deprecated legacy compat wrapper adapter proxy decorator
visitor iterator generator provider registry container loader installer
updater importer exporter converter serializer`)

// commentWords is a small English vocabulary for doc comments and READMEs,
// ordered roughly by frequency because picks are Zipf-distributed by index.
var commentWords = strings.Fields(`
the to of a and is in for this be if it not that on with as are by or from
when should will can may an which we used returns value given null false
true otherwise must only all any each new old current default already before
after set get check whether instead note see also because since so here
there cache page user title request array string object list result data
method function class instance field key message text content database query
revision handler hook service config option parameter callback error
exception warning deprecated legacy compatibility caller callers called
without within between into over under per via using use uses need needs
needed make makes made might would could do does done such than then them
their its these those other others some more most less least first last next
previous empty non valid invalid existing missing unknown known internal
external public private protected static final abstract interface trait
implementation override overrides overridden wrapper format output input
html escaped unescaped raw parsed normalized canonical local remote primary
replica lag batch chunk size limit offset count number time timestamp
seconds ms bytes length width height order sort ascending descending
reverse filter match matches matching pattern regex path url domain server
client browser session cookie token permission rights group block blocked
protected protection namespace category template module resource loader skin
special action api format json xml job queue retry fail fails failed failure
success succeed ok safe unsafe thread lock locked unlock transaction commit
rollback write read load loaded save saved update updated delete deleted
create created build built render rendered`)

// treeVocab is the per-tree identifier pool. It is derived from the seed
// only, so every file of a tree draws from the same finite set of names.
type treeVocab struct {
	idents  []string // lowerCamel: variables, methods, properties
	identZ  zipf
	classes []string // UpperCamel class names
	classZ  zipf
	partZ   zipf // over codeParts
	wordZ   zipf // over commentWords

	// Stock statements and comments recur across the tree the way
	// boilerplate does in real code (service lookups, "@inheritDoc", …).
	// They are single lines, so repeats stay far shorter than a chunk.
	stock       []string
	stockZ      zipf
	stockNotes  []string
	stockNotesZ zipf
}

func newTreeVocab(seed uint64) *treeVocab {
	r := rngFor(seed, "vocab", "")
	v := &treeVocab{
		partZ: newZipf(len(codeParts), 0.8),
		wordZ: newZipf(len(commentWords), 1.1),
	}
	v.idents = v.names(r, 1500, false)
	v.classes = v.names(r, 1200, true)
	v.identZ = newZipf(len(v.idents), 1.1)
	v.classZ = newZipf(len(v.classes), 0.9)
	v.buildStock(r)
	return v
}

// names builds n distinct camelCase names of 1–3 parts.
func (v *treeVocab) names(r *rng, n int, upper bool) []string {
	seen := make(map[string]bool, n)
	out := make([]string, 0, n)
	var b []byte
	for len(out) < n {
		b = b[:0]
		parts := r.between(1, 3)
		if parts == 1 && !upper && r.percent(50) {
			parts = 2 // bare one-word identifiers are rare in real code
		}
		for i := 0; i < parts; i++ {
			p := codeParts[v.partZ.pick(r)]
			if i > 0 || upper {
				b = append(b, p[0]-'a'+'A')
				b = append(b, p[1:]...)
			} else {
				b = append(b, p...)
			}
		}
		s := string(b)
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func (v *treeVocab) ident(r *rng) string { return v.idents[v.identZ.pick(r)] }
func (v *treeVocab) class(r *rng) string { return v.classes[v.classZ.pick(r)] }
func (v *treeVocab) part(r *rng) string  { return codeParts[v.partZ.pick(r)] }
func (v *treeVocab) word(r *rng) string  { return commentWords[v.wordZ.pick(r)] }

// upperFirst capitalises an ASCII word; generated names are always ASCII.
func upperFirst(s string) string {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}

// buildStock renders the tree's boilerplate pools with the code generator
// itself, so they look like any other line. Notes come first because stock
// statements may quote them.
func (v *treeVocab) buildStock(r *rng) {
	s := &sink{}
	g := &codeGen{v: v, r: r, s: s}
	for i := range g.local {
		g.local[i] = v.ident(r)
	}
	for range 300 {
		s.buf = s.buf[:0]
		g.sentence(3, 12)
		v.stockNotes = append(v.stockNotes, string(s.buf))
	}
	v.stockNotesZ = newZipf(len(v.stockNotes), 1.0)
	for range 600 {
		s.buf = s.buf[:0]
		g.simpleStmt()
		v.stock = append(v.stock, string(s.buf))
	}
	v.stockZ = newZipf(len(v.stock), 1.0)
}
