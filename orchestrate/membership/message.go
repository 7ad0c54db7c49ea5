package membership

import (
	"fmt"
	"slices"
)

// SendTo sends msg to the named member over TCP. It is delivered to that
// member's OnMessage (once per call: direct messages are not
// de-duplicated) and not relayed. msg is at most MaxDirectSize bytes.
// SendTo blocks until the message is written, bounded by TCPTimeout for
// connecting.
func (n *Node) SendTo(name string, msg []byte) error {
	if err := n.usable(); err != nil {
		return fmt.Errorf("send to %s: %w", name, err)
	}
	if len(msg) == 0 {
		return fmt.Errorf("send to %s: %w", name, ErrEmpty)
	}
	if len(msg) > n.cfg.MaxDirectSize {
		return fmt.Errorf("send to %s: %w: %d > %d bytes", name, ErrTooLarge, len(msg), n.cfg.MaxDirectSize)
	}
	m, ok := n.Member(name)
	if !ok {
		return fmt.Errorf("send to %s: %w", name, ErrUnknownMember)
	}
	f := appendFrame(make([]byte, 0, headerLen+len(msg)), kindDirect, msg)
	if err := n.ml.SendReliable(m.mlNode(), f); err != nil {
		return fmt.Errorf("send to %s: %w", name, err)
	}
	return nil
}

// receive handles a user message from memberlist (see delegate.NotifyMsg).
func (n *Node) receive(buf []byte) {
	n.stats.received.Add(1)
	f, err := decodeFrame(buf, n.lim)
	if err == nil && f.kind == kindState {
		err = fmt.Errorf("%s frame outside push/pull: %w", f.kind, errKind)
	}
	if err != nil {
		n.stats.dropped.Add(1)
		n.log.Debug("dropped message", "size", len(buf), "err", err)
		return
	}
	if f.kind == kindBroadcast {
		if !n.acceptBroadcast(f.payload) {
			n.stats.duplicates.Add(1)
		}
		return
	}
	n.deliver(f.payload)
}

// deliver hands a copy of payload to OnMessage.
func (n *Node) deliver(payload []byte) {
	if n.cfg.OnMessage == nil || n.closed.Load() {
		return
	}
	p := slices.Clone(payload)
	onMessage := n.cfg.OnMessage
	if !n.disp.push(func() { onMessage(p) }, true) {
		n.dropCallback("message")
		return
	}
	n.stats.delivered.Add(1)
}

func (n *Node) dropCallback(what string) {
	n.stats.callbacksDropped.Add(1)
	n.log.Debug("callback queue full, dropped event", "event", what, "max", n.cfg.MaxPendingCallbacks)
}
