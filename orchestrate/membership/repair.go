package membership

import (
	"sync"
	"time"
)

// Epidemic gossip with a fixed retransmit budget misses a member now and
// then: each member receives about RetransmitMult·⌈log10(N+1)⌉ copies of a
// message, at random, and gets none with probability about e^-copies
// (measured with the defaults: 1e-4 to 8e-4 per member and message at
// N=20, so a 50-member cluster misses someone on one or two messages in a
// hundred). memberlist
// repairs its own membership gossip with the periodic push/pull exchange;
// this package does the same for broadcasts. Every member keeps the
// broadcasts of the last RepairWindow (its own and those it received), up
// to RepairBytes, and sends them in each push/pull state frame; the peer
// treats each as if gossip had brought it, so a message it missed is
// delivered and relayed then, and one it has seen costs a hash lookup.
// A member in the cluster at any time within RepairWindow after a
// broadcast therefore gets it, typically within a push/pull interval or
// two; one that joins later than that does not.

// recentLog holds recent broadcast payloads in arrival order. Payloads are
// shared with the gossip queue and never modified.
type recentLog struct {
	window   time.Duration
	maxBytes int
	now      func() time.Time

	mu      sync.Mutex
	entries []recentEntry // entries[head:] are live, oldest first
	head    int
	bytes   int // cost of live entries
}

type recentEntry struct {
	payload []byte
	at      time.Time
}

// entryCost counts a payload with its length prefix in the state frame
// (at most 3 bytes for the payload sizes Validate allows).
func entryCost(p []byte) int { return len(p) + 3 }

func newRecentLog(window time.Duration, maxBytes int, now func() time.Time) *recentLog {
	return &recentLog{window: window, maxBytes: maxBytes, now: now}
}

// add appends payload, forgetting the oldest entries beyond the byte budget.
func (r *recentLog) add(payload []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.entries = append(r.entries, recentEntry{payload: payload, at: r.now()})
	r.bytes += entryCost(payload)
	for r.bytes > r.maxBytes {
		r.dropOldestLocked()
	}
}

// snapshot returns the live payloads, oldest first.
func (r *recentLog) snapshot() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	for r.head < len(r.entries) && now.Sub(r.entries[r.head].at) >= r.window {
		r.dropOldestLocked()
	}
	out := make([][]byte, 0, len(r.entries)-r.head)
	for _, e := range r.entries[r.head:] {
		out = append(out, e.payload)
	}
	return out
}

func (r *recentLog) dropOldestLocked() {
	r.bytes -= entryCost(r.entries[r.head].payload)
	r.entries[r.head] = recentEntry{}
	r.head++
	if r.head == len(r.entries) {
		r.entries, r.head = r.entries[:0], 0
	} else if r.head >= 256 && r.head*2 >= len(r.entries) {
		n := copy(r.entries, r.entries[r.head:])
		clear(r.entries[n:])
		r.entries, r.head = r.entries[:n], 0
	}
}
