// Package sim is a discrete-event simulator of swarm's piece exchange, for
// fan-outs too large for the real harness (swarm's BenchmarkFanOut runs 32
// real hosts in one process; this runs 100 to 10,000). It answers "how far
// from S/U is the last host, and why" at scale, and tries out changes to
// the protocol before anyone writes them. Its curve at 32 hosts is checked
// against a committed harness run (TestValidate32, testdata/).
//
// # What it models
//
// A release is one torrent of S bytes in pieces of swarm's length (about
// 1,024 pieces). Every host and the origin has an upload cap (U, or per host
// through Uploads); download is unlimited. At time 0 every host takes its
// stripe: the k-th of the N hosts lacking the release (by name) fetches
// pieces [k·P/N, (k+1)·P/N) from the origin, one after another, all stripes
// at once sharing the origin's upload (OriginSlots and OriginRoundRobin
// change that, as experiments). Hosts trade every piece over the peer wire with up to
// Neighbors (50, anacrolix's connection cap) other hosts: an uploader
// serves every interested neighbour at once, one piece per neighbour at a
// time, splitting its upload equally among them (UploadSlots caps them, and
// the capped slots then rotate among interested neighbours piece by piece); a
// downloader takes, from each neighbour, the rarest piece (fewest holders
// among a sample of up to 32 candidates) that it neither holds nor is
// receiving from someone else. A piece can be forwarded once all of it has
// arrived. A host whose progress stands still for StallAfter (10 s) adds the
// origin as a peer-wire peer, as swarm's fallback does (progress being
// anacrolix's bytes completed, which moves with every block over the peer
// wire but only with each whole stripe piece over HTTP); the origin keeps at
// most Neighbors such connections and stops serving them while OffloadAfter
// (2) hosts hold the release. Datacenters are joined by links of capacity
// InterDC per direction; a flow crossing one moves at the lesser of its
// uploader's share and its share of the link. A topology-aware host keeps
// a few remote neighbours and asks them only for pieces its own datacenter
// neither holds nor is receiving. Churn takes hosts away (their transfers
// stop, they keep their pieces) and brings them back to fetch anew.
//
// Bandwidth is a fluid: each flow moves at its current rate, and rates are
// recomputed only when the set of flows sharing an uploader or a link
// changes. Events are flow ends, churn and a one-second stall check; a
// heap keyed by each uploader's earliest flow end orders them. 10,000 hosts
// × 1,024 pieces is about ten million piece transfers, some ten seconds of
// CPU.
//
// # What it ignores
//
// Latency and round trips (a piece starts as soon as it is chosen), TCP
// dynamics and token-bucket burstiness, anacrolix's block-level requests
// (one piece comes from one uploader; anacrolix may split a piece's blocks
// among peers and re-requests the last blocks from several in its endgame),
// CPU (hashing, verification, gossip delays: the real harness shares cores
// among all its hosts), the announcement's spread through gossip (every
// host starts at time 0), rarity as each host sees it (it uses the global
// count), max-min fairness between an uploader and a link (the lesser share
// can leave a link under-used), and the time a rejoining host spends
// reconnecting. Its times are therefore a little optimistic; it is meant
// for the shape of curves and for ratios to S/U, not for seconds.
//
// RunCentral is the baseline every fan-out figure is compared with: each
// host fetches the whole release from the origin alone, N·S/U_origin.
package sim
