package membership

import (
	"fmt"
	"slices"
)

// SetState sets the blob that this node sends in every push/pull exchange
// and join, which peers receive in OnState. Each member starts an exchange
// with one random member every PushPullInterval, so a change reaches a
// given peer within a few intervals rather than at once; use Broadcast for
// news. The blob is copied and at most MaxStateSize bytes; an empty blob
// is sent as such. Until the first SetState the node sends no blob.
func (n *Node) SetState(state []byte) error {
	if err := n.usable(); err != nil {
		return fmt.Errorf("set state: %w", err)
	}
	if len(state) > n.cfg.MaxStateSize {
		return fmt.Errorf("set state: %w: %d > %d bytes", ErrTooLarge, len(state), n.cfg.MaxStateSize)
	}
	blob := slices.Clone(state)
	n.stateMu.Lock()
	n.state, n.hasState = blob, true
	n.stateMu.Unlock()
	return nil
}

// localState builds the state frame for a push/pull exchange: the blob,
// if set, and the recent broadcasts; nil when there is neither.
func (n *Node) localState() []byte {
	recent := n.recent.snapshot()
	n.stateMu.Lock()
	blob, has := n.state, n.hasState
	n.stateMu.Unlock()
	if !has && len(recent) == 0 {
		return nil
	}
	buf := make([]byte, 0, stateFrameSize(n.cfg.Name, blob, recent))
	return appendStateFrame(buf, n.cfg.Name, has, blob, recent)
}

// receiveState handles a peer's LocalState (see delegate.MergeRemoteState).
func (n *Node) receiveState(buf []byte, join bool) {
	n.stats.statesReceived.Add(1)
	f, err := decodeFrame(buf, n.lim)
	if err == nil && f.kind != kindState {
		err = fmt.Errorf("%s frame in push/pull: %w", f.kind, errKind)
	}
	if err != nil {
		n.stats.statesDropped.Add(1)
		if !n.unknownFormat(err, "state") {
			n.log.Debug("dropped state", "size", len(buf), "join", join, "err", err)
		}
		return
	}
	for _, p := range f.recent {
		if n.acceptBroadcast(p) {
			n.stats.repaired.Add(1)
			n.log.Debug("broadcast repaired by push/pull", "from", f.from)
		}
	}
	if !f.hasBlob || n.cfg.OnState == nil || n.closed.Load() {
		return
	}
	from, blob := f.from, slices.Clone(f.payload)
	if blob == nil {
		blob = []byte{}
	}
	onState := n.cfg.OnState
	if !n.disp.push(func() { onState(from, blob) }, true) {
		n.dropCallback("state")
	}
}
