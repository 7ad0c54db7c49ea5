// Package hostcost measures what one host pays to take a release, against
// anchors that run on the same machine in the same rounds: it is
// `scatter bench --scenario host`.
//
// The cluster is two real `scatter seed` processes on loopback: an origin
// that holds one published release (a generated MediaWiki-like tree) and a
// host. Each round starts the host afresh — a new data directory holding
// only its enrolled key and the roster, so it joins, learns the release
// from the origin and fetches and stages all of it — and runs, alternating
// the order from round to round so that the machine's drift falls on both
// sides:
//
//   - scatter: the host's fetch and stage. Wall and CPU come from the
//     host's own status (swarm.ReleaseStatus): the transfer is from the
//     start of the fetch until every chunk is in the store, staging from
//     then until the tree is staged; the process's whole CPU from /proc.
//   - aria2c (skipped, with a message, if it is not installed): a stock
//     BitTorrent client downloading the release's `scatter torrent` from
//     the same origin (the host is stopped by then: both download from the
//     origin alone). The transfer anchor.
//   - `scatter materialize` of the release from the host's store: staging
//     alone, as a process.
//   - `cp -a` of the staged tree, then `sync -f` on the copy: the staging
//     anchor (staging syncs what it writes; cp alone does not).
//
// Nothing is deleted until the run ends, so that no round pays for the
// last one's deletion (checkSpace says why and checks the disk can hold
// every round). CPU of the children comes from their rusage. The report
// gives every round, then the median and the min–max spread of the ratios
// — staging CPU ÷ anchor, transfer CPU ÷ aria2c's — and of the walls.
//
// With AppLoad each round also runs a stand-in application (RunApp: CPU
// workers that count what they get done) alone, then during a fetch by a
// default host and by a host started with Config.Share, and reports the
// application's throughput during each fetch relative to alone, and the
// fetch's wall.
package hostcost
