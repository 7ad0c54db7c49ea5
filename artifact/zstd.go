package artifact

import (
	"errors"
	"fmt"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// One long-lived encoder and decoder serve the whole process: both are safe
// for concurrent EncodeAll/DecodeAll and pool their state internally; making
// one per chunk costs about ten times the allocations.
var (
	zstdEncoder = sync.OnceValue(func() *zstd.Encoder {
		e, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderCRC(false), zstd.WithZeroFrames(true))
		if err != nil {
			panic(err) // only bad options fail, and these are constant
		}
		return e
	})
	// Manifests get their own encoder: encoding a body of several MiB with
	// the chunk encoder would leave a history buffer of its window size
	// (8 MiB) in that encoder's pool for the life of the process. A 1 MiB
	// window compresses a manifest as well: its chunk IDs are random and its
	// paths repeat nearby. Changing it changes envelopes, never release IDs.
	manifestEncoder = sync.OnceValue(func() *zstd.Encoder {
		e, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderCRC(false),
			zstd.WithZeroFrames(true), zstd.WithWindowSize(1<<20), zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true))
		if err != nil {
			panic(err) // only bad options fail, and these are constant
		}
		return e
	})
	// The chunk decoder is capped near the largest chunk, so a frame that
	// does not declare its size still cannot balloon memory. Manifests get
	// a decoder each (zstdDecodeInto).
	chunkDecoder = sync.OnceValue(func() *zstd.Decoder { return newDecoder(maxChunkSize + 1) })
)

// decodeSlack is extra output capacity for the decoder's fast path.
const decodeSlack = 256

// maxChunkSize bounds every chunk (chunker.Params.Validate caps Max at 16 MiB).
const maxChunkSize = 16 << 20

func newDecoder(max uint64) *zstd.Decoder {
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(max))
	if err != nil {
		panic(err) // only bad options fail, and these are constant
	}
	return d
}

var errSizeMismatch = errors.New("decompressed size does not match")

// zstdDecodeExact decompresses src, which must expand to exactly size bytes.
func zstdDecodeExact(src []byte, size int) ([]byte, error) {
	return zstdDecodeInto(src, nil, size)
}

// zstdDecodeInto decompresses src into dst[:0], which must expand to exactly
// size bytes. The frame's declared size is checked before decoding so that a
// hostile frame cannot make us allocate more than size.
func zstdDecodeInto(src, dst []byte, size int) ([]byte, error) {
	return decodeExact(chunkDecoder(), src, dst, size)
}

// zstdDecodeManifest is zstdDecodeInto for a manifest body, with a decoder
// of its own, closed when done. The shared decoder's pool keeps slices of
// the last input and output it decoded until the next: after a manifest,
// its envelope and body (16 MB at 2 GiB), alive through the whole fetch.
// Its cap is the body's size, or the chunk decoder's for small bodies,
// which must still hold a window.
func zstdDecodeManifest(src, dst []byte, size int) ([]byte, error) {
	limit := max(uint64(size), maxChunkSize) + 1
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(limit))
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return decodeExact(d, src, dst, size)
}

func decodeExact(d *zstd.Decoder, src, dst []byte, size int) ([]byte, error) {
	var h zstd.Header
	if err := h.Decode(src); err != nil {
		return nil, err
	}
	// The encoder omits the size of tiny frames; the decoder's cap covers them.
	if h.HasFCS && h.FrameContentSize != uint64(size) {
		return nil, fmt.Errorf("%w: frame declares %d bytes, want %d", errSizeMismatch, h.FrameContentSize, size)
	}
	// A little room past size lets the decoder use its fast path, which may
	// write a few bytes beyond the output; without it, it takes a slower,
	// bounds-checked one (a fifth of a fan-out's CPU went there).
	if cap(dst) < size+decodeSlack {
		dst = make([]byte, 0, size+decodeSlack)
	}
	out, err := d.DecodeAll(src, dst[:0])
	if err != nil {
		return nil, err
	}
	if len(out) != size {
		return nil, fmt.Errorf("%w: got %d bytes, want %d", errSizeMismatch, len(out), size)
	}
	return out, nil
}
