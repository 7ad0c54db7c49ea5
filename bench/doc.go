// Package bench measures scatter: the artifact round trip (RoundTrip) now,
// and later the fan-out harness, the central baseline and the simulator.
// Its subpackage gen generates the MediaWiki-like release trees that tests
// and benchmarks share.
package bench
