// Package bench measures scatter. This package holds the artifact round
// trip (RoundTrip: build, rebuild, materialize cold and with reuse, verify)
// and the tree comparison the harnesses share; its subpackages are the
// fan-out harness that `scatter bench` runs (fanout: real hosts in one
// process or, with --netns, real daemons in network namespaces), the
// namespaces and tc shaping (netns), the large-scale simulator (sim), the
// MediaWiki-like release generator that tests and benchmarks share (gen),
// and the SVG plots (plot).
package bench
