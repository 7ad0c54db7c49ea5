package fanout

import "fmt"

// Problems lists what is wrong with rep, if anything, unless it is a complete, consistent report of a
// successful run with hosts hosts: every host held and deployed every
// release with trees identical to their sources, no host beat the S/U
// limit by more than a slack, and no more bytes are counted than moved.
// The tests and `scatter bench` use it.
func (rep *Report) Problems(hosts int) []string {
	var out []string
	bad := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	const slack = 0.75 // rate limiters start with a burst, which small runs feel
	if !rep.Identical {
		bad("trees differ")
	}
	f := rep.FanOut
	if len(f.Hosts) != hosts || f.S <= 0 || f.SU <= 0 || f.Kind != "full" {
		bad("fan-out: %d hosts, S %d, S/U %.2f, kind %q", len(f.Hosts), f.S, f.SU, f.Kind)
		return out
	}
	if !(f.MedianSU <= f.P90SU && f.P90SU <= f.P99SU && f.P99SU <= f.LastSU) || f.MedianSU < slack {
		bad("fan-out ratios median %.3f p90 %.3f p99 %.3f last %.3f", f.MedianSU, f.P90SU, f.P99SU, f.LastSU)
	}
	if f.OriginUploaded <= 0 || f.OriginUploaded > int64(hosts)*f.S+f.S/10 {
		bad("origin uploaded %d of S %d to %d hosts", f.OriginUploaded, f.S, hosts)
	}
	for _, h := range f.Hosts {
		// Every host received S, less what it held before (nothing).
		got := h.FromOrigin + h.FromPeers
		if got < f.S*9/10 || got > f.S*2 {
			bad("%s received %d (origin %d, peers %d) of S %d", h.Name, got, h.FromOrigin, h.FromPeers, f.S)
		}
	}
	if len(rep.Deltas) != 2 {
		bad("%d deltas, want 2", len(rep.Deltas))
	}
	for _, d := range rep.Deltas {
		if d.Kind != "delta" || d.Bytes <= 0 || d.Bytes >= d.S || len(d.Hosts) != hosts {
			bad("%s: kind %q, %d bytes of S %d, %d hosts", d.Name, d.Kind, d.Bytes, d.S, len(d.Hosts))
		}
		if d.PerHostOverS > 0.5 || d.PerHostOverS <= 0 {
			bad("%s: per host %.3f of S", d.Name, d.PerHostOverS)
		}
	}
	if len(rep.Deploys) != 3 {
		bad("%d deploys, want 3", len(rep.Deploys))
	}
	for _, d := range rep.Deploys {
		if d.Outcome != "success" || d.Current != hosts || (d.Compared && !d.Same) || len(d.Phases) < 2 || d.LastAck <= 0 || d.LastAck > d.Seconds+0.5 {
			bad("deploy %+v", d)
		}
	}
	if n := len(rep.Deploys); n > 0 && !rep.Deploys[n-1].Compared {
		bad("the last deploy's trees were not compared")
	}
	c := rep.Central
	if c.Hosts < 1 || c.Measured <= 0 || c.MeasuredOverFormula < slack || c.AtN <= 0 || rep.CentralOverP2P <= 0 {
		bad("central %+v, central/P2P %.2f", c, rep.CentralOverP2P)
	}
	m := rep.Machine
	if m.Cores < 1 || m.Go == "" || rep.Resources.CPUSeconds <= 0 || rep.Resources.PeakRSS <= 0 {
		bad("machine %+v, resources %+v", m, rep.Resources)
	}
	if r := rep.Resources; rep.Params.Mode == Netns && (r.DaemonCPUSeconds <= 0 || r.DaemonCPUSeconds > r.CPUSeconds) {
		bad("netns: daemons' CPU %.2f s, not within the run's %.2f s", r.DaemonCPUSeconds, r.CPUSeconds)
	}
	return out
}
