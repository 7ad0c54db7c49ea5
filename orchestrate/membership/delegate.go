package membership

import (
	"github.com/hashicorp/memberlist"
)

// delegate is the Node's memberlist.Delegate. memberlist calls every method
// concurrently from its network goroutines: NotifyMsg from the UDP packet
// handler (one goroutine for the whole node: blocking it stops failure
// detection) and from one goroutine per TCP stream; GetBroadcasts from the
// gossip and probe loops; LocalState and MergeRemoteState from push/pull
// and joins. None of them blocks: each takes short-lived locks of this
// package only, and hands application callbacks to the dispatcher.
type delegate struct{ n *Node }

var _ memberlist.Delegate = delegate{}

// NodeMeta returns the encoded Meta. memberlist panics when the result
// exceeds limit; UpdateMeta and Validate keep it within MetaMaxSize, and
// this check keeps the promise even if limit ever shrinks.
func (d delegate) NodeMeta(limit int) []byte {
	d.n.metaMu.Lock()
	meta := d.n.meta
	d.n.metaMu.Unlock()
	if len(meta) > limit {
		d.n.log.Debug("node meta over memberlist's limit, sending none", "size", len(meta), "limit", limit)
		return nil
	}
	return meta
}

// NotifyMsg receives every user message: gossiped broadcast frames,
// Broadcast's first push, and SendTo messages. memberlist may reuse buf
// after the call, so whatever is kept is copied.
func (d delegate) NotifyMsg(buf []byte) {
	d.n.receive(buf)
}

// GetBroadcasts hands memberlist queued frames that fit in limit bytes,
// each costing overhead more.
func (d delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.n.queue.GetBroadcasts(overhead, limit)
}

// LocalState returns the state frame: SetState's blob and the recent
// broadcasts for repair (see repair.go). It allocates the frame each time,
// once per push/pull exchange.
func (d delegate) LocalState(join bool) []byte {
	return d.n.localState()
}

// MergeRemoteState receives the remote side's LocalState.
func (d delegate) MergeRemoteState(buf []byte, join bool) {
	d.n.receiveState(buf, join)
}

// events is the Node's memberlist.EventDelegate. memberlist calls it with
// its node lock held, one call at a time, so it only updates the Node's
// own member table, which Members reads without touching memberlist, and
// queues the application callback.
type events struct{ n *Node }

var _ memberlist.EventDelegate = events{}

func (e events) NotifyJoin(node *memberlist.Node) {
	m := memberOf(node, true, e.n.log)
	e.n.setMember(m)
	e.n.notify(e.n.cfg.OnJoin, m)
}

func (e events) NotifyLeave(node *memberlist.Node) {
	m := memberOf(node, false, e.n.log)
	m.Left = node.State == memberlist.StateLeft
	e.n.removeMember(m.Name)
	if m.Left {
		e.n.forgetLeft(m.Name)
	}
	e.n.notify(e.n.cfg.OnLeave, m)
}

func (e events) NotifyUpdate(node *memberlist.Node) {
	m := memberOf(node, true, e.n.log)
	e.n.setMember(m)
	e.n.notify(e.n.cfg.OnUpdate, m)
}
