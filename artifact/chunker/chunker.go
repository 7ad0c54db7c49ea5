// Package chunker splits byte streams into content-defined chunks with
// FastCDC (Xia et al., 2016/2020): a gear rolling hash with normalized
// chunking. A cut depends only on the bytes just before it, so an edit moves
// only the chunk boundaries near it and the rest of a file keeps its chunks.
//
// The gear table and the cut rule are part of scatter's release format: they
// decide chunk IDs. Never change them; add a new Algorithm name instead.
package chunker

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
)

// Algorithm names this exact cut rule and gear table in manifests.
const Algorithm = "fastcdc-gear-v1"

// Params bound the chunk sizes. Avg must be a power of two.
type Params struct {
	Min int `json:"min"`
	Avg int `json:"avg"`
	Max int `json:"max"`
}

// Default is scatter's frozen chunking: 4 KiB / 16 KiB / 64 KiB. The README
// ("Choosing the chunk size") gives the measurements behind it.
var Default = Params{Min: 4 << 10, Avg: 16 << 10, Max: 64 << 10}

// Validate checks the parameters without changing them.
func (p Params) Validate() error {
	switch {
	case p.Min < 64:
		return fmt.Errorf("chunker: min %d below 64 bytes", p.Min)
	case p.Avg&(p.Avg-1) != 0:
		return fmt.Errorf("chunker: avg %d is not a power of two", p.Avg)
	case !(p.Min < p.Avg && p.Avg < p.Max):
		return fmt.Errorf("chunker: want min < avg < max, got %d/%d/%d", p.Min, p.Avg, p.Max)
	case p.Max > 16<<20:
		return fmt.Errorf("chunker: max %d above 16 MiB", p.Max)
	}
	return nil
}

var gear = func() (g [256]uint64) {
	for i := range g {
		sum := sha256.Sum256([]byte{'s', 'c', 'a', 't', 't', 'e', 'r', '-', 'g', 'e', 'a', 'r', byte(i)})
		g[i] = binary.LittleEndian.Uint64(sum[:8])
	}
	return g
}()

// masks returns the normalized-chunking masks (level 2): a harder mask before
// Avg and an easier one after it, so sizes cluster around Avg. They take the
// high bits of the gear hash, which depend on the last 64 bytes; the low bits
// only see the last few.
func (p Params) masks() (small, large uint64) {
	b := bits.TrailingZeros(uint(p.Avg))
	return ^uint64(0) << (64 - (b + 2)), ^uint64(0) << (64 - (b - 2))
}

// Cut returns the length of the first chunk of data. data holds the rest of
// the stream, or at least p.Max bytes of it.
func (p Params) Cut(data []byte) int {
	maskS, maskL := p.masks()
	return cut(data, p.Min, p.Avg, p.Max, maskS, maskL)
}

func cut(data []byte, min, avg, max int, maskS, maskL uint64) int {
	n := len(data)
	if n <= min {
		return n
	}
	if n > max {
		n = max
	}
	normal := avg
	if normal > n {
		normal = n
	}
	var h uint64
	i := min
	for ; i < normal; i++ {
		h = h<<1 + gear[data[i]]
		if h&maskS == 0 {
			return i + 1
		}
	}
	for ; i < n; i++ {
		h = h<<1 + gear[data[i]]
		if h&maskL == 0 {
			return i + 1
		}
	}
	return n
}

// Chunker reads a stream and returns it chunk by chunk.
type Chunker struct {
	r            io.Reader
	min, avg     int
	max          int
	maskS, maskL uint64
	buf          []byte
	start, end   int
	eof          bool
}

// New returns a Chunker over r. p must be valid.
func New(r io.Reader, p Params) *Chunker {
	maskS, maskL := p.masks()
	size := 4 * p.Max
	if size < 1<<20 {
		size = 1 << 20
	}
	return &Chunker{r: r, min: p.Min, avg: p.Avg, max: p.Max, maskS: maskS, maskL: maskL, buf: make([]byte, size)}
}

// Reset makes c read a new stream, keeping its buffer: a builder chunks
// thousands of files and should not allocate a buffer for each.
func (c *Chunker) Reset(r io.Reader) {
	c.r, c.start, c.end, c.eof = r, 0, 0, false
}

// Next returns the next chunk. The slice is only valid until the next call.
// At the end of the stream it returns io.EOF; a read error is returned as is.
func (c *Chunker) Next() ([]byte, error) {
	if c.end-c.start < c.max && !c.eof {
		if err := c.fill(); err != nil {
			return nil, err
		}
	}
	if c.start == c.end {
		return nil, io.EOF
	}
	n := cut(c.buf[c.start:c.end], c.min, c.avg, c.max, c.maskS, c.maskL)
	b := c.buf[c.start : c.start+n]
	c.start += n
	return b, nil
}

func (c *Chunker) fill() error {
	copy(c.buf, c.buf[c.start:c.end])
	c.end -= c.start
	c.start = 0
	for c.end < len(c.buf) {
		n, err := c.r.Read(c.buf[c.end:])
		c.end += n
		if errors.Is(err, io.EOF) {
			c.eof = true
			return nil
		}
		if err != nil {
			return err
		}
	}
	return nil
}
