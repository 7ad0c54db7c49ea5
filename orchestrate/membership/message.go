package membership

import (
	"errors"
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
		if !n.unknownFormat(err, "message") {
			n.log.Debug("dropped message", "size", len(buf), "err", err)
		}
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

// unknownFormat counts a frame refused for its format version and says so
// at warn, once per version: a member that speaks a format this build does
// not read (a newer scatter, mid-upgrade) must be seen in the log and in
// status, not silently dropped. It reports whether err was such a refusal.
func (n *Node) unknownFormat(err error, what string) bool {
	var v versionError
	if !errors.As(err, &v) {
		return false
	}
	n.stats.formatRefused.Add(1)
	n.formatsMu.Lock()
	if n.formats == nil {
		n.formats = map[byte]uint64{}
	}
	first := n.formats[byte(v)] == 0
	n.formats[byte(v)]++
	n.formatsMu.Unlock()
	if first {
		n.log.Warn("refused gossip of an unknown format version: a member runs a scatter this build cannot read; upgrade this host",
			"what", what, "version", int(v), "understood", frameVersion)
	}
	return true
}

func (n *Node) dropCallback(what string) {
	n.stats.callbacksDropped.Add(1)
	n.log.Debug("callback queue full, dropped event", "event", what, "max", n.cfg.MaxPendingCallbacks)
}
