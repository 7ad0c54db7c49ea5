package fanout

import (
	"fmt"
	"io"

	"scatter/bench/plot"
)

// WriteSVG plots the run's story: the fraction of hosts holding the
// release against time in units of S/U, on a log axis so that the P2P
// curve near 1 and the central baseline near N·U/U_origin both read —
// with the S/U limit as a vertical line. (On a linear axis a 32×
// baseline squeezes the P2P curve into the first few pixels.)
func (rep *Report) WriteSVG(w io.Writer) error {
	f := rep.FanOut
	p := rep.Params
	curves := []plot.Curve{{Name: fmt.Sprintf("P2P, %d hosts (measured)", len(f.Hosts)), Ratios: f.Ratios(), Color: "#1f77b4"}}
	for i, d := range rep.Deltas {
		curves = append(curves, plot.Curve{Name: fmt.Sprintf("P2P %s, delta (measured)", d.Name), Ratios: d.Ratios(),
			Color: []string{"#2ca02c", "#9467bd"}[i%2]})
	}
	c := rep.Central
	if c.Hosts > 0 {
		su := float64(c.S) / float64(p.Upload)
		var each []float64
		for _, t := range c.Each {
			each = append(each, t/su)
		}
		if c.Hosts == p.Hosts {
			curves = append(curves, plot.Curve{Name: fmt.Sprintf("central, %d hosts (measured)", c.Hosts), Ratios: each, Color: "#d62728"})
		} else {
			curves = append(curves, plot.Curve{Name: fmt.Sprintf("central, %d hosts (measured)", c.Hosts), Ratios: each, Color: "#ff7f0e"})
			at := make([]float64, p.Hosts)
			for i := range at {
				at[i] = c.AtNSU
			}
			curves = append(curves, plot.Curve{Name: fmt.Sprintf("central, %d hosts (N·S/U_origin × measured/formula)", p.Hosts),
				Ratios: at, Color: "#d62728", Dash: true})
		}
	}
	title := fmt.Sprintf("scatter bench: %d hosts, S = %.1f MiB, U = %.2f MiB/s, S/U = %.1f s (%s)",
		p.Hosts, float64(f.S)/(1<<20), float64(p.Upload)/(1<<20), f.SU, p.Scenario)
	return plot.WriteSVG(w, title, plot.Log, curves...)
}
