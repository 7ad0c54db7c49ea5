package gen

import (
	"path"
	"strconv"
	"strings"
)

// writeDefines emits includes/Defines.php: the MW_VERSION line MutateCode
// bumps, followed by constant definitions up to the target size.
func writeDefines(s *sink, p *plan, size int64) {
	g := &codeGen{v: p.vocab, r: rngFor(p.cfg.Seed, "php", definesPath), s: s}
	g.str("<?php\n" + licenseHeader)
	g.str("/**\n * The running version of MediaWiki.\n */\n")
	g.str("define( 'MW_VERSION', '" + p.version + "' );\n\n")
	for i := 0; s.size() < size; i++ {
		if i%8 == 0 {
			g.str("\n/**\n * ")
			g.sentence(4, 12)
			g.str("\n */\n")
		}
		g.str("define( '")
		g.str(strings.ToUpper(g.v.part(g.r) + "_" + g.v.part(g.r)))
		g.str("', " + strconv.Itoa(i) + " );\n")
	}
}

// writeManifest emits extension.json / skin.json / composer.json-like JSON.
func writeManifest(s *sink, p *plan, rel string, size int64) {
	g := &codeGen{v: p.vocab, r: rngFor(p.cfg.Seed, "manifest", rel), s: s}
	name := path.Base(path.Dir(rel))
	if name == "." {
		name = "mediawiki/core"
	}
	g.str("{\n\t\"name\": \"" + name + "\",\n")
	g.str("\t\"version\": \"" + strconv.Itoa(g.r.intn(4)) + "." + strconv.Itoa(g.r.intn(20)) + ".0\",\n")
	g.str("\t\"license-name\": \"GPL-2.0-or-later\",\n")
	g.str("\t\"requires\": {\n\t\t\"MediaWiki\": \">= " + p.version + "\"\n\t},\n")
	g.str("\t\"Hooks\": {")
	for i := 0; s.size() < size-4; i++ {
		if i > 0 {
			g.str(",")
		}
		g.str("\n\t\t\"")
		g.str(upperFirst(g.v.ident(g.r)))
		g.str("\": \"")
		g.str(g.v.class(g.r))
		g.str("::")
		g.str(g.v.ident(g.r))
		g.str("\"")
	}
	g.str("\n\t}\n}\n")
}

// writeDoc emits Markdown-ish prose (README, COPYING, release notes).
func writeDoc(s *sink, p *plan, rel string, size int64) {
	g := &codeGen{v: p.vocab, r: rngFor(p.cfg.Seed, "doc", rel), s: s}
	g.str("# " + path.Base(rel) + "\n")
	for s.size() < size {
		if g.r.percent(15) {
			g.str("\n## ")
			g.sentence(2, 5)
			g.str("\n")
		}
		g.str("\n")
		for n := g.r.between(2, 6); n > 0; n-- {
			if g.r.percent(30) {
				g.str("* ")
			}
			g.sentence(6, 18)
			g.str("\n")
		}
	}
}

// writeScript emits a small shell script; these are the executable files.
func writeScript(s *sink, p *plan, rel string, size int64) {
	g := &codeGen{v: p.vocab, r: rngFor(p.cfg.Seed, "script", rel), s: s}
	g.str("#!/bin/sh\n# " + path.Base(rel) + " for MediaWiki " + p.version + "\nset -eu\n\n")
	g.str("MW_INSTALL_PATH=\"$(cd \"$(dirname \"$0\")/..\" && pwd)\"\n\n")
	for s.size() < size {
		g.str("# ")
		g.sentence(3, 10)
		g.str("\nphp \"$MW_INSTALL_PATH/maintenance/run.php\" ")
		g.str(g.v.class(g.r))
		g.str(" --")
		g.str(g.v.part(g.r))
		g.str(" \"$@\"\n\n")
	}
}
