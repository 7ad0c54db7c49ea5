package membership

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Every byte string this package hands to memberlist is a frame:
//
//	version (1 byte, frameVersion) | kind (1 byte) | body
//
// kindBroadcast and kindDirect carry the application payload as the body.
// kindState is what LocalState returns for a push/pull exchange. It names
// the sender, because memberlist's MergeRemoteState does not say who the
// remote side was, and carries the recent broadcasts for repair:
//
//	name length (1 byte, 1..255) | name | flags (1 byte: bit 0 = has blob)
//	| uvarint blob length | blob
//	| uvarint count | count × (uvarint length | broadcast payload)
//
// Uvarints must be minimal, and unused flag bits zero, so that each frame
// has exactly one encoding.
//
// Frames come from the network, so decodeFrame treats them as untrusted:
// it checks every length against the buffer and the configured limits
// before using it, allocates nothing in proportion to a claimed length,
// and reports a problem as an error, never a panic.
const (
	frameVersion = 1
	headerLen    = 2
	maxNameLen   = 255
	flagHasBlob  = 1
)

type frameKind byte

const (
	kindBroadcast frameKind = 1 // epidemic broadcast: deduplicated and relayed
	kindDirect    frameKind = 2 // point-to-point message from SendTo
	kindState     frameKind = 3 // push/pull: sender, state blob, recent broadcasts
)

func (k frameKind) String() string {
	switch k {
	case kindBroadcast:
		return "broadcast"
	case kindDirect:
		return "direct"
	case kindState:
		return "state"
	}
	return fmt.Sprintf("kind(%d)", byte(k))
}

// Reasons a frame is rejected. They stay unexported: callers of the package
// only ever see them counted in Stats and in debug logs.
var (
	errTruncated = errors.New("truncated frame")
	errVersion   = errors.New("unknown frame version")
	errKind      = errors.New("unknown frame kind")
	errEmpty     = errors.New("empty payload")
	errTooLarge  = errors.New("payload too large")
	errName      = errors.New("bad sender name")
	errEncoding  = errors.New("non-canonical encoding")
)

// versionError is a frame of a format version this build does not read:
// most likely from a newer scatter. It is refused whole, never guessed at.
type versionError byte

func (v versionError) Error() string {
	return fmt.Sprintf("%v: %d (this build reads version %d)", errVersion, byte(v), frameVersion)
}

func (v versionError) Is(target error) bool { return target == errVersion }

// frameLimits bounds the body of each frame kind.
type frameLimits struct {
	broadcast int // max payload of a broadcast frame
	direct    int // max payload of a direct frame
	state     int // max state blob
}

// frame is a decoded frame. Its byte slices alias the decoded buffer.
type frame struct {
	kind    frameKind
	payload []byte // broadcast or direct payload, or the state blob

	// kindState only.
	from    string
	hasBlob bool
	recent  [][]byte // broadcast payloads carried for repair
}

// appendFrame appends the encoding of a broadcast or direct frame.
func appendFrame(dst []byte, kind frameKind, payload []byte) []byte {
	dst = append(dst, frameVersion, byte(kind))
	return append(dst, payload...)
}

// appendStateFrame appends the encoding of a state frame. The caller has
// checked that 1 <= len(from) <= maxNameLen and that every recent payload
// is non-empty. blob is sent only if hasBlob.
func appendStateFrame(dst []byte, from string, hasBlob bool, blob []byte, recent [][]byte) []byte {
	dst = append(dst, frameVersion, byte(kindState), byte(len(from)))
	dst = append(dst, from...)
	if !hasBlob {
		blob = nil
		dst = append(dst, 0)
	} else {
		dst = append(dst, flagHasBlob)
	}
	dst = binary.AppendUvarint(dst, uint64(len(blob)))
	dst = append(dst, blob...)
	dst = binary.AppendUvarint(dst, uint64(len(recent)))
	for _, p := range recent {
		dst = binary.AppendUvarint(dst, uint64(len(p)))
		dst = append(dst, p...)
	}
	return dst
}

// stateFrameSize is the encoded size of a state frame.
func stateFrameSize(from string, blob []byte, recent [][]byte) int {
	n := headerLen + 1 + len(from) + 1 + binary.MaxVarintLen64 + len(blob) + binary.MaxVarintLen64
	for _, p := range recent {
		n += binary.MaxVarintLen64 + len(p)
	}
	return n
}

// decodeFrame parses b. It never panics; the returned slices alias b.
func decodeFrame(b []byte, lim frameLimits) (frame, error) {
	if len(b) < headerLen {
		return frame{}, fmt.Errorf("%w: %d bytes", errTruncated, len(b))
	}
	if b[0] != frameVersion {
		return frame{}, versionError(b[0])
	}
	f := frame{kind: frameKind(b[1])}
	body := b[headerLen:]
	switch f.kind {
	case kindBroadcast, kindDirect:
		max := lim.broadcast
		if f.kind == kindDirect {
			max = lim.direct
		}
		if len(body) == 0 {
			return frame{}, fmt.Errorf("%s: %w", f.kind, errEmpty)
		}
		if len(body) > max {
			return frame{}, fmt.Errorf("%s: %w: %d > %d bytes", f.kind, errTooLarge, len(body), max)
		}
		f.payload = body
		return f, nil
	case kindState:
		if err := decodeState(&f, body, lim); err != nil {
			return frame{}, fmt.Errorf("state: %w", err)
		}
		return f, nil
	}
	return frame{}, fmt.Errorf("%w: %d", errKind, b[1])
}

func decodeState(f *frame, body []byte, lim frameLimits) error {
	if len(body) < 1 {
		return fmt.Errorf("%w: no name length", errTruncated)
	}
	n := int(body[0])
	body = body[1:]
	if n == 0 {
		return fmt.Errorf("%w: empty", errName)
	}
	if len(body) < n+1 {
		return fmt.Errorf("%w: name and flags need %d bytes, %d left", errTruncated, n+1, len(body))
	}
	f.from = string(body[:n])
	flags := body[n]
	body = body[n+1:]
	if flags&^flagHasBlob != 0 {
		return fmt.Errorf("%w: flags %#x", errEncoding, flags)
	}
	f.hasBlob = flags&flagHasBlob != 0

	blob, body, err := chunk(body, lim.state)
	if err != nil {
		return fmt.Errorf("blob: %w", err)
	}
	if !f.hasBlob && len(blob) > 0 {
		return fmt.Errorf("%w: blob without flag", errEncoding)
	}
	f.payload = blob

	count, body, err := uvarint(body)
	if err != nil {
		return fmt.Errorf("recent count: %w", err)
	}
	// Each entry takes at least two bytes, so a claimed count larger than
	// that is a lie, found before looping over it.
	if count > uint64(len(body)/2) {
		return fmt.Errorf("%w: %d recent broadcasts claimed in %d bytes", errTruncated, count, len(body))
	}
	for i := range count {
		var p []byte
		p, body, err = chunk(body, lim.broadcast)
		if err != nil {
			return fmt.Errorf("recent broadcast %d: %w", i, err)
		}
		if len(p) == 0 {
			return fmt.Errorf("recent broadcast %d: %w", i, errEmpty)
		}
		f.recent = append(f.recent, p)
	}
	if len(body) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", errEncoding, len(body))
	}
	return nil
}

// chunk reads a uvarint length and that many bytes, at most max.
func chunk(b []byte, max int) (data, rest []byte, err error) {
	n, b, err := uvarint(b)
	if err != nil {
		return nil, nil, err
	}
	if n > uint64(max) {
		return nil, nil, fmt.Errorf("%w: %d > %d bytes", errTooLarge, n, max)
	}
	if n > uint64(len(b)) {
		return nil, nil, fmt.Errorf("%w: %d bytes claimed, %d left", errTruncated, n, len(b))
	}
	return b[:n], b[n:], nil
}

// uvarint reads a minimally encoded uvarint.
func uvarint(b []byte) (uint64, []byte, error) {
	v, n := binary.Uvarint(b)
	if n == 0 {
		return 0, nil, fmt.Errorf("%w: length", errTruncated)
	}
	if n < 0 {
		return 0, nil, fmt.Errorf("%w: length overflows", errEncoding)
	}
	var buf [binary.MaxVarintLen64]byte
	if n != len(binary.AppendUvarint(buf[:0], v)) {
		return 0, nil, fmt.Errorf("%w: padded length", errEncoding)
	}
	return v, b[n:], nil
}
