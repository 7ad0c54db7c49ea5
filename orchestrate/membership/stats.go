package membership

import (
	"slices"
	"sync/atomic"
)

// Stats counts what a Node did with the messages it received since New.
// Of the MessagesReceived, MessagesDropped were invalid, Duplicates were
// broadcasts seen before, and the rest are new broadcasts (Relayed) and
// direct messages. Push/pull exchanges add the broadcasts they repair to
// Relayed and Repaired. Every new broadcast and direct message is passed
// to OnMessage (Delivered) unless OnMessage is nil or CallbacksDropped.
type Stats struct {
	MessagesReceived uint64 // user messages memberlist handed over, valid or not
	MessagesDropped  uint64 // malformed, unknown, truncated or oversized frames
	Duplicates       uint64 // broadcasts already seen
	Relayed          uint64 // broadcasts seen for the first time and queued again
	Repaired         uint64 // of which the push/pull repair brought, gossip having missed them
	Delivered        uint64 // payloads queued for OnMessage
	Broadcasts       uint64 // Broadcast calls that queued a message
	StatesReceived   uint64 // push/pull state blobs received, valid or not
	StatesDropped    uint64 // of which malformed or oversized
	CallbacksDropped uint64 // message and state events dropped: MaxPendingCallbacks reached
	QueuePruned      uint64 // queued broadcasts pruned: MaxQueueDepth reached
	QueueDepth       int    // broadcasts waiting in the gossip queue now
	// FormatRefused counts messages and states (within MessagesDropped and
	// StatesDropped) refused because their frame's format version is one
	// this build does not read; FormatVersions lists those versions.
	FormatRefused  uint64
	FormatVersions []int
}

type counters struct {
	received, dropped, duplicates, relayed, repaired, delivered, broadcasts atomic.Uint64
	statesReceived, statesDropped, callbacksDropped, pruned                 atomic.Uint64
	formatRefused                                                           atomic.Uint64
}

// Stats returns a snapshot of the counters.
func (n *Node) Stats() Stats {
	c := &n.stats
	return Stats{
		MessagesReceived: c.received.Load(),
		MessagesDropped:  c.dropped.Load(),
		Duplicates:       c.duplicates.Load(),
		Relayed:          c.relayed.Load(),
		Repaired:         c.repaired.Load(),
		Delivered:        c.delivered.Load(),
		Broadcasts:       c.broadcasts.Load(),
		StatesReceived:   c.statesReceived.Load(),
		StatesDropped:    c.statesDropped.Load(),
		CallbacksDropped: c.callbacksDropped.Load(),
		QueuePruned:      c.pruned.Load(),
		QueueDepth:       n.queue.NumQueued(),
		FormatRefused:    c.formatRefused.Load(),
		FormatVersions:   n.formatVersions(),
	}
}

func (n *Node) formatVersions() []int {
	n.formatsMu.Lock()
	defer n.formatsMu.Unlock()
	var out []int
	for v := range n.formats {
		out = append(out, int(v))
	}
	slices.Sort(out)
	return out
}
