package gen

import (
	"slices"
	"strings"
	"unicode/utf8"
)

// realLanguages lists MediaWiki language codes roughly by translation
// activity; rank decides file size, so the first few become the big files.
var realLanguages = strings.Fields(`
en de fr es ja ru it zh-hans pt pl nl sv uk fa ar he ko zh-hant cs hu fi tr id
vi ca nb da ro el bg sr-ec hi th ms sk sl lt lv et hr eo eu gl is ga cy be mk
sq hy ka az kk-cyrl uz bn ta te mr ml kn gu pa ur ne si my km lo am sw af zu xh
yo ig ha so tl ceb jv su mg la oc br lb fy gd rm fo li nds als bar ksh pfl sco
ast an ext frp lmo vec nap scn co sc fur lij pms eml lad yi tt ba cv sah ce os
ab kbd ady udm koi kv mhr mrj myv mdf krc xal bxr tyv ky tg tk ug ps ku ckb sd
ks bo dz qqq pt-br en-gb de-ch de-formal nl-informal sr-el zh-hk yue wuu gan
hak lzh nan cdo mi sm to fj haw ty chr nv ik iu kl se smn sms fit vro liv vep
olo krl lzz mzn glk azb lrc bqi sdh hif bho mai new sa pi dty tcy awa gom
sat mni as or`)

type scriptKind uint8

const (
	scriptLatin scriptKind = iota
	scriptCyrillic
	scriptGreek
	scriptArabic
	scriptHebrew
	scriptDevanagari
	scriptThai
	scriptHangul
	scriptHan
	scriptKana
	numScripts
)

func scriptOf(code string) (scriptKind, bool) {
	switch code {
	case "ru", "uk", "bg", "sr-ec", "be", "mk", "kk-cyrl", "tt", "ba", "cv",
		"sah", "ce", "os", "ab", "kbd", "ady", "udm", "koi", "kv", "mhr", "mrj",
		"myv", "mdf", "krc", "xal", "bxr", "tyv", "ky", "tg":
		return scriptCyrillic, true
	case "el":
		return scriptGreek, true
	case "ar", "fa", "ur", "ps", "ckb", "sd", "ks", "ug", "mzn", "glk", "azb", "lrc", "bqi", "sdh":
		return scriptArabic, true
	case "he", "yi", "lad":
		return scriptHebrew, true
	case "hi", "mr", "ne", "sa", "bho", "mai", "new", "awa", "dty", "gom", "pi":
		return scriptDevanagari, true
	case "th", "lo", "km", "my":
		return scriptThai, true
	case "ko":
		return scriptHangul, true
	case "zh-hans", "zh-hant", "zh-hk", "yue", "wuu", "gan", "hak", "lzh", "cdo":
		return scriptHan, true
	case "ja":
		return scriptKana, true
	}
	return scriptLatin, false
}

// language is one localisation of the tree.
type language struct {
	code   string
	script scriptKind
	size   int64 // target bytes of its cache file
}

// languageCodes returns n distinct codes: real ones first, then synthetic
// three-letter codes enumerated with a stride so they do not look sequential.
func languageCodes(n int) []string {
	codes := make([]string, 0, n)
	seen := make(map[string]bool, n)
	for _, c := range realLanguages {
		if len(codes) == n {
			return codes
		}
		if !seen[c] {
			seen[c] = true
			codes = append(codes, c)
		}
	}
	const space = 26 * 26 * 26
	for i := 0; len(codes) < n && i < space; i++ {
		k := (i*7919 + 1234) % space
		c := string([]byte{byte('a' + k/676), byte('a' + k/26%26), byte('a' + k%26)})
		if !seen[c] {
			seen[c] = true
			codes = append(codes, c)
		}
	}
	return codes
}

// langVocab is a per-language synthetic vocabulary: words are built from a
// language-specific subset of a script's syllables, so languages compress
// like text but never share long byte runs with each other.
type langVocab struct {
	words []wordSlot
	z     zipf
	sep   string // word separator; empty for scripts written without spaces
}

// wordSlot holds a word followed by its separator, zero-padded, with the
// length in the last byte. Copying a fixed 32 bytes and then trimming is
// several times cheaper than a variable-length copy per word, and l10n
// values are most of the bytes a tree holds.
type wordSlot [32]byte

const maxWordBytes = len(wordSlot{}) - 1

func chars(s string) []string {
	out := make([]string, 0, utf8.RuneCountInString(s))
	for _, c := range s {
		out = append(out, string(c))
	}
	return out
}

// sampleRange draws n characters from a large block such as CJK ideographs,
// where listing the whole block per language would be wasteful.
func sampleRange(r *rng, lo, hi rune, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = string(lo + rune(r.intn(int(hi-lo+1))))
	}
	return out
}

// inventory returns a language's onsets and nuclei: a random subset of its
// script's, which gives each language its own "sound". It also returns the
// syllable count range of words and the word separator.
func inventory(r *rng, k scriptKind) (cons, vows []string, minSyl, maxSyl int, sep string) {
	minSyl, maxSyl, sep = 1, 4, " "
	switch k {
	case scriptCyrillic:
		cons, vows = chars("бвгджзклмнпрстфхцчшщ"), chars("аеиоуыэюяё")
	case scriptGreek:
		cons, vows = chars("βγδζθκλμνξπρστφχψ"), chars("αεηιουωάέίόύήώ")
	case scriptArabic:
		cons, vows, maxSyl = chars("بتثجحخدذرزسشصضطظعغفقكلمنهي"), chars("اوي"), 3
	case scriptHebrew:
		cons, vows, maxSyl = chars("בגדהזחטכלמנסעפצקרשת"), chars("ויא"), 3
	case scriptDevanagari:
		cons, vows = chars("कखगघचछजझटठडढतथदधनपफबभमयरलवशसह"), append(chars("ािीुूेैोौ"), "")
	case scriptThai:
		cons, vows, maxSyl, sep = chars("กขคฆงจฉชซญดตถทธนบปผพฟภมยรลวศสหอฮ"), append(chars("ะาำเแโไ"), "", ""), 3, ""
	case scriptHangul:
		return sampleRange(r, 0xac00, 0xd7a3, 400), []string{""}, 1, 3, " "
	case scriptHan:
		return sampleRange(r, 0x4e00, 0x9fa5, 600), []string{""}, 1, 2, ""
	case scriptKana:
		kana := append(sampleRange(r, 0x3041, 0x3093, 60), sampleRange(r, 0x4e00, 0x9fa5, 300)...)
		return kana, []string{""}, 2, 4, ""
	default:
		cons = strings.Fields("b c d f g h j k l m n p r s t v w z ch sch th sk st tr sh ll rr nn ck ph")
		vows = strings.Fields("a e i o u y ä ö ü é è à ø å ai ei ou ie")
	}
	return subset(r, cons, len(cons)*2/3), subset(r, vows, max(1, len(vows)*2/3)), minSyl, maxSyl, sep
}

// langWords is the vocabulary size of every language.
const langWords = 3000

// newLangVocab builds the vocabulary of one language. z must be a zipf
// table over langWords entries; it is shared because it is the same for
// every language.
func newLangVocab(seed uint64, l language, z zipf) *langVocab {
	r := rngFor(seed, "lang", l.code)
	cons, vows, minSyl, maxSyl, sep := inventory(r, l.script)
	v := &langVocab{words: make([]wordSlot, langWords), z: z, sep: sep}
	var b []byte
	for i := range v.words {
		b = b[:0]
		// Frequent (low-index) words are short, as in natural language.
		hi := maxSyl
		if i < 50 {
			hi = minSyl + (maxSyl-minSyl)/2
		}
		for s := r.between(minSyl, hi); s > 0; s-- {
			b = appendBounded(b, cons[r.intn(len(cons))], vows[r.intn(len(vows))], sep)
		}
		if l.script == scriptLatin && r.percent(30) {
			b = appendBounded(b, cons[r.intn(len(cons))], "", sep)
		}
		w := &v.words[i]
		copy(w[:], b)
		copy(w[len(b):], sep)
		w[maxWordBytes] = byte(len(b) + len(sep))
	}
	return v
}

// appendBounded appends a syllable unless the word would no longer fit in
// a wordSlot together with its separator.
func appendBounded(b []byte, onset, nucleus, sep string) []byte {
	if len(b)+len(onset)+len(nucleus)+len(sep) > maxWordBytes {
		return b
	}
	return append(append(b, onset...), nucleus...)
}

// subset picks k distinct elements of s (partial Fisher–Yates on a copy).
func subset(r *rng, s []string, k int) []string {
	if k >= len(s) {
		return s
	}
	c := append([]string(nil), s...)
	for i := 0; i < k; i++ {
		j := i + r.intn(len(c)-i)
		c[i], c[j] = c[j], c[i]
	}
	return c[:k]
}

// appendWord appends a random word and its separator. buf must have 32
// bytes of spare capacity.
func (v *langVocab) appendWord(buf []byte, r *rng) []byte {
	w := &v.words[v.z.pick(r)]
	n := len(buf)
	*(*wordSlot)(buf[n : n+len(w)]) = *w
	return buf[:n+int(w[maxWordBytes])]
}

// appendBare appends a random word without its separator.
func (v *langVocab) appendBare(buf []byte, r *rng) []byte {
	buf = v.appendWord(slices.Grow(buf, len(wordSlot{})), r)
	return buf[:len(buf)-len(v.sep)]
}

// meanWordBytes estimates the expected size of a picked word plus separator.
func (v *langVocab) meanWordBytes(r *rng) float64 {
	const samples = 4096
	total := 0
	for i := 0; i < samples; i++ {
		total += int(v.words[v.z.pick(r)][maxWordBytes])
	}
	return float64(total) / samples
}
