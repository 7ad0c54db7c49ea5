package sim

import (
	"flag"
	"os"
	"testing"
)

var (
	simSize        = flag.Int64("sim.size", 2<<30, "S in bytes for the BenchmarkSim benchmarks")
	simSU          = flag.Float64("sim.su", 120, "S/U in seconds: U is set from it (it matters only through the 10 s stall timer)")
	simOriginSlots = flag.Int("sim.originslots", 0, "Config.OriginSlots: 0 serves every stripe at once, as swarm does")
	simRoundRobin  = flag.Bool("sim.roundrobin", false, "Config.OriginRoundRobin: with -sim.originslots, one piece per host in turn")
	simSlots       = flag.Int("sim.slots", 0, "Config.UploadSlots: 0 unchokes every interested neighbour, as swarm does")
	simStall       = flag.Float64("sim.stall", 0, "Config.StallAfter in seconds: 0 is swarm's 10 s, negative never")
	simSVG         = flag.String("sim.svg", "", "write the completion curve of the last BenchmarkSim run to this SVG file")
)

func benchConfig(hosts int) Config {
	return Config{
		Hosts: hosts, Size: *simSize, Upload: float64(*simSize) / *simSU,
		OriginSlots: *simOriginSlots, OriginRoundRobin: *simRoundRobin, StallAfter: *simStall, UploadSlots: *simSlots, Seed: 1,
	}
}

// benchSim runs one fan-out per iteration and reports its completion
// quantiles as ratios to S/U, the origin's upload in S, and the central
// baseline's last host divided by the fan-out's.
//
//	go test ./bench/sim -run XXX -bench 'Sim(100|1k|10k)$' -benchtime 1x [-sim.originslots 1 [-sim.roundrobin]] [-sim.stall -1]
func benchSim(b *testing.B, hosts int) {
	cfg := benchConfig(hosts)
	var r Result
	for b.Loop() {
		var err error
		if r, err = Run(cfg); err != nil {
			b.Fatal(err)
		}
	}
	central, err := RunCentral(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(r.Ratio(r.Median()), "median/SU")
	b.ReportMetric(r.Ratio(r.P99()), "p99/SU")
	b.ReportMetric(r.Ratio(r.Last()), "last/SU")
	b.ReportMetric(float64(r.OriginUp)/float64(cfg.Size), "originUp/S")
	b.ReportMetric(central.Last()/r.Last(), "central/p2p")
	b.ReportMetric(float64(r.Transfers), "transfers")
	b.Logf("%d hosts, S=%d, %d pieces, S/U=%.0fs: median %.3f, p99 %.3f, last %.3f S/U; origin %.2f S; central %.1f S/U = %.1f× the fan-out",
		hosts, cfg.Size, (cfg.Size+cfg.pieceLen()-1)/cfg.pieceLen(), r.SU, r.Ratio(r.Median()), r.Ratio(r.P99()), r.Ratio(r.Last()),
		float64(r.OriginUp)/float64(cfg.Size), central.Ratio(central.Last()), central.Last()/r.Last())
	if *simSVG != "" {
		f, err := os.Create(*simSVG)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if err := WriteSVG(f, b.Name(), Series{Name: "bench/sim", Ratios: r.Ratios()}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSim32(b *testing.B)  { benchSim(b, 32) }
func BenchmarkSim100(b *testing.B) { benchSim(b, 100) }
func BenchmarkSim1k(b *testing.B)  { benchSim(b, 1000) }
func BenchmarkSim10k(b *testing.B) { benchSim(b, 10000) }
