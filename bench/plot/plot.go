// Package plot draws completion curves — the fraction of hosts holding a
// release against time in units of S/U — as self-contained SVG. The fan-out
// harness (bench/fanout) and the simulator (bench/sim) both plot with it.
package plot

import (
	"bufio"
	"fmt"
	"html"
	"io"
	"math"
	"slices"
)

// Curve is one completion curve: each host's completion time as a ratio to
// S/U, in any order. Hosts that never completed (+Inf) are left off.
type Curve struct {
	Name   string
	Ratios []float64
	Color  string // empty: the next colour of the palette
	Dash   bool
}

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"}

// Axis is how time is laid out.
type Axis int

const (
	// Linear suits curves that stay within a few S/U.
	Linear Axis = iota
	// Log lets the P2P curve near 1 and a central baseline near N both read.
	Log
)

const (
	width, height = 720, 440
	left, right   = 60, 20
	top, bottom   = 40, 50
	pw, ph        = width - left - right, height - top - bottom
)

// WriteSVG plots curves under title, with the S/U limit as a dashed
// vertical line.
func WriteSVG(w io.Writer, title string, axis Axis, curves ...Curve) error {
	lo, hi := 1.0, 1.0
	for _, c := range curves {
		for _, r := range c.Ratios {
			if r > 0 && finite(r) {
				lo, hi = min(lo, r), max(hi, r)
			}
		}
	}
	var x func(float64) float64
	var ticks []float64
	var xlo float64
	var label string
	switch axis {
	case Log:
		// Decades in 1, 2, 5 steps that cover every point.
		xlo = math.Pow(10, math.Floor(math.Log10(lo)))
		xhi := math.Pow(10, math.Ceil(math.Log10(hi*1.05)))
		x = func(v float64) float64 {
			v = min(max(v, xlo), xhi)
			return left + (math.Log10(v)-math.Log10(xlo))/(math.Log10(xhi)-math.Log10(xlo))*pw
		}
		for d := xlo; d < xhi*1.001; d *= 10 {
			for _, m := range []float64{1, 2, 5} {
				if d*m <= xhi*1.001 {
					ticks = append(ticks, d*m)
				}
			}
		}
		label = "time / (S/U), log scale"
	default:
		xmax := niceCeil(hi * 1.05)
		x = func(v float64) float64 { return left + v/xmax*pw }
		step := niceStep(xmax)
		for v := 0.0; v <= xmax+1e-9; v += step {
			ticks = append(ticks, math.Round(v*100)/100)
		}
		label = "time / (S/U)"
	}
	y := func(f float64) float64 { return top + (1-f)*ph }

	b := bufio.NewWriter(w)
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(b, `<rect width="%d" height="%d" fill="white"/>`+"\n", width, height)
	fmt.Fprintf(b, `<text x="%d" y="22" font-size="13" text-anchor="middle">%s</text>`+"\n", width/2, html.EscapeString(title))
	for _, v := range ticks {
		fmt.Fprintf(b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>`+"\n", x(v), top, x(v), top+ph)
		fmt.Fprintf(b, `<text x="%.1f" y="%d" text-anchor="middle">%g</text>`+"\n", x(v), top+ph+16, v)
	}
	for f := 0.0; f <= 1.0001; f += 0.25 {
		fmt.Fprintf(b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`+"\n", left, y(f), left+pw, y(f))
		fmt.Fprintf(b, `<text x="%d" y="%.1f" text-anchor="end">%g%%</text>`+"\n", left-6, y(f)+4, f*100)
	}
	fmt.Fprintf(b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#000" stroke-width="1.5" stroke-dasharray="5 3"/>`+"\n", x(1), top, x(1), top+ph)
	fmt.Fprintf(b, `<text x="%.1f" y="%d" text-anchor="start">S/U limit</text>`+"\n", x(1)+4, top+ph-8)
	fmt.Fprintf(b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#000"/>`+"\n", left, top, pw, ph)
	fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="middle">%s</text>`+"\n", left+pw/2, height-12, label)
	fmt.Fprintf(b, `<text transform="translate(16 %d) rotate(-90)" text-anchor="middle">hosts holding the release</text>`+"\n", top+ph/2)
	for i, c := range curves {
		rs := slices.Clone(c.Ratios)
		slices.Sort(rs)
		color := c.Color
		if color == "" {
			color = palette[i%len(palette)]
		}
		dash := ""
		if c.Dash {
			dash = ` stroke-dasharray="8 4"`
		}
		// A step curve: the fraction complete rises by 1/n at each host.
		fmt.Fprintf(b, `<path fill="none" stroke="%s" stroke-width="2"%s d="M%.1f %.1f`, color, dash, x(xlo), y(0))
		n := float64(len(rs))
		for k, r := range rs {
			if !finite(r) {
				break
			}
			fmt.Fprintf(b, " H%.1f V%.1f", x(r), y(float64(k+1)/n))
		}
		fmt.Fprint(b, `"/>`+"\n")
		ly := top + 16 + 18*i
		fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"%s/>`+"\n", left+12, ly, left+36, ly, color, dash)
		fmt.Fprintf(b, `<text x="%d" y="%d">%s</text>`+"\n", left+42, ly+4, html.EscapeString(c.Name))
	}
	fmt.Fprint(b, "</svg>\n")
	return b.Flush()
}

func finite(v float64) bool { return !math.IsInf(v, 0) && !math.IsNaN(v) }

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
