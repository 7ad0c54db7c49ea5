package gen

import (
	"slices"
	"strings"
)

// msgShape is the language-independent shape of a message: a long help text
// is long in every language and a message with a parameter keeps it.
type msgShape struct {
	words uint8
	flags uint8
}

const (
	shapeParam  = 1 << iota // contains $1
	shapePlural             // contains {{PLURAL:$1|…|…}}
	shapeMarkup             // contains a wikitext link or bold run
)

// keyPrefixes mimic the message groups of core and extensions; sorting keys
// clusters each group, as in a real cache.
var keyPrefixes = strings.Fields(`
action apihelp apierror apiwarn accesskey tooltip prefs special right
action-right group grouppage log logentry logeventslist tag upload watchlist
recentchanges history diff edit search createaccount login block protect
import export notification echo flow visualeditor centralauth abusefilter
cite gadgets translate categorytree mobile-frontend minerva vector
timeless monobook pagetriage growthexperiments wikibase cx contentranslation
discussiontools confirmedit oath math score syntaxhighlight templatedata
thanks uls wikilove revisionslider twocolconflict securepoll massmessage
nuke renameuser globalblocking spamblacklist titleblacklist newsletter
kartographer graph jsonconfig eventlogging betafeatures linter
pageimages popups quicksurveys cargo pageforms semantic smw`)

// messageKeys builds the sorted message keys shared by all languages. It
// keeps adding keys until the rank-0 language, which carries every key, is
// expected to reach its target size.
func messageKeys(r *rng, v *treeVocab, target float64, wordBytes float64) ([]string, []msgShape) {
	type msg struct {
		key   string
		shape msgShape
	}
	var msgs []msg
	seen := make(map[string]bool)
	prefixZ := newZipf(len(keyPrefixes), 0.7)
	var b []byte
	for est := 0.0; est < target; {
		b = append(b[:0], keyPrefixes[prefixZ.pick(r)]...)
		for n := r.between(1, 3); n > 0; n-- {
			b = append(b, '-')
			b = append(b, v.part(r)...)
		}
		if seen[string(b)] {
			continue
		}
		key := string(b)
		seen[key] = true
		s := randomShape(r)
		msgs = append(msgs, msg{key, s})
		est += float64(len(key)+8) + float64(s.words)*wordBytes + markupBytes(s)
	}
	slices.SortFunc(msgs, func(a, b msg) int { return strings.Compare(a.key, b.key) })
	keys := make([]string, len(msgs))
	shapes := make([]msgShape, len(msgs))
	for i, m := range msgs {
		keys[i], shapes[i] = m.key, m.shape
	}
	return keys, shapes
}

func randomShape(r *rng) msgShape {
	var s msgShape
	switch p := r.intn(100); {
	case p < 45:
		s.words = uint8(r.between(1, 3)) // labels, buttons
	case p < 80:
		s.words = uint8(r.between(4, 12)) // short sentences
	case p < 95:
		s.words = uint8(r.between(13, 40)) // descriptions
	default:
		s.words = uint8(r.between(41, 120)) // help texts
	}
	if s.words > 3 && r.percent(30) {
		s.flags |= shapeParam
	}
	if s.words > 3 && r.percent(8) {
		s.flags |= shapePlural
	}
	if s.words > 6 && r.percent(10) {
		s.flags |= shapeMarkup
	}
	return s
}

func markupBytes(s msgShape) float64 {
	n := 0.0
	if s.flags&shapeParam != 0 {
		n += 3
	}
	if s.flags&shapePlural != 0 {
		n += 30
	}
	if s.flags&shapeMarkup != 0 {
		n += 20
	}
	return n
}

// minMessages guarantees every language has messages to mutate.
const minMessages = 16

// writeL10n streams one language's cache file: a small header followed by a
// sorted subset of the shared keys. Inclusion is sampled adaptively so the
// file lands near its target size whatever its script's byte density.
func writeL10n(s *sink, p *plan, l language) {
	r := rngFor(p.cfg.Seed, "l10n", l.code)
	v := newLangVocab(p.cfg.Seed, l, p.langZ)
	s.str("{\n\t\"lang\": \"" + l.code + "\",\n")
	if l.code == "en" {
		s.str("\t\"fallbackSequence\": [],\n")
	} else {
		s.str("\t\"fallbackSequence\": [ \"en\" ],\n")
	}
	if l.script == scriptArabic || l.script == scriptHebrew {
		s.str("\t\"rtl\": true,\n")
	} else {
		s.str("\t\"rtl\": false,\n")
	}
	s.str("\t\"namespaceNames\": {\n")
	for i, ns := range []string{"-2", "-1", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15"} {
		if i > 0 {
			s.str(",\n")
		}
		s.str("\t\t\"" + ns + "\": \"")
		s.buf = v.appendBare(s.buf, r)
		if i%2 == 1 {
			s.str(v.sep)
			s.buf = v.appendBare(s.buf, r)
		}
		s.str("\"")
	}
	s.str("\n\t},\n\t\"messages\": {")

	start := s.size()
	remaining := float64(l.size - start - 8)
	entries := 0
	written := 0.0
	for j, key := range p.keys {
		left := len(p.keys) - j
		if entries >= minMessages || left > minMessages-entries {
			avg := 120.0
			if entries > 0 {
				avg = written / float64(entries)
			}
			if prob := (remaining - written) / (float64(left) * avg); prob < 1 && r.float() >= prob {
				continue
			}
		}
		before := s.size()
		if entries > 0 {
			s.buf = append(s.buf, ',')
		}
		s.buf = append(s.buf, "\n\t\t\""...)
		s.buf = append(s.buf, key...)
		s.buf = append(s.buf, "\": \""...)
		s.buf = messageValue(s.buf, r, v, p.shapes[j])
		s.buf = append(s.buf, '"')
		s.flushIfFull()
		entries++
		written += float64(s.size() - before)
	}
	s.str("\n\t}\n}\n")
}

// messageValue appends a pseudo-translation with MediaWiki message syntax
// sprinkled in where the shape asks for it.
func messageValue(buf []byte, r *rng, v *langVocab, shape msgShape) []byte {
	n := int(shape.words)
	// Reserve room for every word slot plus markup, so appendWord can copy
	// whole slots without bounds growth.
	buf = slices.Grow(buf, (n+6)*len(wordSlot{})+64)
	for i := 0; i < n; i++ {
		if i > 0 && i%12 == 0 && v.sep != "" { // end a sentence
			buf = append(buf[:len(buf)-len(v.sep)], '.')
			buf = append(buf, v.sep...)
		}
		switch {
		case i == n/2 && shape.flags&shapeParam != 0:
			buf = append(buf, "$1"...)
			buf = append(buf, v.sep...)
		case i == n/3 && shape.flags&shapePlural != 0:
			buf = append(buf, "{{PLURAL:$1|"...)
			buf = v.appendBare(buf, r)
			buf = append(buf, '|')
			buf = v.appendBare(buf, r)
			buf = append(buf, "}}"...)
			buf = append(buf, v.sep...)
		case i == n-2 && shape.flags&shapeMarkup != 0:
			buf = append(buf, "[[Special:"...)
			buf = v.appendBare(buf, r)
			buf = append(buf, '|')
			buf = v.appendBare(buf, r)
			buf = append(buf, "]]"...)
			buf = append(buf, v.sep...)
		}
		buf = v.appendWord(buf, r)
	}
	buf = buf[:len(buf)-len(v.sep)]
	if n > 6 && v.sep != "" {
		buf = append(buf, '.')
	}
	return buf
}
