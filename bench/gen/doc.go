// Package gen generates deterministic, MediaWiki-like release trees for
// tests and benchmarks of the deploy tool.
//
// A deploy tool that chunks content and deduplicates it is only as well
// tested as its input is realistic: random bytes defeat every compressor and
// chunk store, and repeated boilerplate flatters them. Generate therefore
// builds trees that resemble a real MediaWiki deployment in shape and in
// statistics:
//
//   - ~35% PHP-like source under includes/, extensions/<Name>/, skins/,
//     maintenance/ and tests/: thousands of 2–30 KB files in nested
//     directories, built from a per-tree pool of identifiers and stock
//     lines so it compresses about 3–4× like real code, not 50×;
//   - ~60% localisation caches, cache/l10n/l10n_cache-<lang>.json, one per
//     language. All languages share one sorted key set; values come from a
//     per-language synthetic vocabulary, so languages compress like text
//     but never deduplicate against each other. Sizes fall off with rank:
//     a few languages are large, the long tail is small;
//   - ~5% incompressible binary assets under resources/assets/;
//   - executable scripts (0755), relative symlinks (skins/default -> Vector)
//     and an empty directory (images/).
//
// Output is a pure function of the Config: the layout is planned from the
// seed, and each file's bytes are generated from a PRNG seeded with the tree
// seed and the file's path. Files can thus be written concurrently and in
// any order without changing a byte.
//
// MutateCode and MutateL10n model the two kinds of deploy that matter for
// delta transfer: a small code change spread over ~1% of the source files,
// and a localisation update touching every language file a little. Both are
// deterministic functions of the tree and a seed.
package gen
