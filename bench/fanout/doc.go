// Package fanout is scatter's fan-out harness, what `scatter bench` runs:
// a local cluster of real hosts (orchestrate/host.Host, the type `scatter
// seed` runs: real swarm, real gossip, real stores), each on its own
// loopback address and upload cap, that receives a generated MediaWiki-like
// release (bench/gen) from an origin, rolls it out with canaries, batches
// and health checks (orchestrate/deploy), then receives and deploys two
// deltas (a code change and a localisation update).
//
// Vocabulary. S is the bytes of a release's full torrent (its compressed
// chunks); U is a host's upload cap in bytes per second. No distribution
// can put S on every host in less than about S/U (Kumar & Ross, 2006), so
// every completion time is also given as a ratio to S/U measured in the
// same run. The central baseline is every host fetching the release from
// the origin alone over HTTP at the origin's cap, which takes N·S/U_origin.
//
// Everything runs in one process, so CPU and memory are the process's, not
// a host's: the report divides CPU seconds by the number of hosts and says
// so. With many hosts on few cores, a short S/U makes the run CPU-bound,
// and the ratios then measure the machine as much as the swarm.
//
// In netns mode (Config.Netns, root only) the same run uses real `scatter
// seed` processes instead, each in its own network namespace (bench/netns)
// with its uplink capped by tc, to check the in-process figures on a real
// network stack. The harness reaches a host through a member: a host.Host
// in this process, or a daemon's control socket and metadata server.
package fanout
