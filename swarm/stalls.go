package swarm

import (
	"log/slog"
	"maps"
	"sort"
	"sync"
)

// StallReason is the kind of a stall: a short, fixed name for counting
// (metrics label them by it), where ReleaseStatus.Stuck says it in words.
type StallReason string

// The reasons a fetch stalls, in the order diagnose tries them.
const (
	StallNoPeers      StallReason = "no_peers"      // membership knows no other host
	StallWriteFailed  StallReason = "write_failed"  // received blocks cannot be written
	StallPeersBanned  StallReason = "peers_banned"  // every peer sent bad data
	StallNotConnected StallReason = "not_connected" // peers known, none reachable
	StallNoHolder     StallReason = "no_holder"     // connected, none holds a missing piece
	StallBadPieces    StallReason = "bad_pieces"    // pieces failed verification
	StallRejected     StallReason = "rejected"      // holders reject our requests
	StallNotSending   StallReason = "not_sending"   // holders choke, are capped, or do not answer
)

// StallReasons lists every StallReason.
var StallReasons = []StallReason{StallNoPeers, StallWriteFailed, StallPeersBanned, StallNotConnected,
	StallNoHolder, StallBadPieces, StallRejected, StallNotSending}

// stalls is a node's record of what went wrong since it started: the
// stalls begun, by reason, and the peers banned for sending data that
// failed verification, each logged once. It has its own lock; Status
// reads it.
type stalls struct {
	log      *slog.Logger
	onChange func()
	// bannedIPs lists the peers the engine banned; name names one of
	// them for the log.
	bannedIPs func() []string
	name      func(ip string) string

	mu     sync.Mutex
	counts map[StallReason]int64
	bad    map[string]bool // banned peers already reported
}

// begun counts a stall that began for reason.
func (s *stalls) begun(reason StallReason) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts[reason]++
}

// reportBanned logs, once each, peers banned for failed piece hashes.
func (s *stalls) reportBanned() {
	for _, ip := range s.bannedIPs() {
		s.mu.Lock()
		seen := s.bad[ip]
		s.bad[ip] = true
		s.mu.Unlock()
		if !seen {
			s.log.Error("peer sent data that failed verification; banned", "peer", s.name(ip), "ip", ip)
			s.onChange()
		}
	}
}

// report returns the stalls counted by reason (nil if none) and the
// banned peers reported, sorted.
func (s *stalls) report() (map[StallReason]int64, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var counts map[StallReason]int64
	if len(s.counts) > 0 {
		counts = maps.Clone(s.counts)
	}
	var bad []string
	for ip := range s.bad {
		bad = append(bad, ip)
	}
	sort.Strings(bad)
	return counts, bad
}
