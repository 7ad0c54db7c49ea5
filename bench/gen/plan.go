package gen

import (
	"math"
	"path"
	"slices"
	"strconv"
)

type kind uint8

const (
	kindPHP kind = iota
	kindDefines
	kindManifest
	kindDoc
	kindScript
	kindL10n
	kindAsset
)

// definesPath holds the version string that MutateCode bumps.
const definesPath = "includes/Defines.php"

type fileSpec struct {
	path string // slash-separated, relative to the tree root
	kind kind
	size int64 // target; generators stop close to it
	lang int   // index into plan.langs for kindL10n
}

type linkSpec struct{ path, target string }

// plan is the complete, deterministic layout of a tree. Content is produced
// later from (seed, path, size) alone, so the plan is all that is shared.
type plan struct {
	cfg     Config
	vocab   *treeVocab
	version string
	dirs    []string // sorted, so parents precede children
	files   []fileSpec
	links   []linkSpec
	langs   []language
	keys    []string // sorted message keys shared by every language
	shapes  []msgShape
	langZ   zipf // word frequencies, identical for every language

	dirSet map[string]bool
	taken  map[string]bool
}

var (
	coreComponents = []string{"api", "parser", "specials", "Revision", "Storage",
		"user", "page", "Html", "content", "libs", "language", "cache", "jobqueue",
		"logging", "ResourceLoader", "session", "auth", "deferred", "debug",
		"export", "filerepo", "http", "installer", "json", "linker", "mail",
		"media", "objectcache", "password", "poolcounter", "preferences", "rdbms",
		"search", "site", "skins", "title", "upload", "utils", "watchlist",
		"widget", "Rest", "Permissions", "Settings", "changes", "diff", "editpage"}
	classSuffixes = []string{"", "", "", "", "Handler", "Factory", "Service",
		"Lookup", "Store", "Formatter", "Hooks", "Module", "Page", "Job",
		"Exception", "Interface", "Trait", "Builder", "Manager"}
	skinNames    = []string{"Vector", "MonoBook", "Timeless", "MinervaNeue"}
	assetFormats = []string{".png", ".png", ".png", ".jpg", ".svgz", ".woff2", ".gif"}
)

func newPlan(cfg Config) *plan {
	p := &plan{
		cfg:    cfg,
		vocab:  newTreeVocab(cfg.Seed),
		dirSet: map[string]bool{},
		taken:  map[string]bool{},
	}
	r := rngFor(cfg.Seed, "plan", "")
	p.version = "1." + strconv.Itoa(r.between(39, 45)) + "." + strconv.Itoa(r.between(0, 9))

	code := codeBudget(cfg.TotalBytes)
	p.planRoot(r)
	p.planArea(r, "includes", code*42/100, coreComponents, "")
	p.planExtensions(r, code*38/100)
	p.planSkins(r, code*6/100)
	p.planMaintenance(r, code*6/100)
	p.planArea(r, "tests/phpunit", code*8/100, []string{"unit", "integration", "structure", "api", "parser", "includes"}, "Test")
	p.planAssets(r, assetBudget(cfg.TotalBytes))
	p.planL10n(r, l10nBudget(cfg.TotalBytes))
	p.addDir("images") // MediaWiki's upload directory ships empty

	p.dirs = make([]string, 0, len(p.dirSet))
	for d := range p.dirSet {
		p.dirs = append(p.dirs, d)
	}
	slices.Sort(p.dirs)
	p.dirSet, p.taken = nil, nil
	return p
}

func (p *plan) addDir(dir string) {
	for dir != "." && !p.dirSet[dir] {
		p.dirSet[dir] = true
		dir = path.Dir(dir)
	}
}

func (p *plan) addFile(rel string, k kind, size int64) {
	p.add(fileSpec{path: rel, kind: k, size: size})
}

func (p *plan) add(f fileSpec) {
	p.addDir(path.Dir(f.path))
	p.taken[f.path] = true
	p.files = append(p.files, f)
}

func (p *plan) planRoot(r *rng) {
	for _, f := range []string{"index.php", "api.php", "load.php", "rest.php", "thumb.php"} {
		p.addFile(f, kindPHP, r.logUniform(2<<10, 6<<10))
	}
	p.addFile(definesPath, kindDefines, 6<<10)
	p.addFile("composer.json", kindManifest, 3<<10)
	p.addFile("README.md", kindDoc, 4<<10)
	p.addFile("COPYING", kindDoc, 18<<10)
	p.addFile("RELEASE-NOTES-"+p.version[:4], kindDoc, 40<<10)
}

// codeFileSize is log-uniform over 2–30 KB: mostly small classes, a tail
// of large ones (mean ≈ 10 KB).
func codeFileSize(r *rng) int64 { return r.logUniform(2<<10, 30<<10) }

// planArea fills root with PHP files spread over nested component
// directories until budget is used up.
func (p *plan) planArea(r *rng, root string, budget int64, components []string, suffix string) {
	for budget > 0 {
		dir := root
		if levels := r.intn(4); levels > 0 {
			dir += "/" + components[r.intn(len(components))]
			for i := 1; i < levels; i++ {
				dir += "/" + upperFirst(p.vocab.part(r))
			}
		}
		for n := r.between(3, 25); n > 0 && budget > 0; n-- {
			size := codeFileSize(r)
			p.addFile(p.className(r, dir, suffix), kindPHP, size)
			budget -= size
		}
	}
}

// className returns an unused "<dir>/<Class><suffix>.php" path.
func (p *plan) className(r *rng, dir, suffix string) string {
	for attempt := 0; ; attempt++ {
		name := p.vocab.class(r) + classSuffixes[r.intn(len(classSuffixes))]
		if attempt > 8 {
			name += strconv.Itoa(attempt)
		}
		rel := dir + "/" + name + suffix + ".php"
		if !p.taken[rel] {
			return rel
		}
	}
}

func (p *plan) planExtensions(r *rng, budget int64) {
	for budget > 0 {
		name := upperFirst(p.vocab.part(r)) + p.vocab.class(r)
		base := "extensions/" + name
		if p.dirSet[base] {
			continue
		}
		size := min(r.logUniform(30<<10, 4<<20), budget)
		budget -= size
		p.addFile(base+"/extension.json", kindManifest, r.logUniform(1<<10, 8<<10))
		p.addFile(base+"/README.md", kindDoc, r.logUniform(512, 4<<10))
		p.planArea(r, base+"/includes", size*75/100, coreComponents[:12], "")
		if r.percent(30) {
			p.planArea(r, base+"/maintenance", size*5/100, []string{"cleanup", "migrate"}, "")
		}
		p.planArea(r, base+"/tests/phpunit", size*20/100, []string{"unit", "integration"}, "Test")
	}
}

func (p *plan) planSkins(r *rng, budget int64) {
	for _, s := range skinNames {
		base := "skins/" + s
		p.addFile(base+"/skin.json", kindManifest, r.logUniform(2<<10, 8<<10))
		p.planArea(r, base+"/includes", budget/int64(len(skinNames)), []string{"Components", "Hooks", "Services"}, "")
	}
	p.links = append(p.links, linkSpec{"skins/default", "Vector"})
}

func (p *plan) planMaintenance(r *rng, budget int64) {
	p.addFile("maintenance/run.sh", kindScript, 2<<10)
	p.addFile("maintenance/dev/install.sh", kindScript, 3<<10)
	p.planArea(r, "maintenance", budget, []string{"includes", "storage", "language", "cleanup", "benchmarks", "dev"}, "")
}

// planAssets adds a few incompressible binaries of 100 KB–2 MB. The first
// is the wiki logo, which a symlink also points at.
func (p *plan) planAssets(r *rng, budget int64) {
	for budget > 0 {
		rel := "resources/assets/wiki.png"
		first := !p.taken[rel]
		size := r.logUniform(100<<10, 2<<20)
		if size > budget {
			if !first && budget < 100<<10 {
				break
			}
			size = max(budget, 100<<10)
		}
		if !first {
			dir := "resources/assets"
			if r.percent(30) {
				dir += "/" + p.vocab.part(r)
			}
			rel = dir + "/" + p.vocab.part(r) + "-" + p.vocab.part(r) + assetFormats[r.intn(len(assetFormats))]
			if p.taken[rel] {
				continue
			}
		} else {
			p.links = append(p.links, linkSpec{"resources/assets/logo.png", "wiki.png"})
		}
		p.addFile(rel, kindAsset, size)
		budget -= size
	}
}

// planL10n sizes one cache file per language. Weights fall off with rank: a
// steep head makes the first few languages several times the median, and
// a gentle tail keeps the last ones a fraction of it.
func (p *plan) planL10n(r *rng, budget int64) {
	codes := languageCodes(p.cfg.Languages)
	weights := make([]float64, len(codes))
	total := 0.0
	for i := range weights {
		head := 1 + float64(i)/2
		weights[i] = 4/(head*math.Sqrt(head)) + 2/(1+float64(i)/40)
		total += weights[i]
	}
	for i, c := range codes {
		sc, ok := scriptOf(c)
		if !ok && i >= len(realLanguages) {
			sc = scriptKind(r.intn(int(numScripts)))
		}
		size := int64(float64(budget) * weights[i] / total)
		p.langs = append(p.langs, language{code: c, script: sc, size: size})
		p.add(fileSpec{path: "cache/l10n/l10n_cache-" + c + ".json", kind: kindL10n, size: size, lang: i})
	}
	// The first language carries every key; size the key set for it.
	first := p.langs[0]
	p.langZ = newZipf(langWords, 1.0)
	wordBytes := newLangVocab(p.cfg.Seed, first, p.langZ).meanWordBytes(r)
	p.keys, p.shapes = messageKeys(r, p.vocab, float64(first.size-1024), wordBytes)
}
