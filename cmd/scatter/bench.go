package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"scatter/bench"
	"scatter/bench/fanout"
	"scatter/bench/gen"
	"scatter/bench/hostcost"
	"scatter/bench/netns"
	"scatter/orchestrate/config"
)

// benchOptions are `scatter bench`'s flags after parsing.
type benchOptions struct {
	scenario             string
	hosts                int
	size                 int64
	upload, originUpload int64
	su                   time.Duration
	centralHosts         int
	seed                 uint64
	dir                  string
	keepDir, noCompare   bool
	netns, netnsUncapped bool
	daemonProcs          int
	dcLink               int64   // bytes per second, or 0
	dcLinkU              float64 // × U, or 0
	dcLinkSet, dcBlind   bool
	bridges              int
	compareAll           bool
	jsonFile, plotFile   string
	jsonStdout           bool // JSON on stdout instead of the text report
	rounds               int  // --scenario host
	appLoad              bool // --scenario host
	share                string
	sizeSet              bool
	log                  *slog.Logger
	stdout, stderr       io.Writer
}

func benchCommand() *cli.Command {
	return &cli.Command{
		Name:      "bench",
		Usage:     "measure fan-out and deploys on a local cluster of real hosts (the main job)",
		ArgsUsage: " ",
		Description: "With no flags (about two minutes on 2 cores): starts an origin and 32 hosts in this\n" +
			"process — the same host type 'scatter seed' runs, real swarm, gossip and stores — each\n" +
			"on its own 127.77.x.y address and capped at an upload rate U (the origin too); generates\n" +
			"a 64 MiB MediaWiki-like release; fans it out; rolls it out with 'deploy' (canary, batches\n" +
			"of 25%, a no-op restart, a tree check and a TCP check); then does the same for a code\n" +
			"change and a localisation update, which travel as deltas; then measures the central\n" +
			"baseline: --central-hosts hosts fetching the release from the origin alone over HTTP at\n" +
			"the origin's cap, checked against N·S/U_origin and scaled to --hosts.\n\n" +
			"S is the bytes of the release's full torrent (its compressed chunks). No distribution\n" +
			"beats about S/U, so every time is also a ratio to S/U from the same run. By default U\n" +
			"is set from the built release so that S/U = --su. The report gives per-host completion\n" +
			"(median, p90, p99, last), origin upload / S, bytes per host from peers and from the\n" +
			"origin, delta bytes per host, deploy time to the last ack by phase, central / P2P,\n" +
			"process CPU and peak RSS (all hosts share the process: per host-equivalent figures\n" +
			"divide by hosts+1). Every host's tree is compared with its source after the last\n" +
			"deploy (--compare-all: after each).\n\n" +
			"Scenarios (--scenario): cold (default: cold fan-out, then the two deltas); churn (10%\n" +
			"of hosts closed at 0.4 S/U and restarted at 1.5 S/U); late (10% of hosts start at\n" +
			"0.5 S/U); hetero (10% of hosts upload at U/4); 2dc (hosts alternate between two DC\n" +
			"labels, the swarm keeps stripes in the origin's DC and lets one bridge per DC (--bridges) talk\n" +
			"across, and the bytes that crossed are counted; in-process the link between the DCs\n" +
			"is not shaped, and the count is the payload hosts received from the other DC;\n" +
			"--dc-blind drops the labels for the baseline of peers chosen blind); artifact (the\n" +
			"artifact round trip:\n" +
			"build, rebuild after the two mutations, materialize cold and reusing, verify; --size\n" +
			"defaults to 256MiB there and --dir is its work directory); host (what one host pays to\n" +
			"take a release: an origin and a host, real 'scatter seed' processes on loopback; each of\n" +
			"--rounds rounds, in alternating order, a fresh host fetches and stages the release,\n" +
			"aria2c downloads its torrent from the origin (skipped if aria2c is absent), 'scatter\n" +
			"materialize' stages it from the host's store, and 'cp -a' + 'sync -f' copies the staged\n" +
			"tree; it reports each round's walls and CPU (transfer and staging apart) and the\n" +
			"median and spread of staging CPU ÷ cp's and transfer CPU ÷ aria2c's; --size defaults\n" +
			"to 256MiB; --app-load adds a CPU-bound stand-in application and measures its\n" +
			"throughput during a fetch by a default host and by one run with --share).\n\n" +
			"--netns (root only) runs the same measurement with every host and the origin a real\n" +
			"'scatter seed' process (this binary) in its own network namespace. Each daemon runs\n" +
			"with --upload-rate U on a link tc shapes to 1.05·U, as an operator caps a daemon just\n" +
			"below its NIC so that the daemon, not the kernel's queues, decides what leaves first;\n" +
			"--netns-uncapped leaves the daemons uncapped on a link of U. CPU and peak RSS are then\n" +
			"the daemons'. With --scenario 2dc the DCs are two switches joined by one link, each\n" +
			"way shaped by tc to --dc-link (default 4U, well below a DC's hosts' uplinks), and what\n" +
			"crossed is counted on that link: every byte, gossip and control too, not only payload.\n" +
			"The namespaces are removed when the run ends, on Ctrl-C too.\n\n" +
			"Run it on an otherwise idle machine: 33 hosts share the cores, and a CPU-bound run\n" +
			"measures the machine rather than the swarm (the report gives CPU %).",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "scenario", Value: fanout.Cold, Usage: "cold, churn, late, hetero, 2dc, artifact (the artifact round trip) or host (one host's cost)"},
			&cli.IntFlag{Name: "rounds", Usage: "with --scenario host: rounds, each running every step once", DefaultText: "5"},
			&cli.BoolFlag{Name: "app-load", Usage: "with --scenario host: measure a CPU-bound stand-in application during fetches, with and without --share"},
			&cli.StringFlag{Name: "share", Usage: "with --app-load: the scatter seed flags of the host that keeps out of the application's way", DefaultText: strings.Join(hostcost.DefaultShare, " ")},
			&cli.IntFlag{Name: "hosts", Value: 32, Usage: "target hosts (plus the origin)"},
			&cli.StringFlag{Name: "size", Value: "64MiB", Usage: "generated release size, uncompressed (S is about 0.4 of it)"},
			&cli.StringFlag{Name: "upload", Usage: "U, every host's upload cap per second (e.g. 2MiB)", DefaultText: "set so that S/U = --su"},
			&cli.StringFlag{Name: "origin-upload", Usage: "the origin's upload cap per second", DefaultText: "--upload"},
			&cli.DurationFlag{Name: "su", Value: 40 * time.Second, Usage: "the S/U to aim for when --upload is not given"},
			&cli.IntFlag{Name: "central-hosts", Usage: "hosts in the measured central baseline (it takes central-hosts × S/U_origin)", DefaultText: "1"},
			&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "generator seed"},
			&cli.BoolFlag{Name: "json", Usage: "print every figure, the parameters and the machine as JSON instead of the text report"},
			&cli.StringFlag{Name: "json-out", Usage: "also write that JSON to this file"},
			&cli.StringFlag{Name: "plot", Usage: "write an SVG of hosts complete over time (P2P, central, the S/U limit) to this file"},
			&cli.StringFlag{Name: "dir", Usage: "work directory (default: a temporary one)"},
			&cli.BoolFlag{Name: "keep-dir", Usage: "keep the work directory (trees, stores, every host's data) and print its path"},
			&cli.BoolFlag{Name: "compare-all", Usage: "compare every host's tree with its source after every deploy, not only the last"},
			&cli.BoolFlag{Name: "no-compare", Usage: "do not compare hosts' trees with their sources"},
			&cli.BoolFlag{Name: "netns", Usage: "run every host and the origin as a scatter seed process in its own network namespace, uplinks shaped by tc (root only)"},
			&cli.BoolFlag{Name: "netns-uncapped", Usage: "with --netns: run the daemons without --upload-rate, tc's link at U the only limit"},
			&cli.IntFlag{Name: "daemon-procs", Usage: "with --netns: run each daemon with scatter seed --procs N", DefaultText: "none: Go's default, every core for each daemon"},
			&cli.StringFlag{Name: "dc-link", Usage: "with --netns --scenario 2dc: the rate of the link between the DCs, each way: a rate (8MiB) or a multiple of U (2U)", DefaultText: "4U"},
			&cli.IntFlag{Name: "bridges", Usage: "with --scenario 2dc: hosts per datacenter that fetch across (scatter seed --bridges)", DefaultText: "1"},
			&cli.BoolFlag{Name: "dc-blind", Usage: "with --scenario 2dc: place hosts in the two DCs but give them no DC labels (peers chosen blind: the baseline)"},
		},
		Action: func(c *cli.Context) error {
			if c.Bool("json") && c.NArg() == 1 {
				return usagef("bench: --json is a switch (JSON on stdout); to write a file, --json-out %s", c.Args().First())
			}
			if _, err := args(c); err != nil {
				return err
			}
			o := benchOptions{
				scenario: c.String("scenario"), hosts: c.Int("hosts"), su: c.Duration("su"),
				centralHosts: c.Int("central-hosts"), seed: c.Uint64("seed"), dir: c.String("dir"),
				keepDir: c.Bool("keep-dir"), noCompare: c.Bool("no-compare"), compareAll: c.Bool("compare-all"),
				jsonFile: c.String("json-out"), jsonStdout: c.Bool("json"), plotFile: c.String("plot"), sizeSet: c.IsSet("size"), netns: c.Bool("netns"),
				netnsUncapped: c.Bool("netns-uncapped"), daemonProcs: c.Int("daemon-procs"), dcLinkSet: c.IsSet("dc-link"), dcBlind: c.Bool("dc-blind"),
				bridges: c.Int("bridges"), rounds: c.Int("rounds"), appLoad: c.Bool("app-load"), share: c.String("share"),
				stdout: c.App.Writer, stderr: c.App.ErrWriter,
			}
			var err error
			if o.dcLinkSet {
				if o.dcLink, o.dcLinkU, err = parseDCLink(c.String("dc-link")); err != nil {
					return err
				}
			}
			if o.size, err = parseSize(c.String("size")); err != nil {
				return err
			}
			for _, f := range []struct {
				name string
				v    *int64
			}{{"upload", &o.upload}, {"origin-upload", &o.originUpload}} {
				if s := c.String(f.name); s != "" {
					if *f.v, err = parseSize(s); err != nil {
						return usagef("--%s: %v", f.name, err)
					}
				}
			}
			if o.log, err = logger(c, slog.LevelWarn); err != nil {
				return err
			}
			return runBench(c.Context, o)
		},
	}
}

// runBench runs `scatter bench`: the fan-out harness, or the artifact
// round trip.
func runBench(ctx context.Context, o benchOptions) error {
	if o.netnsUncapped && !o.netns {
		return usagef("--netns-uncapped goes with --netns")
	}
	if o.daemonProcs != 0 && (!o.netns || o.daemonProcs < 0) {
		return usagef("--daemon-procs goes with --netns: a count of cores")
	}
	if o.dcLinkSet && !(o.netns && o.scenario == fanout.TwoDC) {
		return usagef("--dc-link goes with --netns --scenario 2dc: in-process the link between the DCs is not shaped")
	}
	if o.bridges != 0 && (o.scenario != fanout.TwoDC || o.bridges < 0) {
		return usagef("--bridges: a positive count, with --scenario 2dc")
	}
	if o.dcBlind && o.scenario != fanout.TwoDC {
		return usagef("--dc-blind goes with --scenario 2dc")
	}
	if o.netns && o.scenario == "artifact" {
		return usagef("--netns: the artifact round trip runs no hosts")
	}
	if o.netns && o.scenario == hostScenario {
		return usagef("--netns: the host scenario runs its two daemons on loopback")
	}
	if (o.rounds != 0 || o.appLoad) && o.scenario != hostScenario {
		return usagef("--rounds and --app-load go with --scenario host")
	}
	if o.share != "" && !o.appLoad {
		return usagef("--share goes with --app-load")
	}
	if o.scenario != "artifact" && o.scenario != hostScenario && !slices.Contains(fanout.Scenarios, o.scenario) {
		return usagef("--scenario: want one of %s, artifact or host, got %q", strings.Join(fanout.Scenarios, ", "), o.scenario)
	}
	dir := o.dir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "scatter-bench-"); err != nil {
			return err
		}
		if o.keepDir {
			fmt.Fprintf(o.stderr, "scatter bench: keeping the work directory %s\n", dir)
		} else {
			defer os.RemoveAll(dir)
		}
	}
	if o.scenario == "artifact" {
		return runRoundTrip(ctx, o, dir)
	}
	if o.scenario == hostScenario {
		return runHostCost(ctx, o, dir)
	}
	cfg := fanout.Config{
		Dir: dir, Hosts: o.hosts, Size: o.size, Upload: o.upload, OriginUpload: o.originUpload,
		TargetSU: o.su, Scenario: o.scenario, Seed: o.seed, CentralHosts: o.centralHosts,
		NoCompare: o.noCompare, CompareAll: o.compareAll, Log: o.log, Progress: o.stderr, Netns: o.netns,
		NetnsUncapped: o.netnsUncapped, DaemonProcs: o.daemonProcs, DCLink: o.dcLink, DCLinkU: o.dcLinkU, DCBlind: o.dcBlind, Bridges: o.bridges,
	}
	if o.netns {
		if err := netns.Check(); err != nil {
			return err
		}
		// The daemons are this binary, run as `scatter seed`.
		var err error
		if cfg.Binary, err = os.Executable(); err != nil {
			return fmt.Errorf("--netns: %w", err)
		}
	}
	if err := cfg.Validate(); err != nil {
		return usagef("%v", err)
	}
	fmt.Fprintf(o.stderr, "scatter bench: %d hosts, %s release, scenario %s, in %s\n", o.hosts, humanBytes(o.size), o.scenario, dir)
	rep, err := fanout.Run(ctx, cfg)
	if rep == nil {
		return err
	}
	return emitReport(o, rep, err, func() error { return writeBenchFiles(rep, o) })
}

// emitReport prints a harness's report (as JSON with --json) and writes
// its files; err is the run's, returned with any error writing them.
func emitReport(o benchOptions, rep interface{ Print(io.Writer) }, err error, files func() error) error {
	if o.jsonStdout {
		printJSON(o.stdout, rep)
	} else {
		rep.Print(o.stdout)
	}
	if werr := files(); werr != nil {
		return errors.Join(err, werr)
	}
	return err
}

func writeBenchFiles(rep *fanout.Report, o benchOptions) error {
	if err := writeJSONFile(o.jsonFile, rep); err != nil {
		return err
	}
	if o.plotFile != "" {
		var b bytes.Buffer
		if err := rep.WriteSVG(&b); err != nil {
			return err
		}
		if err := os.WriteFile(o.plotFile, b.Bytes(), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// runRoundTrip is the artifact round trip, `scatter bench --scenario
// artifact`: what `scatter bench` did before the fan-out harness.
func runRoundTrip(ctx context.Context, o benchOptions, dir string) error {
	size := o.size
	if !o.sizeSet {
		size = 256 << 20
	}
	fmt.Fprintf(o.stderr, "scatter bench: artifact round trip, %s release, seed %d, in %s\n", humanBytes(size), o.seed, dir)
	rep, err := bench.RoundTrip(ctx, bench.RoundTripConfig{Dir: dir, Size: size, Seed: o.seed, Log: o.log})
	if err != nil {
		return err
	}
	if o.jsonStdout {
		printJSON(o.stdout, rep)
	} else {
		printRoundTrip(o.stdout, rep)
	}
	if err := writeJSONFile(o.jsonFile, rep); err != nil {
		return err
	}
	if !rep.Identical {
		return fmt.Errorf("a materialized tree differs from its source")
	}
	return nil
}

// hostScenario is `scatter bench --scenario host`: package bench/hostcost.
const hostScenario = "host"

// runHostCost runs the host-cost benchmark.
func runHostCost(ctx context.Context, o benchOptions, dir string) error {
	cfg := hostcost.Config{Dir: dir, Size: o.size, Rounds: o.rounds, Seed: o.seed, KeepTrees: o.keepDir,
		AppLoad: o.appLoad, Log: o.log, Progress: o.stderr}
	if !o.sizeSet {
		cfg.Size = 0 // its own default
	}
	if o.share != "" {
		cfg.Share = strings.Fields(o.share)
	}
	var err error
	if cfg.Binary, err = os.Executable(); err != nil {
		return fmt.Errorf("--scenario host: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return usagef("%v", err)
	}
	fmt.Fprintf(o.stderr, "scatter bench: host cost, in %s\n", dir)
	rep, err := hostcost.Run(ctx, cfg)
	if rep == nil {
		return err
	}
	if err == nil {
		if p := rep.Problems(len(rep.Rounds)); len(p) > 0 {
			err = fmt.Errorf("inconsistent report: %s", strings.Join(p, "; "))
		}
	}
	return emitReport(o, rep, err, func() error { return writeJSONFile(o.jsonFile, rep) })
}

// benchAppCommand is the stand-in application of `scatter bench
// --scenario host --app-load`, run as its own process.
func benchAppCommand() *cli.Command {
	return &cli.Command{
		Name:   "bench-app",
		Usage:  "the stand-in application of scatter bench --app-load: CPU workers that print the work done",
		Hidden: true,
		Flags:  []cli.Flag{&cli.IntFlag{Name: "workers", Value: 2, Usage: "CPU workers"}},
		Action: func(c *cli.Context) error {
			if _, err := args(c); err != nil {
				return err
			}
			return hostcost.RunApp(c.Context, c.App.Writer, c.Int("workers"))
		},
	}
}

// writeJSONFile writes v as indented JSON to path, if path is not "".
func writeJSONFile(path string, v any) error {
	if path == "" {
		return nil
	}
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

func printRoundTrip(w io.Writer, r *bench.RoundTripReport) {
	fmt.Fprintf(w, "release: %d files, %s (%d CPUs, %s)\n", r.First.Files, humanBytes(r.First.Bytes), r.CPUs, r.Go)
	row := func(name string, f bench.BuildFigures) {
		fmt.Fprintf(w, "  %-20s %7.2fs %8.1f MB/s  chunks %7d  new %7d  new bytes %10s\n",
			name, f.Seconds, f.MBps, f.Chunks, f.NewChunks, humanBytes(f.NewBytes))
	}
	fmt.Fprintln(w, "build:")
	row("first", r.First)
	row("code change (a)", r.Code)
	row("l10n update (b)", r.L10n)
	fmt.Fprintf(w, "delta: code change %.2f%%, l10n update %.2f%% of the full compressed release\n",
		100*r.CodeDeltaRatio, 100*r.L10nDeltaRatio)
	fmt.Fprintf(w, "materialize (code change): cold %.2fs, reusing previous tree %.2fs (%.1fx, %d files linked)\n",
		r.ColdMaterializeSeconds, r.ReuseMaterializeSeconds, r.ColdMaterializeSeconds/r.ReuseMaterializeSeconds, r.ReuseLinkedFiles)
	fmt.Fprintf(w, "materialize (code change) reusing a previous tree without its record: %.2fs (every linked file re-hashed first: %s)\n",
		r.RehashMaterializeSeconds, humanBytes(r.RehashedBytes))
	fmt.Fprintf(w, "verify: %.2fs; trees identical to sources: %v; manifest %s\n", r.VerifySeconds, r.Identical, humanBytes(int64(r.ManifestBytes)))
	fmt.Fprintln(w, "bytes on the wire per host holding the parent (piece layout, piece size: wire+hashes / new chunk bytes):")
	for _, set := range []struct {
		name string
		l    []bench.WireCost
	}{{"code change", r.CodeLayouts}, {"l10n update", r.L10nLayouts}} {
		fmt.Fprintf(w, "  %-12s", set.name)
		for _, c := range set.l {
			fmt.Fprintf(w, " %s/%dK %.2fx", c.Layout, c.PieceLen>>10, 1+c.Overhead)
		}
		fmt.Fprintln(w)
	}
}

func generateCommand() *cli.Command {
	return &cli.Command{
		Name:      "generate",
		Usage:     "write a deterministic MediaWiki-like release tree (for benchmarks and trials)",
		ArgsUsage: "DIR",
		Description: "Without --mutate, creates DIR with a generated tree. With --mutate code, changes\n" +
			"about 1% of the source files and the version string in place; with --mutate l10n,\n" +
			"changes a handful of messages in every language file in place.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "size", Value: "64MiB", Usage: "approximate tree size"},
			&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "generator seed: the same seed gives the same tree"},
			&cli.StringFlag{Name: "mutate", Usage: "mutate an existing tree instead: code or l10n"},
		},
		Action: func(c *cli.Context) error {
			a, err := args(c, "DIR")
			if err != nil {
				return err
			}
			switch c.String("mutate") {
			case "":
				size, err := parseSize(c.String("size"))
				if err != nil {
					return err
				}
				st, err := gen.Generate(a[0], gen.Config{Seed: c.Uint64("seed"), TotalBytes: size})
				if err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "generated %s: %d files, %s\n", a[0], st.Files, humanBytes(st.Bytes))
			case "code":
				st, err := gen.MutateCode(a[0], c.Uint64("seed"))
				if err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "code change: %d files changed\n", st.FilesChanged)
			case "l10n":
				st, err := gen.MutateL10n(a[0], c.Uint64("seed"))
				if err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "localisation update: %d files changed\n", st.FilesChanged)
			default:
				return usagef("--mutate: want code or l10n, got %q", c.String("mutate"))
			}
			return nil
		},
	}
}

// parseDCLink reads --dc-link: a rate such as 8MiB (bytes per second), or
// a multiple of U such as 2U or 0.5U.
func parseDCLink(s string) (rate int64, timesU float64, err error) {
	if x, ok := strings.CutSuffix(strings.TrimSpace(s), "U"); ok {
		f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
		if err != nil || f <= 0 {
			return 0, 0, usagef("--dc-link %q: want a positive multiple of U (2U) or a rate (8MiB)", s)
		}
		return 0, f, nil
	}
	rate, err = parseSize(s)
	if err != nil {
		return 0, 0, usagef("--dc-link: %v", err)
	}
	return rate, 0, nil
}

// parseSize reads a positive size in the one grammar of sizes
// (config.ParseBytes): 512, 64KiB, 1.5MiB, 1GiB, 500MB.
func parseSize(s string) (int64, error) {
	n, err := config.ParseBytes(s)
	if err == nil && n <= 0 {
		err = fmt.Errorf("%q: want more than 0", s)
	}
	if err != nil {
		return 0, usagef("size %v", err)
	}
	return n, nil
}
