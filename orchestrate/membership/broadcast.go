package membership

import (
	"crypto/sha256"
	"fmt"

	"github.com/hashicorp/memberlist"
)

// memberlist transmits a queued user broadcast only
// RetransmitMult·⌈log10(N+1)⌉ times from the node that queued it and never
// relays it: a receiver hands it to NotifyMsg and that is all. Alone, that
// reaches a fraction of a large cluster. So every node that receives a
// broadcast it has not seen before queues the same frame again, which
// makes the spread epidemic, and remembers the message ID so that the
// copies arriving from other relayers are dropped instead of delivered and
// relayed again.

// msgID names a broadcast: the SHA-256 of its payload. Two broadcasts with
// the same payload are the same message; a sender that repeats itself on
// purpose must make the payloads differ (a sequence number, a time).
type msgID [sha256.Size]byte

func idOf(payload []byte) msgID { return sha256.Sum256(payload) }

// queuedBroadcast is one frame in the TransmitLimitedQueue. Distinct
// messages never invalidate each other, and the queue never holds two
// copies of one message because the seen set admits each ID once, so it
// is a memberlist.UniqueBroadcast, which spares the queue its scan for
// invalidated entries on every insert.
type queuedBroadcast struct {
	frame []byte
}

var _ memberlist.UniqueBroadcast = (*queuedBroadcast)(nil)

func (b *queuedBroadcast) Invalidates(memberlist.Broadcast) bool { return false }
func (b *queuedBroadcast) Message() []byte                       { return b.frame }
func (b *queuedBroadcast) Finished()                             {}
func (b *queuedBroadcast) UniqueBroadcast()                      {}

// Broadcast sends msg to every member by epidemic gossip: this node sends
// it at once to GossipNodes random members and queues it for gossip; each
// member that receives it for the first time delivers it to its OnMessage
// and queues it again. It is not delivered to this node's own OnMessage.
// Gossip (UDP) typically reaches all members within a second; the rare
// member it misses gets the message from the push/pull repair within a
// push/pull interval or two (see RepairWindow). Broadcast survives this
// node shutting down right after it returns, because the first push has
// then already left. The payload is at most MaxMessageSize bytes and is
// the message's identity: sending the same bytes again within
// DedupeWindow returns ErrDuplicate.
func (n *Node) Broadcast(msg []byte) error {
	if err := n.usable(); err != nil {
		return fmt.Errorf("broadcast: %w", err)
	}
	if len(msg) == 0 {
		return fmt.Errorf("broadcast: %w", ErrEmpty)
	}
	if len(msg) > n.cfg.MaxMessageSize {
		return fmt.Errorf("broadcast: %w: %d > %d bytes", ErrTooLarge, len(msg), n.cfg.MaxMessageSize)
	}
	if !n.seen.add(idOf(msg)) {
		return fmt.Errorf("broadcast: %w", ErrDuplicate)
	}
	f := appendFrame(make([]byte, 0, headerLen+len(msg)), kindBroadcast, msg)
	n.enqueue(f)
	n.recent.add(f[headerLen:])
	n.stats.broadcasts.Add(1)
	// The first push: the queue alone would wait for the next gossip tick,
	// and a sender that shuts down before it would send nothing. A failed
	// push is not an error of Broadcast: the queued copy still goes out.
	for _, p := range n.randomPeers(n.cfg.GossipNodes) {
		if err := n.ml.SendBestEffort(p.mlNode(), f); err != nil {
			n.log.Debug("first push of broadcast failed; gossip will retry", "to", p.Name, "err", err)
		}
	}
	return nil
}

// enqueue queues a broadcast frame for gossip and prunes the queue past
// MaxQueueDepth, dropping the messages sent most often.
func (n *Node) enqueue(f []byte) {
	n.queue.QueueBroadcast(&queuedBroadcast{frame: f})
	if q := n.queue.NumQueued(); q > n.cfg.MaxQueueDepth {
		n.queue.Prune(n.cfg.MaxQueueDepth)
		pruned := q - n.queue.NumQueued()
		if pruned > 0 {
			n.stats.pruned.Add(uint64(pruned))
			n.log.Debug("broadcast queue full, pruned", "pruned", pruned, "depth", n.cfg.MaxQueueDepth)
		}
	}
}

// acceptBroadcast handles a broadcast payload from gossip or repair, which
// the caller owns. If it is new, acceptBroadcast relays it (queues it for
// gossip and keeps it for repair) and delivers it, and reports true.
func (n *Node) acceptBroadcast(payload []byte) bool {
	if !n.seen.add(idOf(payload)) {
		return false
	}
	// The relayed frame is the one that was sent, so the payload and its ID
	// stay the same. The queue and the repair log share this copy, which
	// nothing modifies; the callback gets one of its own.
	f := appendFrame(make([]byte, 0, headerLen+len(payload)), kindBroadcast, payload)
	n.enqueue(f)
	n.recent.add(f[headerLen:])
	n.stats.relayed.Add(1)
	n.deliver(payload)
	return true
}
