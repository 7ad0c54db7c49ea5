// Package membership is scatter's gossip layer: which hosts are alive, what
// they advertise, and the epidemic channel that carries the deploy host's
// signed commands and the hosts' answers. It adapts hashicorp/memberlist
// (SWIM failure detection, encrypted gossip over UDP, full-state push/pull
// over TCP) the way serf does: memberlist types never leave the package, so
// orchestrate and swarm see only Node, Config, Member, Meta and Stats.
//
// Vocabulary:
//   - member: one node of the cluster, named by its host ID (Member);
//   - meta: a member's small advertised record, role, datacenter, rack and
//     service ports, at most 512 bytes encoded (Meta, UpdateMeta);
//   - state blob: a member's larger opaque record, exchanged pairwise at
//     join and every PushPullInterval (SetState, Config.OnState); peers see
//     it late but surely, which suits "what I hold", not "do this now";
//   - broadcast: a message for every member (Broadcast, Config.OnMessage),
//     delivered once to each, by gossip in about a second;
//   - relay: a member queueing a broadcast again on first receipt, because
//     memberlist itself sends a queued message only from the node that
//     queued it and only RetransmitMult·⌈log10(N+1)⌉ times;
//   - repair: recent broadcasts riding along in push/pull exchanges, so the
//     few members that gossip misses get them a push/pull interval later;
//   - message ID: SHA-256 of a broadcast's payload; the seen set remembers
//     IDs for DedupeWindow so each member delivers and relays a message once;
//   - direct message: point-to-point over TCP (SendTo), for acknowledgements;
//   - seed: a configured join address (Config.Seeds);
//   - remembered member: one this node has seen alive, kept on disk
//     (Config.KnownFile) so that the node rejoins it after a restart;
//   - rejoin: joining seeds and remembered members again whenever they are
//     missing from the member list, since memberlist forgets a dead member
//     30 s after declaring it dead and never contacts it again (rejoin.go;
//     Joined reports the last join and who is still missing);
//   - frame: the few header bytes (version, kind, and for state the sender's
//     name) in front of everything this package gives memberlist, so that
//     garbage, truncated, unknown and oversized input is dropped and
//     counted (Stats), never trusted and never a panic.
//
// The package authenticates nothing beyond the shared SecretKey: any holder
// of the key can broadcast, and a state blob's sender name is what the
// sender wrote. Commands therefore carry their own signatures, checked by
// the layer above (package orchestrate).
//
// memberlist reports through process-wide go-metrics; this package neither
// configures nor reads that sink.
package membership
