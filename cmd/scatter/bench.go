package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"scatter/bench"
	"scatter/bench/gen"
)

func benchCommand() *cli.Command {
	return &cli.Command{
		Name:      "bench",
		Usage:     "measure scatter on a generated MediaWiki-like release",
		ArgsUsage: " ",
		Description: "With no flags: generates a 256 MiB release, builds it, rebuilds after a code\n" +
			"change (~1% of source files) and after a localisation update (every language\n" +
			"file), materializes cold and reusing the previous tree, verifies, and prints\n" +
			"the figures. Work files go to a temporary directory that is removed after.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "size", Value: "256MiB", Usage: "release size (e.g. 64MiB, 1GiB)"},
			&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "generator seed"},
			&cli.StringFlag{Name: "dir", Usage: "work directory (default: a temporary one, removed afterwards)"},
			&cli.StringFlag{Name: "json", Usage: "also write the figures as JSON to this file"},
		},
		Action: func(c *cli.Context) error {
			if _, err := args(c); err != nil {
				return err
			}
			size, err := parseSize(c.String("size"))
			if err != nil {
				return err
			}
			log, err := logger(c)
			if err != nil {
				return err
			}
			dir := c.String("dir")
			if dir == "" {
				if dir, err = os.MkdirTemp("", "scatter-bench-"); err != nil {
					return err
				}
				defer os.RemoveAll(dir)
			}
			fmt.Fprintf(c.App.ErrWriter, "scatter bench: %s release, seed %d, in %s\n", humanBytes(size), c.Uint64("seed"), dir)
			rep, err := bench.RoundTrip(c.Context, bench.RoundTripConfig{Dir: dir, Size: size, Seed: c.Uint64("seed"), Log: log})
			if err != nil {
				return err
			}
			printRoundTrip(c.App.Writer, rep)
			if path := c.String("json"); path != "" {
				data, err := json.MarshalIndent(rep, "", "  ")
				if err != nil {
					return err
				}
				if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
					return err
				}
			}
			if !rep.Identical {
				return fmt.Errorf("a materialized tree differs from its source")
			}
			return nil
		},
	}
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

// parseSize reads sizes such as 512, 64KiB, 64MiB, 1GiB, 500MB, 2GB.
func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}}
	num, mult := strings.TrimSpace(s), int64(1)
	for _, u := range units {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f <= 0 {
		return 0, usagef("size %q: want a positive number with an optional unit (KiB, MiB, GiB, MB, GB)", s)
	}
	return int64(f * float64(mult)), nil
}
