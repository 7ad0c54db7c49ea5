package sim

import (
	"math"
	"slices"
)

// Result is what one run measured. Times are seconds from the
// announcement; bytes include transfers aborted part-way.
type Result struct {
	// SU is S/U in seconds, U being Config.Upload: the unit of every ratio.
	SU float64
	// Done is each host's completion time, by host index; +Inf for a host
	// that never completed.
	Done []float64
	// Sorted is Done in increasing order.
	Sorted []float64
	// OriginUp is the bytes the origin uploaded, stripes and peer wire.
	OriginUp int64
	// FromOrigin and FromPeers are the bytes each host received from the
	// origin and from other hosts.
	FromOrigin, FromPeers []int64
	// CrossDC is the bytes that crossed a link between datacenters.
	CrossDC int64
	// Transfers counts completed piece transfers.
	Transfers int
}

func (s *sim) result() Result {
	r := Result{
		SU:         float64(s.cfg.Size) / s.cfg.Upload,
		OriginUp:   int64(math.Round(s.originUp)),
		CrossDC:    int64(math.Round(s.crossDC)),
		Transfers:  s.transfers,
		Done:       make([]float64, s.n),
		FromOrigin: make([]int64, s.n),
		FromPeers:  make([]int64, s.n),
	}
	for i := range s.n {
		nd := &s.nodes[i]
		r.Done[i] = nd.done
		r.FromOrigin[i] = int64(math.Round(nd.fromOrigin))
		r.FromPeers[i] = int64(math.Round(nd.fromPeers))
	}
	r.Sorted = slices.Clone(r.Done)
	slices.Sort(r.Sorted)
	return r
}

// Quantile returns the completion time below which a fraction q of the
// hosts completed, by the rule BenchmarkFanOut uses: the sorted time at
// index min(n-1, floor(q·n)).
func (r Result) Quantile(q float64) float64 {
	if len(r.Sorted) == 0 {
		return math.NaN()
	}
	return r.Sorted[min(len(r.Sorted)-1, max(0, int(q*float64(len(r.Sorted)))))]
}

// Median, P90, P99 and Last are completion-time quantiles in seconds.
func (r Result) Median() float64 { return r.Quantile(0.5) }
func (r Result) P90() float64    { return r.Quantile(0.9) }
func (r Result) P99() float64    { return r.Quantile(0.99) }
func (r Result) Last() float64   { return r.Quantile(1) }

// Ratio expresses seconds as a multiple of S/U.
func (r Result) Ratio(seconds float64) float64 { return seconds / r.SU }

// Ratios returns the sorted completion times as multiples of S/U.
func (r Result) Ratios() []float64 {
	out := make([]float64, len(r.Sorted))
	for i, t := range r.Sorted {
		out[i] = t / r.SU
	}
	return out
}
