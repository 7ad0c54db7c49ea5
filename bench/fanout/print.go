package fanout

import (
	"fmt"
	"io"
	"strings"

	"scatter/swarm"
)

func mib(b float64) string {
	if b < 1<<20 {
		return fmt.Sprintf("%.1f KiB", b/(1<<10))
	}
	return fmt.Sprintf("%.2f MiB", b/(1<<20))
}

// Print writes the report for people.
func (rep *Report) Print(w io.Writer) {
	p, m, f := rep.Params, rep.Machine, rep.FanOut
	fmt.Fprintf(w, "scatter bench, scenario %s: %d hosts + origin on %s (%d cores), %s\n", p.Scenario, p.Hosts, m.CPU, m.Cores, m.Go)
	if p.Mode == Netns {
		fmt.Fprintln(w, "mode netns: every host and the origin a scatter seed process in its own network namespace")
		if p.LinkHeadroom > 0 {
			fmt.Fprintf(w, "  each daemon capped at U (--upload-rate) on a link tc shapes to %.2f·U\n", p.LinkHeadroom)
		} else {
			fmt.Fprintln(w, "  daemons uncapped, each link shaped to U by tc")
		}
		if p.DaemonProcs > 0 {
			fmt.Fprintf(w, "  each daemon with --procs %d (--daemon-procs)\n", p.DaemonProcs)
		}
	}
	fmt.Fprintf(w, "release: %d files, %s uncompressed, %d chunks; S (full torrent) = %s\n",
		rep.Release.Files, mib(float64(rep.Release.Bytes)), rep.Release.Chunks, mib(float64(rep.Release.S)))
	fmt.Fprintf(w, "caps: U = %s/s per host, origin %s/s; S/U = %.1f s\n\n", mib(float64(p.Upload)), mib(float64(p.OriginUpload)), f.SU)

	fmt.Fprintln(w, "fan-out, from the announcement until a host holds every chunk (seconds, and × S/U):")
	fmt.Fprintf(w, "  %-12s %-6s %10s %16s %16s %16s %16s %8s %12s %12s %6s\n", "release", "kind", "bytes", "median", "p90", "p99", "last", "origin", "from origin", "from peers", "CPU")
	for _, x := range append([]FanOut{f}, rep.Deltas...) {
		fmt.Fprintf(w, "  %-12s %-6s %10s %7.2fs %6.3f× %7.2fs %6.3f× %7.2fs %6.3f× %7.2fs %6.3f× %7.2f S %12s %12s %5.0f%%\n",
			x.Name, x.Kind, mib(float64(x.Bytes)), x.Median, x.MedianSU, x.P90, x.P90SU, x.P99, x.P99SU, x.Last, x.LastSU,
			x.OriginUpS, mib(x.FromOrigin), mib(x.FromPeers), x.CPUPercent)
	}
	fmt.Fprintln(w, "  (origin: what the origin uploaded / S; from origin, from peers: means per host)")
	for _, x := range append([]FanOut{f}, rep.Deltas...) {
		if x.TransferCPU > 0 || x.StageCPU > 0 {
			fmt.Fprintf(w, "  %s: CPU per host (median, as each daemon reports it): transfer %.2f s, staging %.2f s\n",
				x.Name, x.TransferCPU, x.StageCPU)
		}
	}
	for _, d := range rep.Deltas {
		fmt.Fprintf(w, "  %s: %s per host on the wire = %.2f%% of the full release (delta torrent %s)\n",
			d.Name, mib(d.FromOrigin+d.FromPeers), 100*d.PerHostOverS, mib(float64(d.Bytes)))
	}
	notes := map[string][]HostResult{}
	for _, h := range f.Hosts {
		if h.Note != "" {
			notes[h.Note] = append(notes[h.Note], h)
		}
	}
	for note, hs := range notes {
		var parts []string
		for _, h := range hs {
			parts = append(parts, fmt.Sprintf("%s %.2f×", h.Name, h.Ratio))
		}
		if len(parts) > 6 {
			parts = append(parts[:6], fmt.Sprintf("… (%d hosts)", len(hs)))
		}
		fmt.Fprintf(w, "  %s: %s\n", note, strings.Join(parts, ", "))
	}
	if p.Scenario == TwoDC {
		rep.printTwoDC(w)
	}

	c := rep.Central
	fmt.Fprintf(w, "\ncentral baseline (every host fetches S from the origin alone over HTTP at %s/s):\n", mib(float64(c.UOrigin)))
	fmt.Fprintf(w, "  measured with %d hosts: %.1f s; formula %d·S/U_origin = %.1f s (measured/formula %.3f)\n",
		c.Hosts, c.Measured, c.Hosts, c.Formula, c.MeasuredOverFormula)
	how := "measured"
	if c.Hosts != p.Hosts {
		how = "N·S/U_origin × measured/formula"
	}
	fmt.Fprintf(w, "  at %d hosts: %.0f s = %.1f× S/U (%s); P2P last host %.1f s: central / P2P = %.1f×\n",
		p.Hosts, c.AtN, c.AtNSU, how, f.Last, rep.CentralOverP2P)

	fmt.Fprintf(w, "\ndeploys (canary %d, batches of %s, restart + 2 checks per host):\n", p.Canary, p.Batch)
	for _, d := range rep.Deploys {
		var ph []string
		for _, x := range d.Phases {
			ph = append(ph, fmt.Sprintf("%s %.2fs", x.Name, x.Seconds))
		}
		same := "not compared"
		if d.Compared {
			same = fmt.Sprintf("trees identical: %v", d.Same)
		}
		fmt.Fprintf(w, "  %s: %s, command to last ack %.2f s (%d acks), %d/%d hosts current, %s\n    phases: %s\n",
			d.Release[:12], d.Outcome, d.LastAck, d.Acks, d.Current, p.Hosts, same, strings.Join(ph, ", "))
		for _, fl := range d.Failures {
			fmt.Fprintf(w, "    failure: %s\n", fl)
		}
	}
	r := rep.Resources
	if p.Mode == Netns {
		fmt.Fprintf(w, "\nresources (this process and %d daemon processes): CPU %.1f s (%.2f s per host-equivalent), peak RSS summed over the daemons %s (%s per daemon)\n",
			p.Hosts+1, r.CPUSeconds, r.CPUSecondsPerHost, mib(float64(r.PeakRSS)), mib(float64(r.PeakRSSPerHost)))
		fmt.Fprintf(w, "  of which the daemons: CPU %.1f s (%.2f s per daemon); this process (generation, builds, polling, tree comparisons): %.1f s\n",
			r.DaemonCPUSeconds, r.DaemonCPUSecondsPerHost, r.CPUSeconds-r.DaemonCPUSeconds)
	} else {
		fmt.Fprintf(w, "\nresources (one process for all %d hosts + origin): CPU %.1f s (%.2f s per host-equivalent), peak RSS %s (%s per host-equivalent)\n",
			p.Hosts, r.CPUSeconds, r.CPUSecondsPerHost, mib(float64(r.PeakRSS)), mib(float64(r.PeakRSSPerHost)))
	}
	fmt.Fprintf(w, "whole run %.1f s; every host's tree identical to its source: %v\n", rep.Seconds, rep.Identical)
}

// printTwoDC says what crossed between the datacenters in each fan-out.
func (rep *Report) printTwoDC(w io.Writer) {
	p := rep.Params
	bridges := p.Bridges
	if bridges == 0 {
		bridges = swarm.DefaultBridges
	}
	choice := fmt.Sprintf("topology-aware: stripes in dc1, %d bridge(s) per DC talk across", bridges)
	if p.DCBlind {
		choice = "no DC labels: peers chosen blind"
	}
	if p.Mode != Netns {
		fmt.Fprintf(w, "  2dc (%s): payload hosts received from the other DC, from per-peer counters; the link is not shaped in-process:\n", choice)
	} else {
		fmt.Fprintf(w, "  2dc (%s): every byte on the link between the DCs (payload, gossip, metadata, control, headers), shaped to %s/s = %.2f·U each way:\n",
			choice, mib(float64(p.DCLink)), p.DCLinkU)
	}
	for _, x := range append([]FanOut{rep.FanOut}, rep.Deltas...) {
		fmt.Fprintf(w, "    %-12s %s crossed = %.2f copies of S", x.Name, mib(float64(x.CrossDC)), float64(x.CrossDC)/float64(x.S))
		if x.Kind == "delta" && x.Bytes > 0 {
			fmt.Fprintf(w, " = %.2f copies of the delta", float64(x.CrossDC)/float64(x.Bytes))
		}
		if p.Mode == Netns {
			fmt.Fprintf(w, " (dc1→dc2 %s, dc2→dc1 %s)", mib(float64(x.CrossDC1To2)), mib(float64(x.CrossDC2To1)))
		}
		fmt.Fprintln(w)
	}
}
