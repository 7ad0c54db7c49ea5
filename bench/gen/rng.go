package gen

import (
	"math"
	"math/rand/v2"
	"slices"
)

// rng wraps a PCG stream with a bit reservoir. Most picks need 8–16 bits, so
// one 64-bit draw serves several of them; that is what keeps per-word cost
// low enough for hundreds of MB/s.
type rng struct {
	src   rand.PCG
	bits  uint64
	nbits uint
}

func newRNG(s1, s2 uint64) *rng {
	r := &rng{}
	r.src.Seed(s1, s2)
	return r
}

// take returns n (<= 32) random bits.
func (r *rng) take(n uint) uint64 {
	if r.nbits < n {
		r.bits = r.src.Uint64()
		r.nbits = 64
	}
	v := r.bits & (1<<n - 1)
	r.bits >>= n
	r.nbits -= n
	return v
}

// intn returns a value in [0, n). The multiply-shift range reduction has a
// bias of at most n/2^32, irrelevant for content generation.
func (r *rng) intn(n int) int {
	if n <= 1 {
		return 0
	}
	return int((r.take(32) * uint64(n)) >> 32)
}

// between returns a value in [lo, hi].
func (r *rng) between(lo, hi int) int { return lo + r.intn(hi-lo+1) }

// percent reports true with probability p/100.
func (r *rng) percent(p int) bool { return int(r.take(7)*100>>7) < p }

func (r *rng) float() float64 { return float64(r.src.Uint64()>>11) / (1 << 53) }

// logUniform draws from [lo, hi] with a log-uniform density: many small
// values, a long tail of large ones, like file sizes in a source tree.
func (r *rng) logUniform(lo, hi int64) int64 {
	l, h := math.Log(float64(lo)), math.Log(float64(hi))
	return int64(math.Exp(l + r.float()*(h-l)))
}

// zipf maps 16 random bits to an index with probability ~ 1/(i+1)^s. The
// table is precomputed so a pick is a single lookup; natural text and code
// both follow roughly this law, which is what gives realistic compression.
type zipf []uint16

const zipfSlots = 1 << 16

func newZipf(n int, s float64) zipf {
	if n > zipfSlots {
		n = zipfSlots
	}
	cum := make([]float64, n)
	total := 0.0
	for i := range cum {
		total += 1 / math.Pow(float64(i+1), s)
		cum[i] = total
	}
	z := make(zipf, zipfSlots)
	i := 0
	for slot := range z {
		target := (float64(slot) + 0.5) / zipfSlots * total
		for i < n-1 && cum[i] < target {
			i++
		}
		z[slot] = uint16(i)
	}
	return z
}

func (z zipf) pick(r *rng) int { return int(z[r.take(16)]) }

// splitmix64 is a strong 64-bit mixer used to derive independent seeds.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// seedFor derives a PCG seed pair from a tree seed, a purpose tag and a path,
// so a file's bytes depend only on those and never on generation order.
func seedFor(seed uint64, tag, path string) (uint64, uint64) {
	h := uint64(0xcbf29ce484222325) // FNV-1a
	for i := 0; i < len(tag); i++ {
		h = (h ^ uint64(tag[i])) * 0x100000001b3
	}
	h = (h ^ 0xff) * 0x100000001b3
	for i := 0; i < len(path); i++ {
		h = (h ^ uint64(path[i])) * 0x100000001b3
	}
	a := splitmix64(seed ^ h)
	return a, splitmix64(a ^ h ^ 0x5851f42d4c957f2d)
}

func rngFor(seed uint64, tag, path string) *rng {
	return newRNG(seedFor(seed, tag, path))
}

// sample returns min(k, n) distinct values from [0, n); k is expected to be
// small, so retrying on collisions is cheaper than a permutation.
func (r *rng) sample(n, k int) []int {
	if k >= n {
		out := make([]int, n)
		for i := range out {
			out[i] = i
		}
		return out
	}
	out := make([]int, 0, k)
	for len(out) < k {
		if v := r.intn(n); !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}
