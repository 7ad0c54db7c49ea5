package membership

import (
	"sync"
	"time"
)

// seenSet remembers message IDs for a window of time, holding at most max
// of them; the oldest are forgotten first. It is safe for concurrent use
// and add is O(1) amortized, so NotifyMsg can call it without blocking.
type seenSet struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu    sync.Mutex
	ids   map[msgID]struct{}
	order []seenEntry // insertion (and so time) order; order[head:] is live
	head  int
}

type seenEntry struct {
	id msgID
	at time.Time
}

func newSeenSet(ttl time.Duration, max int, now func() time.Time) *seenSet {
	return &seenSet{ttl: ttl, max: max, now: now, ids: make(map[msgID]struct{})}
}

// add records id and reports whether it was new.
func (s *seenSet) add(id msgID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.expireLocked(now)
	if _, ok := s.ids[id]; ok {
		return false
	}
	for len(s.ids) >= s.max {
		s.evictOldestLocked()
	}
	s.ids[id] = struct{}{}
	s.order = append(s.order, seenEntry{id: id, at: now})
	return true
}

func (s *seenSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ids)
}

func (s *seenSet) expireLocked(now time.Time) {
	for s.head < len(s.order) && now.Sub(s.order[s.head].at) >= s.ttl {
		s.evictOldestLocked()
	}
}

func (s *seenSet) evictOldestLocked() {
	delete(s.ids, s.order[s.head].id)
	s.head++
	// Compact once the dead prefix is at least half the slice, which keeps
	// both the memory and the amortized cost bounded.
	if s.head >= 1024 && s.head*2 >= len(s.order) {
		n := copy(s.order, s.order[s.head:])
		s.order = s.order[:n]
		s.head = 0
	} else if s.head == len(s.order) {
		s.order = s.order[:0]
		s.head = 0
	}
}
