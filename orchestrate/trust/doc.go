// Package trust is who may speak for whom. The deploy key signs a roster:
// each enrolled host's name, its own ed25519 public key and the labels the
// operator vouches for (datacenter, rack, role). Every host keeps the newest
// roster it has seen (Book) and checks against it everything another host
// says about itself: acks, holds notes, state blobs, advertised ports. A
// host signs those statements with its host key (Seal, SignClaim), so a
// holder of the shared gossip key can still only speak for itself.
//
// Vocabulary:
//   - host key: a host's own ed25519 key pair, created on first start in its
//     data directory (LoadOrCreateHostKey); the private half never leaves it;
//   - roster: the deploy-signed list of enrolled hosts (Roster, SignRoster,
//     OpenRoster), versioned: a Book never goes back to an older version;
//   - enrolled: on the roster with the key that signed the statement;
//   - pending: in gossip, advertising a key, but not on the roster; what it
//     says counts for nothing until an operator approves it;
//   - new key: a roster name advertising a key other than the roster's; never
//     approved automatically (Approve with all skips it);
//   - statement: a host-signed message of one kind (ack, holds, state, meta),
//     domain-separated from the other kinds and from the deploy key's uses;
//   - refusal: a statement dropped for a reason (not enrolled, bad
//     signature, wrong name…), counted per reason and logged once per sender
//     (Tally).
//
// The package does no network I/O: host (package orchestrate/host) carries
// the bytes, the CLI edits rosters with Approve, Add and Revoke.
package trust
