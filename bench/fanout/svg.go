package fanout

import (
	"bufio"
	"fmt"
	"html"
	"io"
	"math"
	"slices"
)

// curve is one completion curve: each host's completion time as a ratio to
// S/U.
type curve struct {
	name   string
	ratios []float64
	color  string
	dash   bool
}

// WriteSVG plots the run's story: the fraction of hosts holding the
// release against time in units of S/U, on a log axis so that the P2P
// curve near 1 and the central baseline near N·U/U_origin both read —
// with the S/U limit as a vertical line. (bench/sim.WriteSVG draws a
// linear axis, on which a 32× baseline squeezes the P2P curve into the
// first few pixels.)
func (rep *Report) WriteSVG(w io.Writer) error {
	f := rep.FanOut
	p := rep.Params
	curves := []curve{{name: fmt.Sprintf("P2P, %d hosts (measured)", len(f.Hosts)), ratios: f.Ratios(), color: "#1f77b4"}}
	for i, d := range rep.Deltas {
		curves = append(curves, curve{name: fmt.Sprintf("P2P %s, delta (measured)", d.Name), ratios: d.Ratios(),
			color: []string{"#2ca02c", "#9467bd"}[i%2]})
	}
	c := rep.Central
	if c.Hosts > 0 {
		su := float64(c.S) / float64(p.Upload)
		var each []float64
		for _, t := range c.Each {
			each = append(each, t/su)
		}
		if c.Hosts == p.Hosts {
			curves = append(curves, curve{name: fmt.Sprintf("central, %d hosts (measured)", c.Hosts), ratios: each, color: "#d62728"})
		} else {
			curves = append(curves, curve{name: fmt.Sprintf("central, %d hosts (measured)", c.Hosts), ratios: each, color: "#ff7f0e"})
			at := make([]float64, p.Hosts)
			for i := range at {
				at[i] = c.AtNSU
			}
			curves = append(curves, curve{name: fmt.Sprintf("central, %d hosts (N·S/U_origin × measured/formula)", p.Hosts),
				ratios: at, color: "#d62728", dash: true})
		}
	}
	title := fmt.Sprintf("scatter bench: %d hosts, S = %.1f MiB, U = %.2f MiB/s, S/U = %.1f s (%s)",
		p.Hosts, float64(f.S)/(1<<20), float64(p.Upload)/(1<<20), f.SU, p.Scenario)
	return writeSVG(w, title, curves)
}

func writeSVG(w io.Writer, title string, curves []curve) error {
	const (
		width, height = 720, 440
		left, right   = 60, 20
		top, bottom   = 40, 50
		pw, ph        = width - left - right, height - top - bottom
	)
	lo, hi := 1.0, 1.0
	for _, c := range curves {
		for _, r := range c.ratios {
			if r > 0 && !math.IsInf(r, 0) && !math.IsNaN(r) {
				lo, hi = min(lo, r), max(hi, r)
			}
		}
	}
	// Decades (1, 2, 5 steps) that cover every point.
	xlo := math.Pow(10, math.Floor(math.Log10(lo)))
	xhi := math.Pow(10, math.Ceil(math.Log10(hi*1.05)))
	x := func(v float64) float64 {
		v = min(max(v, xlo), xhi)
		return left + (math.Log10(v)-math.Log10(xlo))/(math.Log10(xhi)-math.Log10(xlo))*pw
	}
	y := func(f float64) float64 { return top + (1-f)*ph }

	b := bufio.NewWriter(w)
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(b, `<rect width="%d" height="%d" fill="white"/>`+"\n", width, height)
	fmt.Fprintf(b, `<text x="%d" y="22" font-size="13" text-anchor="middle">%s</text>`+"\n", width/2, html.EscapeString(title))
	for d := xlo; d < xhi*1.001; d *= 10 {
		for _, m := range []float64{1, 2, 5} {
			v := d * m
			if v > xhi*1.001 {
				break
			}
			fmt.Fprintf(b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>`+"\n", x(v), top, x(v), top+ph)
			fmt.Fprintf(b, `<text x="%.1f" y="%d" text-anchor="middle">%g</text>`+"\n", x(v), top+ph+16, v)
		}
	}
	for f := 0.0; f <= 1.0001; f += 0.25 {
		fmt.Fprintf(b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`+"\n", left, y(f), left+pw, y(f))
		fmt.Fprintf(b, `<text x="%d" y="%.1f" text-anchor="end">%g%%</text>`+"\n", left-6, y(f)+4, f*100)
	}
	fmt.Fprintf(b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#000" stroke-width="1.5" stroke-dasharray="5 3"/>`+"\n", x(1), top, x(1), top+ph)
	fmt.Fprintf(b, `<text x="%.1f" y="%d" text-anchor="start">S/U limit</text>`+"\n", x(1)+4, top+ph-8)
	fmt.Fprintf(b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#000"/>`+"\n", left, top, pw, ph)
	fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="middle">time / (S/U), log scale</text>`+"\n", left+pw/2, height-12)
	fmt.Fprintf(b, `<text transform="translate(16 %d) rotate(-90)" text-anchor="middle">hosts holding the release</text>`+"\n", top+ph/2)
	for i, c := range curves {
		rs := slices.Clone(c.ratios)
		slices.Sort(rs)
		dash := ""
		if c.dash {
			dash = ` stroke-dasharray="8 4"`
		}
		fmt.Fprintf(b, `<path fill="none" stroke="%s" stroke-width="2"%s d="M%.1f %.1f`, c.color, dash, x(xlo), y(0))
		n := float64(len(rs))
		for k, r := range rs {
			if math.IsInf(r, 0) || math.IsNaN(r) {
				break
			}
			fmt.Fprintf(b, " H%.1f V%.1f", x(r), y(float64(k+1)/n))
		}
		fmt.Fprint(b, `"/>`+"\n")
		ly := top + 16 + 18*i
		fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"%s/>`+"\n", left+12, ly, left+36, ly, c.color, dash)
		fmt.Fprintf(b, `<text x="%d" y="%d">%s</text>`+"\n", left+42, ly+4, html.EscapeString(c.name))
	}
	fmt.Fprint(b, "</svg>\n")
	return b.Flush()
}
