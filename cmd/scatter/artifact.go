package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"scatter/artifact"
	"scatter/artifact/core"
	"scatter/artifact/keys"
)

func keygenCommand() *cli.Command {
	return &cli.Command{
		Name:      "keygen",
		Usage:     "write a new ed25519 deploy key pair",
		ArgsUsage: " ",
		Description: "Writes the private key to --out (mode 0600) and the public key to --out.pub.\n" +
			"Keep the private key on the deploy host only; give every target the .pub file.",
		Flags: []cli.Flag{&cli.StringFlag{Name: "out", Required: true, Usage: "private key file to create (must not exist)"}},
		Action: func(c *cli.Context) error {
			if _, err := args(c); err != nil {
				return err
			}
			pub, err := keys.Generate(c.String("out"))
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "wrote %s and %s.pub (%s)\n", c.String("out"), c.String("out"), keys.Fingerprint(pub))
			return nil
		},
	}
}

type buildOpts struct {
	Store, Key, Src string
	JSON            bool
	artifact.BuildOptions
}

// buildJSON is the --json output of scatter build.
type buildJSON struct {
	Release   string  `json:"release"`
	Repo      string  `json:"repo"`
	Version   string  `json:"version"`
	Parent    string  `json:"parent,omitempty"`
	Files     int     `json:"files"`
	Bytes     int64   `json:"bytes"`
	Chunks    int     `json:"chunks"`
	NewChunks int     `json:"new_chunks"`
	NewBytes  int64   `json:"new_bytes"`
	Seconds   float64 `json:"seconds"`
	PeakRSS   int64   `json:"peak_rss_bytes,omitempty"` // of this process, from /proc
}

func runBuild(ctx context.Context, o buildOpts, out io.Writer) error {
	key, err := keys.LoadPrivate(o.Key)
	if err != nil {
		return err
	}
	st, err := artifact.OpenStore(o.Store, o.Log)
	if err != nil {
		return err
	}
	res, err := artifact.Build(ctx, st, o.Src, key, o.BuildOptions)
	if err != nil {
		return err
	}
	return printBuild(out, res, o.JSON)
}

// printBuild prints a build's release ID, or with asJSON its figures.
func printBuild(out io.Writer, res *artifact.BuildResult, asJSON bool) error {
	m := res.Signed.Manifest
	if !asJSON {
		_, err := fmt.Fprintln(out, res.Signed.ID)
		return err
	}
	j := buildJSON{
		Release: res.Signed.ID.String(), Repo: m.Repo, Version: m.Version,
		Files: res.Files, Bytes: res.Bytes, Chunks: res.Chunks, NewChunks: res.NewChunks,
		NewBytes: res.NewBytes, Seconds: res.Duration.Seconds(), PeakRSS: peakRSS(),
	}
	if !m.Parent.IsZero() {
		j.Parent = m.Parent.String()
	}
	return json.NewEncoder(out).Encode(j)
}

func buildCommand() *cli.Command {
	return &cli.Command{
		Name:      "build",
		Usage:     "build a release into signed, content-addressed chunks",
		ArgsUsage: "SRC",
		Description: "SRC is a directory or a tarball (.tar, .tar.gz, .tar.zst; the compression is\n" +
			"detected from the content). Prints the release ID, or with --json one object:\n" +
			"release, repo, version, parent, files, bytes, chunks, new_chunks, new_bytes, seconds.\n\n" +
			"The same tree with the same metadata (repo, version, parent, builder, message,\n" +
			"time) always gives the same release ID; pass --time or set SOURCE_DATE_EPOCH to fix\n" +
			"the time. Setuid/setgid files, device nodes, FIFOs, absolute or escaping paths and\n" +
			"symlinks that leave the tree are refused with an error naming the entry.",
		Flags: []cli.Flag{
			storeFlag("chunk store directory (created if missing)"),
			pathFlag("key", true, "deploy private key (from scatter keygen)"),
			&cli.StringFlag{Name: "repo", Required: true, Usage: "repository name, e.g. mediawiki"},
			&cli.StringFlag{Name: "version", Required: true, Usage: "release version, e.g. 1.44.0-wmf.3"},
			&cli.StringFlag{Name: "message", Usage: "release message"},
			&cli.StringFlag{Name: "builder", Usage: "who builds it (default: $USER@hostname)"},
			&cli.StringFlag{Name: "parent", Usage: "parent release ID or prefix, or 'none' (default: newest release of the repo with another version)"},
			&cli.StringFlag{Name: "time", Usage: "release time, RFC 3339 or Unix seconds (default: $SOURCE_DATE_EPOCH, else now)"},
			&cli.BoolFlag{Name: "json", Usage: "print the result as one JSON object"},
			&cli.Int64Flag{Name: "max-expanded-size", Usage: "most bytes a tarball may expand to (default 64 GiB)"},
			&cli.Float64Flag{Name: "max-ratio", Usage: "most a compressed tarball may expand, as a ratio (default 200)"},
		},
		Action: func(c *cli.Context) error {
			a, err := args(c, "SRC")
			if err != nil {
				return err
			}
			log, err := logger(c, slog.LevelWarn)
			if err != nil {
				return err
			}
			o := buildOpts{Store: c.String("store"), Key: c.String("key"), Src: a[0], JSON: c.Bool("json")}
			o.BuildOptions = artifact.BuildOptions{
				Repo: c.String("repo"), Version: c.String("version"), Message: c.String("message"),
				Builder: c.String("builder"), Log: log,
				Limits: artifact.Limits{MaxExpanded: c.Int64("max-expanded-size"), MaxRatio: c.Float64("max-ratio")},
			}
			if o.Builder == "" {
				o.Builder = defaultBuilder()
			}
			if o.Time, err = parseTime(c.String("time")); err != nil {
				return err
			}
			switch p := c.String("parent"); p {
			case "":
			case "none":
				o.NoParent = true
			default:
				st, err := artifact.OpenStore(o.Store, log)
				if err != nil {
					return err
				}
				if o.Parent, err = st.Resolve(p); err != nil {
					return fmt.Errorf("--parent: %w", err)
				}
			}
			return runBuild(c.Context, o, c.App.Writer)
		},
	}
}

func defaultBuilder() string {
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil && name == "" {
		name = u.Username
	}
	host, _ := os.Hostname()
	return name + "@" + host
}

func parseTime(s string) (time.Time, error) {
	if s == "" {
		s = os.Getenv("SOURCE_DATE_EPOCH")
		if s == "" {
			return time.Time{}, nil
		}
	}
	if sec, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(sec, 0).UTC(), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, usagef("time %q: want RFC 3339 or Unix seconds", s)
	}
	return t, nil
}

// openRelease resolves ref in the store and, when pubKeyPath is set, checks
// that the trusted deploy key signed it.
func openRelease(st *artifact.Store, ref, pubKeyPath string) (*artifact.Signed, error) {
	id, err := st.Resolve(ref)
	if err != nil {
		return nil, err
	}
	sm, err := st.Manifest(id)
	if err != nil {
		return nil, err
	}
	if pubKeyPath == "" {
		return sm, nil
	}
	pub, err := keys.LoadPublic(pubKeyPath)
	if err != nil {
		return nil, err
	}
	return sm, sm.VerifiedBy(pub)
}

func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "check a release's signature and every chunk's hash",
		ArgsUsage: "RELEASE",
		Description: "RELEASE is a release ID or a unique prefix of one. Exits 0 when the deploy key\n" +
			"signed the manifest and every chunk is present and matches its hash; otherwise\n" +
			"prints each missing or corrupt chunk with the files that use it and exits 3.",
		Flags: []cli.Flag{
			storeFlag("chunk store directory"),
			pathFlag("pubkey", true, "trusted deploy public key (.pub)"),
		},
		Action: func(c *cli.Context) error {
			a, err := args(c, "RELEASE")
			if err != nil {
				return err
			}
			st, err := artifact.OpenStore(c.String("store"), nil)
			if err != nil {
				return err
			}
			sm, err := openRelease(st, a[0], c.String("pubkey"))
			if err != nil {
				return err
			}
			problems, err := artifact.Verify(c.Context, st, sm.Manifest)
			if err != nil {
				return err
			}
			for _, p := range problems {
				fmt.Fprintf(c.App.ErrWriter, "scatter: verify %s: %s\n", sm.ID.Short(), p)
			}
			if len(problems) > 0 {
				fmt.Fprintf(c.App.ErrWriter, "scatter: release %s FAILED verification: %d bad chunk(s)\n", sm.ID, len(problems))
				return errVerify
			}
			fmt.Fprintf(c.App.Writer, "release %s ok: signature by %s, %d files, %d chunks verified\n",
				sm.ID, keys.Fingerprint(sm.PubKey), sm.Manifest.Files(), len(sm.Manifest.Chunks))
			return nil
		},
	}
}

func materializeCommand() *cli.Command {
	return &cli.Command{
		Name:      "materialize",
		Usage:     "write a release's tree to a new directory",
		ArgsUsage: "RELEASE DEST",
		Description: "DEST must not exist. The tree is written next to DEST under a hidden name,\n" +
			"every chunk verified as it is written, and renamed to DEST only when complete:\n" +
			"DEST is either the whole release or absent. With --reuse, files that did not\n" +
			"change since the release materialized in that directory are hard-linked from it.",
		Flags: []cli.Flag{
			storeFlag("chunk store directory"),
			pathFlag("pubkey", false, "trusted deploy public key; when set, the signature must verify"),
			&cli.StringFlag{Name: "reuse", Usage: "directory holding an earlier materialized release, to link unchanged files from"},
			&cli.StringFlag{Name: "reuse-release", Usage: "release ID in --reuse (default: the directory's name)"},
		},
		Action: func(c *cli.Context) error {
			a, err := args(c, "RELEASE", "DEST")
			if err != nil {
				return err
			}
			log, err := logger(c, slog.LevelWarn)
			if err != nil {
				return err
			}
			st, err := artifact.OpenStore(c.String("store"), log)
			if err != nil {
				return err
			}
			sm, err := openRelease(st, a[0], c.String("pubkey"))
			if err != nil {
				return err
			}
			opt := artifact.MaterializeOptions{Log: log}
			if dir := c.String("reuse"); dir != "" {
				ref := c.String("reuse-release")
				if ref == "" {
					ref = filepath.Base(filepath.Clean(dir))
				}
				prev, err := openRelease(st, ref, c.String("pubkey"))
				if err != nil {
					return fmt.Errorf("--reuse: %w (name the release with --reuse-release)", err)
				}
				opt.Previous = &artifact.Previous{Manifest: prev.Manifest, Release: prev.ID, Dir: dir}
			}
			res, err := artifact.Materialize(c.Context, st, sm, a[1], opt)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "materialized %s into %s: %d files (%d linked), %s written in %.2fs\n",
				sm.ID.Short(), a[1], res.Files, res.Linked, humanBytes(res.Written), res.Duration.Seconds())
			return nil
		},
	}
}

type releaseJSON struct {
	Release string    `json:"release"`
	Repo    string    `json:"repo"`
	Version string    `json:"version"`
	Parent  string    `json:"parent,omitempty"`
	Time    time.Time `json:"time"`
	Builder string    `json:"builder"`
	Files   int       `json:"files"`
	Bytes   int64     `json:"bytes"`
	Chunks  int       `json:"chunks"`
	Message string    `json:"message"`
}

func releasesCommand() *cli.Command {
	return &cli.Command{
		Name:      "releases",
		Usage:     "list the releases in a store, newest first",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			storeFlag("chunk store directory"),
			&cli.StringFlag{Name: "repo", Usage: "only this repository"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object per line"},
		},
		Action: func(c *cli.Context) error {
			if _, err := args(c); err != nil {
				return err
			}
			st, err := artifact.OpenStore(c.String("store"), nil)
			if err != nil {
				return err
			}
			rels, err := st.Releases()
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
			if !c.Bool("json") {
				fmt.Fprintln(tw, "REPO\tVERSION\tRELEASE\tDATE\tSIZE\tFILES\tMESSAGE")
			}
			enc := json.NewEncoder(c.App.Writer)
			for _, r := range rels {
				m := r.Manifest
				if c.String("repo") != "" && m.Repo != c.String("repo") {
					continue
				}
				if c.Bool("json") {
					j := releaseJSON{Release: r.ID.String(), Repo: m.Repo, Version: m.Version, Time: m.Time,
						Builder: m.Builder, Files: m.Files(), Bytes: m.Size(), Chunks: len(m.Chunks), Message: m.Message}
					if !m.Parent.IsZero() {
						j.Parent = m.Parent.String()
					}
					if err := enc.Encode(j); err != nil {
						return err
					}
					continue
				}
				msg := strings.ReplaceAll(m.Message, "\n", " ")
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", m.Repo, m.Version, r.ID.Short(),
					m.Time.Format("2006-01-02 15:04:05Z"), humanBytes(m.Size()), m.Files(), msg)
			}
			return tw.Flush()
		},
	}
}

func gcCommand() *cli.Command {
	return &cli.Command{
		Name:      "gc",
		Usage:     "remove old releases and the chunks no kept release uses",
		ArgsUsage: " ",
		Description: "Keeps the newest --keep releases of each repository (by build time) and any\n" +
			"--pin'ned ones, removes the other manifests, then every chunk that no kept\n" +
			"release references. Refuses to run while a build is writing to the store.",
		Flags: []cli.Flag{
			storeFlag("chunk store directory"),
			&cli.IntFlag{Name: "keep", Required: true, Usage: "releases to keep per repository (at least 1)"},
			&cli.StringSliceFlag{Name: "pin", Usage: "release ID or prefix to keep regardless of age (repeatable)"},
			&cli.BoolFlag{Name: "dry-run", Usage: "report what would be removed, remove nothing"},
		},
		Action: func(c *cli.Context) error {
			if _, err := args(c); err != nil {
				return err
			}
			if c.Int("keep") < 1 {
				return usagef("--keep must be at least 1")
			}
			log, err := logger(c, slog.LevelWarn)
			if err != nil {
				return err
			}
			st, err := artifact.OpenStore(c.String("store"), log)
			if err != nil {
				return err
			}
			var pins []core.ReleaseID
			for _, ref := range c.StringSlice("pin") {
				id, err := st.Resolve(ref)
				if err != nil {
					return fmt.Errorf("--pin: %w", err)
				}
				pins = append(pins, id)
			}
			res, err := st.GC(artifact.GCOptions{Keep: c.Int("keep"), Pin: pins, DryRun: c.Bool("dry-run")})
			if err != nil {
				return err
			}
			verb := "removed"
			if c.Bool("dry-run") {
				verb = "would remove"
			}
			for _, id := range res.RemovedReleases {
				fmt.Fprintf(c.App.Writer, "%s release %s\n", verb, id)
			}
			fmt.Fprintf(c.App.Writer, "%s %d release(s) and %d chunk(s), %s; kept %d release(s)\n",
				verb, len(res.RemovedReleases), res.RemovedChunks, humanBytes(res.FreedBytes), len(res.Kept))
			return nil
		},
	}
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// peakRSS returns this process's peak resident set size (VmHWM), or 0 where
// /proc does not tell.
func peakRSS() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err == nil {
				return kb << 10
			}
		}
	}
	return 0
}
