// Package swarm moves a release from the deploy host to every target host,
// BitTorrent-style, over the artifact store, and stages it. It is the data
// plane of scatter: membership (package orchestrate/membership) says who
// the peers are and what they hold; this package fetches, verifies, serves
// and stages the bytes. anacrolix/torrent v1.59.1 is the peer wire, and its
// types never leave this package.
//
// How one release travels:
//
//  1. The deploy host builds the release into its store (package artifact)
//     and Prepare lays out its torrents and signs an Announcement: the
//     release ID, its version, the info hashes of its full torrent and of
//     its delta against the parent release.
//  2. Every Node that accepts the announcement (it must verify against the
//     deploy key) first fetches the metadata — the signed manifest and the
//     torrent's info bytes — from peers before the origin, one answer at a
//     time per node at its upload cap, so the metadata spreads like pieces
//     do (metadata.go).
//  3. A host that holds the parent fetches the delta torrent (only the
//     chunks new since the parent), any other host the full one. Pieces a
//     host's store already covers count as complete before a byte moves
//     (storage.go): the torrent's data is the release's zstd chunk frames
//     back to back (layout.go), so a piece is a range of chunks.
//  4. The origin sends each piece once: every host fetching the same
//     torrent takes its stripe (slot i of n, stripe) from the origin, the
//     origin sending whole pieces round robin (turns.go), and everything
//     else from peers. Once two hosts hold the release the origin stops
//     uploading it (offload). With datacenter labels only the origin's
//     datacenter takes stripes, and only each datacenter's bridges talk
//     across datacenters (topology.go).
//  5. Every chunk is checked against its SHA-256 before it enters the store;
//     a peer that sends bad data is banned. When every piece is complete
//     the release is materialized under releases/<id> (package artifact) and
//     the node reports it staged; the agent (orchestrate/agent) promotes it.
//
// A fetch that stops making progress is diagnosed (follow.go: no peers, no
// peer holds the missing pieces, peers choking or rejecting, a failed
// write), reconnects when peers hold what it lacks, and falls back to the
// origin when its stripe's host left. Old releases beyond Config.Keep are
// collected, never the ones the current and previous links name.
//
// Who owns what. A Node is the wiring of these parts, each with its own
// state under its own lock or goroutine; none reaches into another's:
//
//   - registry (registry.go): the repos, each with its store, and the
//     releases announced for them — their State, progress, stall reason,
//     seeds — plus retention (Keep, retention.go) and the layouts served
//     as stripes. One lock, taken only in the registry's methods. A release's State is
//     written by one goroutine, its repo's fetch loop: Announce adds it
//     Queued and pokes the loop (a message on the repo's wake channel); the
//     loop moves it to Fetching, then Staged or Failed, and schedules a
//     failed one's retry on the clock.
//   - fetcher (fetch.go): the fetch of one release at a time per repo —
//     metadata from peers (metaClient, metadata.go), the pieces, staging.
//     The piece transfer is a pieceFetch (follow.go): one goroutine owns
//     its progress, stall, fallback to the origin and reconnects, and
//     hears from the stripe's goroutine (stripe.go) and the engine by
//     messages; it reports what others read (why it is stuck) to the
//     registry.
//   - metaServer (metaserver.go): the HTTP server peers ask for manifests,
//     info bytes and stripes; it owns its listener and gate, its metadata
//     slots and per-client holds, the stripe turns (turns.go), and the set
//     of paths being received. It reads releases through releaseSource,
//     two methods of the registry. The node adds the tracker (tracker.go)
//     and /v1/status to its routes.
//   - allowlist (allow.go): who may use the data plane, refreshed by its
//     own loop; peerView (peers.go, topology.go): which peers to dial and
//     which stripe to take, read afresh from PeerSource; stalls
//     (stalls.go): stalls counted by reason, banned peers reported once.
//   - the origin's offload loop (offload.go) decides when it stops
//     uploading a release, and tells the registry.
//
// Status (status.go) reads the engine's counters, the stall record and
// the registry, each under its own lock, one after another.
//
// Time. Every decision above reads the node's clock (package
// swarm/clock, Config.Clock): tests give a node a fake clock and cross a
// ten-second stall or a five-second retry without waiting for it.
//
// Vocabulary: Node (one host's part: stores, engine, metadata server),
// Engine (the anacrolix client, one per host), Transfer (one torrent on
// one host), Layout (where each chunk sits in a torrent), Kind (Full or
// Delta), S (bytes of the full torrent) and U (a host's upload cap): the
// fan-out cannot beat about S/U, and every benchmark is quoted against it.
package swarm
