package sim

import (
	"flag"
	"os"
	"testing"

	"scatter/bench/plot"
)

var (
	simSize        = flag.Int64("sim.size", 2<<30, "S in bytes for the BenchmarkSim benchmarks")
	simSU          = flag.Float64("sim.su", 120, "S/U in seconds: U is set from it (it matters only through the 10 s stall timer)")
	simOriginSlots = flag.Int("sim.originslots", 0, "Config.OriginSlots: 0 serves every stripe at once, as swarm does")
	simRoundRobin  = flag.Bool("sim.roundrobin", false, "Config.OriginRoundRobin: with -sim.originslots, one piece per host in turn")
	simSlots       = flag.Int("sim.slots", 0, "Config.UploadSlots: 0 unchokes every interested neighbour, as swarm does")
	simStall       = flag.Float64("sim.stall", 0, "Config.StallAfter in seconds: 0 is swarm's 10 s, negative never")
	simHosts       = flag.Int("sim.hosts", 1000, "hosts in the scenario benchmarks (BenchmarkScenario…)")
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
//	go test ./bench/sim -run XXX -bench 'Sim(32|100|1k|10k)$' -benchtime 1x \
//	  [-sim.originslots 1 -sim.roundrobin] [-sim.slots 4] [-sim.stall -1]
func benchSim(b *testing.B, hosts int) {
	cfg := benchConfig(hosts)
	r := runBench(b, cfg)
	central, err := RunCentral(cfg)
	if err != nil {
		b.Fatal(err)
	}
	reportQuantiles(b, r)
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
		if err := plot.WriteSVG(f, b.Name(), plot.Linear, plot.Curve{Name: "bench/sim", Ratios: r.Ratios()}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSim32(b *testing.B)  { benchSim(b, 32) }
func BenchmarkSim100(b *testing.B) { benchSim(b, 100) }
func BenchmarkSim1k(b *testing.B)  { benchSim(b, 1000) }
func BenchmarkSim10k(b *testing.B) { benchSim(b, 10000) }

func runBench(b *testing.B, cfg Config) Result {
	var r Result
	for b.Loop() {
		var err error
		if r, err = Run(cfg); err != nil {
			b.Fatal(err)
		}
	}
	return r
}

func reportQuantiles(b *testing.B, r Result) {
	b.ReportMetric(r.Ratio(r.Median()), "median/SU")
	b.ReportMetric(r.Ratio(r.P99()), "p99/SU")
	b.ReportMetric(r.Ratio(r.Last()), "last/SU")
}

// BenchmarkScenarioTwoDC splits -sim.hosts between two datacenters joined
// by a link of 10·U each way (a fraction of the sum of uplinks), with and
// without topology-aware peer choice, and reports the copies of the
// release that crossed it.
//
//	go test ./bench/sim -run XXX -bench ScenarioTwoDC -benchtime 1x [-sim.hosts 1000]
func BenchmarkScenarioTwoDC(b *testing.B) {
	for _, aware := range []bool{true, false} {
		name := "aware"
		if !aware {
			name = "blind"
		}
		b.Run(name, func(b *testing.B) {
			cfg := benchConfig(*simHosts)
			cfg.DCs, cfg.InterDC, cfg.TopologyAware = 2, 10*cfg.Upload, aware
			r := runBench(b, cfg)
			reportQuantiles(b, r)
			b.ReportMetric(float64(r.CrossDC)/float64(cfg.Size), "crossDC/S")
		})
	}
}

// BenchmarkScenarioSlow gives one host in ten an upload of U/4.
//
//	go test ./bench/sim -run XXX -bench ScenarioSlow -benchtime 1x [-sim.hosts 1000]
func BenchmarkScenarioSlow(b *testing.B) {
	cfg := benchConfig(*simHosts)
	cfg.SlowHosts(0.1, 0.25)
	reportQuantiles(b, runBench(b, cfg))
}

// BenchmarkScenarioChurn takes one host in ten away at 0.5 S/U and brings
// it back at 1.5 S/U.
//
//	go test ./bench/sim -run XXX -bench ScenarioChurn -benchtime 1x [-sim.hosts 1000]
func BenchmarkScenarioChurn(b *testing.B) {
	cfg := benchConfig(*simHosts)
	cfg.Churn = Churn{Fraction: 0.1, Leave: 0.5, Rejoin: 1.5}
	r := runBench(b, cfg)
	reportQuantiles(b, r)
	b.ReportMetric(float64(r.OriginUp)/float64(cfg.Size), "originUp/S")
}
