package sim

import (
	"bufio"
	"fmt"
	"html"
	"io"
	"math"
	"slices"
)

// Series is one completion curve: each host's completion time as a ratio
// to S/U, in any order.
type Series struct {
	Name   string
	Ratios []float64
}

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"}

// WriteSVG plots completion curves — the fraction of hosts holding the
// release against time in units of S/U — as a self-contained SVG, with
// title above. Hosts that never completed (+Inf) are left off the curve.
func WriteSVG(w io.Writer, title string, series ...Series) error {
	const (
		width, height = 640, 400
		left, right   = 60, 20
		top, bottom   = 40, 50
		pw, ph        = width - left - right, height - top - bottom
	)
	xmax := 1.0
	for _, s := range series {
		for _, r := range s.Ratios {
			if !math.IsInf(r, 0) && !math.IsNaN(r) {
				xmax = max(xmax, r)
			}
		}
	}
	xmax = niceCeil(xmax * 1.05)
	x := func(v float64) float64 { return left + v/xmax*pw }
	y := func(f float64) float64 { return top + (1-f)*ph }

	b := bufio.NewWriter(w)
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(b, `<rect width="%d" height="%d" fill="white"/>`+"\n", width, height)
	fmt.Fprintf(b, `<text x="%d" y="22" font-size="14" text-anchor="middle">%s</text>`+"\n", width/2, html.EscapeString(title))
	// Grid and ticks.
	step := niceStep(xmax)
	for v := 0.0; v <= xmax+1e-9; v += step {
		fmt.Fprintf(b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>`+"\n", x(v), top, x(v), top+ph)
		fmt.Fprintf(b, `<text x="%.1f" y="%d" text-anchor="middle">%g</text>`+"\n", x(v), top+ph+16, math.Round(v*100)/100)
	}
	for f := 0.0; f <= 1.0001; f += 0.25 {
		fmt.Fprintf(b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`+"\n", left, y(f), left+pw, y(f))
		fmt.Fprintf(b, `<text x="%d" y="%.1f" text-anchor="end">%g%%</text>`+"\n", left-6, y(f)+4, f*100)
	}
	// The physical limit, S/U.
	fmt.Fprintf(b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#888" stroke-dasharray="4 3"/>`+"\n", x(1), top, x(1), top+ph)
	fmt.Fprintf(b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#000"/>`+"\n", left, top, pw, ph)
	fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="middle">time / (S/U)</text>`+"\n", left+pw/2, height-12)
	fmt.Fprintf(b, `<text transform="translate(16 %d) rotate(-90)" text-anchor="middle">hosts holding the release</text>`+"\n", top+ph/2)
	for i, s := range series {
		rs := slices.Clone(s.Ratios)
		slices.Sort(rs)
		color := palette[i%len(palette)]
		// A step curve: the fraction complete rises by 1/n at each host.
		fmt.Fprintf(b, `<path fill="none" stroke="%s" stroke-width="2" d="M%.1f %.1f`, color, x(0), y(0))
		n := float64(len(rs))
		for k, r := range rs {
			if math.IsInf(r, 0) || math.IsNaN(r) {
				break
			}
			fmt.Fprintf(b, " H%.1f V%.1f", x(r), y(float64(k+1)/n))
		}
		fmt.Fprint(b, `"/>`+"\n")
		ly := top + 16 + 18*i
		fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"/>`+"\n", left+12, ly, left+36, ly, color)
		fmt.Fprintf(b, `<text x="%d" y="%d">%s</text>`+"\n", left+42, ly+4, html.EscapeString(s.Name))
	}
	fmt.Fprint(b, "</svg>\n")
	return b.Flush()
}

// niceStep picks a tick spacing giving about five to ten ticks up to v.
func niceStep(v float64) float64 {
	raw := v / 8
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

// niceCeil rounds v up to a multiple of its tick spacing.
func niceCeil(v float64) float64 {
	s := niceStep(v)
	return math.Ceil(v/s) * s
}
