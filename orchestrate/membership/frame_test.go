package membership

import (
	"bytes"
	"errors"
	"slices"
	"testing"
)

var testLimits = frameLimits{broadcast: 1024, direct: 64 << 10, state: 1 << 20}

func TestFrameRoundTrip(t *testing.T) {
	recent := [][]byte{[]byte("stage 42"), bytes.Repeat([]byte("p"), 300)}
	for _, c := range []struct {
		enc  []byte
		want frame
	}{
		{appendFrame(nil, kindBroadcast, []byte("hi")), frame{kind: kindBroadcast, payload: []byte("hi")}},
		{appendFrame(nil, kindDirect, []byte("ack")), frame{kind: kindDirect, payload: []byte("ack")}},
		{appendStateFrame(nil, "host-1", true, []byte("blob"), nil), frame{kind: kindState, from: "host-1", hasBlob: true, payload: []byte("blob")}},
		{appendStateFrame(nil, "h", true, nil, nil), frame{kind: kindState, from: "h", hasBlob: true, payload: []byte{}}},
		{appendStateFrame(nil, "h", false, []byte("ignored"), recent), frame{kind: kindState, from: "h", payload: []byte{}, recent: recent}},
		{appendStateFrame(nil, "h", true, []byte("b"), recent), frame{kind: kindState, from: "h", hasBlob: true, payload: []byte("b"), recent: recent}},
	} {
		got, err := decodeFrame(c.enc, testLimits)
		if err != nil {
			t.Fatalf("%x: %v", c.enc, err)
		}
		if got.kind != c.want.kind || got.from != c.want.from || got.hasBlob != c.want.hasBlob ||
			!bytes.Equal(got.payload, c.want.payload) || !slices.EqualFunc(got.recent, c.want.recent, bytes.Equal) {
			t.Errorf("%x: got %+v, want %+v", c.enc, got, c.want)
		}
		if c.want.kind == kindState {
			if max := stateFrameSize(c.want.from, c.want.payload, c.want.recent); len(c.enc) > max {
				t.Errorf("state frame of %d bytes, size estimate %d", len(c.enc), max)
			}
		}
	}
}

func TestFrameRejects(t *testing.T) {
	state := func(tail ...byte) []byte { return append([]byte{1, 3, 1, 'h'}, tail...) }
	for _, c := range []struct {
		in   []byte
		want error
	}{
		{nil, errTruncated},
		{[]byte{1}, errTruncated},
		{[]byte{0, 1, 'x'}, errVersion},
		{[]byte{2, 1, 'x'}, errVersion},
		{[]byte{1, 0, 'x'}, errKind},
		{[]byte{1, 9, 'x'}, errKind},
		{[]byte{1, 1}, errEmpty},
		{[]byte{1, 2}, errEmpty},
		{[]byte{1, 3}, errTruncated},
		{[]byte{1, 3, 0, 'x'}, errName},
		{[]byte{1, 3, 5, 'a', 'b'}, errTruncated},
		{state(), errTruncated},                // no flags
		{state(2, 0, 0), errEncoding},          // unknown flag
		{state(1), errTruncated},               // no blob length
		{state(1, 5, 'a'), errTruncated},       // short blob
		{state(0, 1, 'a', 0), errEncoding},     // blob without flag
		{state(1, 0x80, 0x00, 0), errEncoding}, // padded uvarint
		{state(1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), errEncoding}, // overflow
		{state(1, 0), errTruncated},              // no count
		{state(1, 0, 100, 1, 'a'), errTruncated}, // count lies
		{state(1, 0, 1, 0, 0), errEmpty},         // empty recent
		{state(1, 0, 1, 2, 'a'), errTruncated},   // short recent
		{state(1, 0, 0, 'x'), errEncoding},       // trailing byte
		{appendFrame(nil, kindBroadcast, make([]byte, 1025)), errTooLarge},
		{appendFrame(nil, kindDirect, make([]byte, 64<<10+1)), errTooLarge},
		{appendStateFrame(nil, "h", true, make([]byte, 1<<20+1), nil), errTooLarge},
		{appendStateFrame(nil, "h", false, nil, [][]byte{make([]byte, 1025)}), errTooLarge},
	} {
		if _, err := decodeFrame(c.in, testLimits); !errors.Is(err, c.want) {
			t.Errorf("%.24x: %v, want %v", c.in, err, c.want)
		}
	}
}

// FuzzDecodeFrame feeds the decoder what the network may send. It must
// never panic, must keep every accepted body within its limit, and an
// accepted frame must encode back to the same bytes (one encoding each).
func FuzzDecodeFrame(f *testing.F) {
	lim := frameLimits{broadcast: 64, direct: 128, state: 256}
	f.Add([]byte{})
	f.Add([]byte{1})
	f.Add(appendFrame(nil, kindBroadcast, []byte("stage r42")))
	f.Add(appendFrame(nil, kindDirect, []byte("ack")))
	f.Add(appendStateFrame(nil, "host", true, []byte("chunks"), nil))
	f.Add(appendStateFrame(nil, "host", false, nil, [][]byte{[]byte("a"), []byte("bc")}))
	f.Add(appendStateFrame(nil, "host", true, []byte("s"), [][]byte{[]byte("stage r42")}))
	f.Add([]byte{1, 3, 255, 'a'})
	f.Add([]byte{1, 3, 1, 'h', 1, 0x80, 0x00, 0})
	f.Add(appendFrame(nil, kindBroadcast, make([]byte, 65)))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := decodeFrame(b, lim)
		if err != nil {
			return
		}
		var re []byte
		switch fr.kind {
		case kindBroadcast:
			if len(fr.payload) == 0 || len(fr.payload) > lim.broadcast {
				t.Fatalf("broadcast body of %d bytes accepted", len(fr.payload))
			}
			re = appendFrame(nil, fr.kind, fr.payload)
		case kindDirect:
			if len(fr.payload) == 0 || len(fr.payload) > lim.direct {
				t.Fatalf("direct body of %d bytes accepted", len(fr.payload))
			}
			re = appendFrame(nil, fr.kind, fr.payload)
		case kindState:
			if fr.from == "" || len(fr.from) > maxNameLen || len(fr.payload) > lim.state {
				t.Fatalf("state from %q with %d bytes accepted", fr.from, len(fr.payload))
			}
			for _, p := range fr.recent {
				if len(p) == 0 || len(p) > lim.broadcast {
					t.Fatalf("recent broadcast of %d bytes accepted", len(p))
				}
			}
			re = appendStateFrame(nil, fr.from, fr.hasBlob, fr.payload, fr.recent)
			if len(re) > stateFrameSize(fr.from, fr.payload, fr.recent) {
				t.Fatalf("state frame size estimate too small")
			}
		default:
			t.Fatalf("unknown kind %d accepted", fr.kind)
		}
		if !bytes.Equal(re, b) {
			t.Fatalf("re-encoding %x gave %x", b, re)
		}
	})
}
