package main

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/user"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"scatter/artifact"
	"scatter/artifact/datadir"
	"scatter/artifact/keys"
	"scatter/orchestrate/command"
	"scatter/orchestrate/config"
	"scatter/orchestrate/fleet"
	"scatter/orchestrate/host"
	"scatter/orchestrate/version"
	"scatter/swarm"
)

// daemonGCPercent is the daemon's GOGC unless its environment sets one.
// Its heap is mostly flat tables (chunk index, layout offsets) that cost
// little to scan: at 50, a host fetching and staging a 2 GiB release
// peaked at 41 MiB RSS instead of 46-48, and its collector used 0.58 s of
// CPU instead of 0.26 s (swarm/testdata/rss.sh, GODEBUG=gctrace=1).
const daemonGCPercent = 50

// tuneGC sets daemonGCPercent unless GOGC is set, and returns the
// percentage in effect.
func tuneGC() int {
	if _, set := os.LookupEnv("GOGC"); set {
		p := debug.SetGCPercent(100) // reads the runtime's setting back
		debug.SetGCPercent(p)
		return p
	}
	debug.SetGCPercent(daemonGCPercent)
	return daemonGCPercent
}

func seedCommand() *cli.Command {
	return &cli.Command{
		Name:      "seed",
		Usage:     "run the daemon: join the cluster, fetch and stage every announced release, serve peers",
		ArgsUsage: " ",
		Description: "Runs on every target host (and, with --origin, on the deploy host, where it serves\n" +
			"the build store). It joins the gossip cluster through --join, fetches each release\n" +
			"announced for any repo from all peers that hold it, verifies it and stages it under\n" +
			"DATA/<repo>/releases/<id>/. Stops cleanly on SIGINT or SIGTERM.\n\n" +
			"Each repo's named actions (what `restart` means here, what each check does, the hooks,\n" +
			"and the user they run as) come from --config; the deploy host can only name them.\n\n" +
			"All services bind to --bind: gossip (--gossip-port, TCP and UDP), the BitTorrent peer\n" +
			"wire (--bt-port) and the metadata server (--http-port). Run it as an unprivileged user.\n\n" +
			"It shares the host with the application, so it runs the Go collector at GOGC=50 (heap\n" +
			"headroom half the default, for under 1% more CPU) unless GOGC is set in its environment.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Value: config.DefaultSeedFile, EnvVars: env("config"), Usage: "daemon config file (seed.yaml): settings, and the named actions per repo; flags override its settings. The default is skipped if it does not exist"},
			dataFlag("data directory (flag, else --config's data:, else this)"),
			pathFlag("pubkey", false, "trusted deploy public key (.pub) (required here or in --config)"),
			&cli.StringFlag{Name: "name", Usage: "host name in the cluster (default: the system host name)"},
			&cli.StringFlag{Name: "bind", Value: "127.0.0.1", EnvVars: env("bind"), Usage: "IP address for all services"},
			&cli.IntFlag{Name: "gossip-port", Value: 7946, Usage: "gossip port (0: any)"},
			&cli.IntFlag{Name: "bt-port", Value: 6881, Usage: "BitTorrent peer-wire port (0: any)"},
			&cli.IntFlag{Name: "http-port", Value: 7947, Usage: "metadata server port (0: any)"},
			&cli.StringSliceFlag{Name: "join", EnvVars: env("join"), Usage: "gossip address HOST:PORT of a member to join through (repeatable; in the environment, comma-separated)"},
			&cli.StringFlag{Name: "cluster-key", EnvVars: env("cluster-key"), Usage: "gossip key file, mode 0600: one base64 key (16, 24 or 32 bytes) per line, the first sent under, the others accepted (rotation; see `scatter cluster-key`) (required here or in --config)"},
			&cli.BoolFlag{Name: "insecure-no-encryption", Usage: "run gossip without a cluster key, in plaintext: for tests only"},
			&cli.StringSliceFlag{Name: "allow-clients", Usage: "CIDR whose addresses may use the peer wire, tracker and metadata server although they are not hosts: stock BitTorrent clients (repeatable; default: hosts only)"},
			&cli.StringFlag{Name: "admin-addr", Value: host.DefaultAdminAddr, EnvVars: env("admin-addr"), Usage: "serve /metrics, /healthz and /readyz on this address (\"\": none)"},
			&cli.StringFlag{Name: "label", Value: "scatter", Usage: "cluster label: clusters with different labels ignore each other"},
			&cli.StringFlag{Name: "dc", Usage: "datacenter label"},
			&cli.StringFlag{Name: "rack", Usage: "rack label"},
			&cli.IntFlag{Name: "bridges", Value: swarm.DefaultBridges, Usage: "hosts of each datacenter that fetch from other datacenters (the first by name); the same on every host. More use more of a wide link between datacenters, at more copies across"},
			&cli.StringFlag{Name: "upload-rate", Usage: "upload cap per second, e.g. 50MiB or 1.5GB; 0: unlimited (default: --config's, else unlimited)"},
			&cli.StringFlag{Name: "download-rate", Usage: "download cap per second; 0: unlimited (default: --config's, else unlimited)"},
			&cli.IntFlag{Name: "keep", Value: 5, Usage: "releases kept per repo"},
			&cli.BoolFlag{Name: "origin", Usage: "this is the deploy host: serve its build store"},
			&cli.StringFlag{Name: "key", EnvVars: env("key"), Usage: "with --origin: the deploy private key; the daemon keeps it and signs for the deployers group (publish, deploy, rollback never read it)"},
			&cli.StringFlag{Name: "deployers", EnvVars: env("deployers"), Usage: "Unix group allowed to use the control socket (publish, deploy, abort, the audit log) besides root and the daemon's user", DefaultText: host.DefaultDeployers},
			&cli.IntFlag{Name: "nice", EnvVars: env("nice"), Usage: "niceness, 0 to 19, for the whole daemon: how far it steps back when the application wants the CPU (as systemd's Nice=; actions and hooks inherit it)"},
			&cli.IntFlag{Name: "procs", EnvVars: env("procs"), Usage: "cores the daemon's own code runs on at once (Go's GOMAXPROCS; staging writes 2 files per core at once); 0: every core, or GOMAXPROCS from the environment. Fewer leave more of the machine to the application, at some cost in staging CPU (docs/operations.md)"},
			&cli.StringFlag{Name: "io-class", EnvVars: env("io-class"), Usage: "I/O scheduling class: best-effort (lowest priority) or idle (disk time only when no one else wants it) (as systemd's IOSchedulingClass=; actions and hooks inherit it)", DefaultText: "unchanged"},
			&cli.DurationFlag{Name: "clock-skew", Value: command.ClockSkew, Usage: "how far in the future a command's issue time may lie (a host whose clock is further behind refuses commands, naming the skew)"},
			&cli.StringFlag{Name: "debug-addr", Hidden: true, EnvVars: env("debug-addr"), Usage: "serve net/http/pprof on this loopback address"},
			&cli.DurationFlag{Name: "clock-offset", Hidden: true, Usage: "tests only: shift this daemon's clock (command freshness, acks, status) by this much"},
		},
		Action: func(c *cli.Context) error {
			if _, err := args(c); err != nil {
				return err
			}
			tuneGC()
			if a := c.String("debug-addr"); a != "" {
				stop, err := serveDebug(a)
				if err != nil {
					return usagef("%v", err)
				}
				defer stop()
			}
			log, err := logger(c, slog.LevelInfo)
			if err != nil {
				return err
			}
			sc := &config.Seed{}
			if f := c.String("config"); f != "" {
				if _, err := os.Stat(f); c.IsSet("config") || err == nil {
					if sc, err = config.LoadSeed(f); err != nil {
						return err
					}
				}
			}
			// A flag given on the command line (or in the environment)
			// wins over the file, which wins over the flag's default.
			pick := func(flag, fromFile string) string {
				if c.IsSet(flag) || fromFile == "" {
					return c.String(flag)
				}
				return fromFile
			}
			data, pubFile, keyFile := pick("data", sc.Data), pick("pubkey", sc.PubKey), pick("key", sc.Key)
			if data == "" || pubFile == "" {
				return usagef("seed: --data and --pubkey are required (as flags or in --config)")
			}
			if c.Int("bridges") < 1 || c.Int("keep") < 1 {
				return usagef("seed: --bridges and --keep must be at least 1")
			}
			pub, err := keys.LoadPublic(pubFile)
			if err != nil {
				return err
			}
			var key ed25519.PrivateKey
			if keyFile != "" {
				if !c.Bool("origin") {
					return usagef("seed: --key is for the origin daemon (--origin) only: targets hold the public key alone")
				}
				if key, err = keys.LoadPrivate(keyFile); err != nil {
					return err
				}
			}
			deployers := pick("deployers", sc.Deployers)
			if deployers != "" {
				if _, err := user.LookupGroup(deployers); err != nil {
					return usagef("seed: --deployers %s: no such group (groupadd %s, and add the deploying users and the daemon's user to it)", deployers, deployers)
				}
			}
			cfg := host.Config{
				Name: c.String("name"), DataDir: data, PubKey: pub, Origin: c.Bool("origin"),
				BindAddr: pick("bind", sc.Bind), GossipPort: c.Int("gossip-port"), BTPort: c.Int("bt-port"),
				HTTPPort: c.Int("http-port"), Join: c.StringSlice("join"), Label: c.String("label"),
				DC: pick("dc", sc.DC), Rack: pick("rack", sc.Rack), Bridges: c.Int("bridges"), Keep: c.Int("keep"), Log: log,
				UploadRate: sc.UploadRate, DownloadRate: sc.DownloadRate, Repos: sc.Repos,
				Key: key, Deployers: deployers, ClockSkew: c.Duration("clock-skew"), ClockOffset: c.Duration("clock-offset"),
			}
			if !c.IsSet("clock-skew") && sc.ClockSkew > 0 {
				cfg.ClockSkew = sc.ClockSkew
			}
			if cfg.ClockSkew <= 0 {
				return usagef("seed: --clock-skew must be more than 0")
			}
			if !c.IsSet("join") && len(sc.Join) > 0 {
				cfg.Join = sc.Join
			}
			if !c.IsSet("keep") && sc.Keep > 0 {
				cfg.Keep = sc.Keep
			}
			if cfg.Name == "" {
				cfg.Name, _ = os.Hostname()
			}
			cfg.ClusterKeyFile = pick("cluster-key", sc.ClusterKey)
			cfg.InsecureNoEncryption = c.Bool("insecure-no-encryption")
			if cfg.ClusterKeyFile == "" && !cfg.InsecureNoEncryption {
				return usagef("seed: --cluster-key is required (as a flag or in --config): %v", host.ErrNoClusterKey)
			}
			for _, a := range c.StringSlice("allow-clients") {
				p, err := netip.ParsePrefix(a)
				if err != nil {
					return usagef("--allow-clients %q: want a CIDR such as 10.1.2.3/32: %v", a, err)
				}
				cfg.AllowClients = append(cfg.AllowClients, p.Masked())
			}
			for _, r := range []struct {
				flag string
				dst  *int64
			}{{"upload-rate", &cfg.UploadRate}, {"download-rate", &cfg.DownloadRate}} {
				if v := c.String(r.flag); v != "" {
					if *r.dst, err = config.ParseBytes(v); err != nil {
						return usagef("--%s: %v", r.flag, err)
					}
				}
			}
			share := host.Share{Nice: c.Int("nice"), IOClass: c.String("io-class")}
			if err := share.Validate(); err != nil {
				return usagef("seed: %v", err)
			}
			if n := c.Int("procs"); n < 0 {
				return usagef("seed: --procs %d: want 0 (every core) or more", n)
			} else if n > 0 {
				runtime.GOMAXPROCS(n)
			}
			if err := share.Apply(); err != nil {
				return err
			}
			if os.Geteuid() == 0 {
				log.Warn("running as root: the daemon needs no privilege; run it as a dedicated user")
			}
			return host.Run(c.Context, cfg, c.String("admin-addr"), func(h *host.Host, admin string) {
				if c.String("log-format") == "json" {
					// Every line of a JSON log is JSON.
					log.Info("started", "host", cfg.Name, "build", version.Get().Short(), "gossip", h.GossipAddr(),
						"peer_wire", h.Swarm().BTAddr(), "metadata", h.Swarm().HTTPAddr(), "admin", admin)
					return
				}
				fmt.Fprintf(c.App.ErrWriter, "scatter seed: %s %s gossip %s, peer wire %s, metadata %s, admin %s\n",
					cfg.Name, version.Get().Short(), h.GossipAddr(), h.Swarm().BTAddr(), h.Swarm().HTTPAddr(), or(admin, "off"))
			})
		},
	}
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func clusterKeyCommand() *cli.Command {
	return &cli.Command{
		Name:  "cluster-key",
		Usage: "rotate the gossip key without downtime",
		Description: "The daemon's --cluster-key file holds one base64 key per line: the first is the key\n" +
			"gossip is sent under, the others are accepted too. A rotation is three rounds, each\n" +
			"done on every host before the next starts: add the new key as a second line;\n" +
			"move it to the first line; remove the old line. After each edit, `scatter\n" +
			"cluster-key reload --data DATA` has the daemon read the file again (a restart\n" +
			"does too). See docs/operations.md.",
		Subcommands: []*cli.Command{{
			Name:      "reload",
			Usage:     "have the local daemon read its --cluster-key file again",
			ArgsUsage: " ",
			Flags: []cli.Flag{
				dataFlag("the local daemon's data directory"),
			},
			Action: func(c *cli.Context) error {
				if _, err := args(c); err != nil {
					return err
				}
				n, err := host.DialControl(c.String("data")).ReloadClusterKey(c.Context)
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(c.App.Writer, "cluster key reloaded: %d key(s) accepted\n", n)
				return err
			},
		}},
	}
}

func publishCommand() *cli.Command {
	return &cli.Command{
		Name:      "publish",
		Usage:     "build a release on the deploy host and announce it to the cluster",
		ArgsUsage: "SRC",
		Description: "Sends SRC (a directory or tarball, read as the calling user) to the origin daemon\n" +
			"(`scatter seed --origin --key KEY --data DATA`), which builds it into its store under\n" +
			"DATA/<repo>, lays out its torrents (full, and delta against its parent), signs it with\n" +
			"the deploy key it keeps and announces it. Prints the release ID. The caller needs no\n" +
			"access to the key: only membership of the deployers group.\n\n" +
			"The repo's prepare hooks run first, in SRC (rebuild the localisation caches, update\n" +
			"submodules…), with a minimal environment; a failing hook stops the publish with its\n" +
			"output. They come from the repo's installed config, DATA/<repo>/scatter.yaml, or from\n" +
			"--config FILE, which is then installed for `scatter deploy`. A scatter.yaml inside SRC\n" +
			"is never obeyed: if it differs from the config in use, publish says so.",
		Flags: []cli.Flag{
			dataFlag("the origin daemon's data directory"),
			&cli.StringFlag{Name: "repo", Required: true, Usage: "repository name"},
			&cli.StringFlag{Name: "version", Required: true, Usage: "release version"},
			&cli.StringFlag{Name: "message", Usage: "release message"},
			&cli.BoolFlag{Name: "json", Usage: "print the build figures as JSON"},
			&cli.StringFlag{Name: "config", EnvVars: env("deploy-config"), Usage: "use this scatter.yaml (prepare hooks, deploy settings) and install it as the repo's config (default: the installed DATA/<repo>/scatter.yaml)"},
		},
		Action: func(c *cli.Context) error {
			a, err := args(c, "SRC")
			if err != nil {
				return err
			}
			if _, err := logger(c, slog.LevelWarn); err != nil {
				return err
			}
			b, err := fleet.Publish(c.Context, fleet.PublishOptions{
				Data: datadir.Data(c.String("data")), Src: a[0], Repo: c.String("repo"),
				Version: c.String("version"), Message: c.String("message"),
				ConfigFile: c.String("config"), HookOutput: c.App.ErrWriter,
			})
			if err != nil {
				return err
			}
			return printPublished(c.App.Writer, b, c.Bool("json"))
		},
	}
}

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "show the cluster as the local daemon sees it",
		ArgsUsage: " ",
		Description: "Lists every member: the scatter build it runs, role, labels, each repo's releases with their state and\n" +
			"progress, bytes received from the origin and from peers, and for a stalled fetch\n" +
			"the reason (no peers, none holds the missing pieces, peers choking or\n" +
			"rate-limited, verification failures). Members that do not answer are listed with\n" +
			"the error.\n\n" +
			"A second table shows what runs: each host's current and previous release per repo,\n" +
			"its health after the last checks and its last deploy step, as gossip reports them. On\n" +
			"the deploy host, a host whose current differs from the last successful deploy is\n" +
			"flagged DRIFT.\n\n" +
			"--engine prints instead the local daemon's BitTorrent engine as anacrolix sees it:\n" +
			"each torrent's pieces and, per connection, its flags and requests. In \"flags:\n" +
			"A:conn:B\", A is this host towards the peer and B the peer towards it: i =\n" +
			"interested, c = choking the other side. \"reqq: R+C/...:P/...\" counts our requests\n" +
			"in flight (R) and cancelled (C), and the peer's requests waiting on us (P). A stalled\n" +
			"fetch logs its torrent's part of this once, when it stalls.\n\n" +
			"Exit status: 0 healthy; 7 the local daemon does not answer or is not ready (told to join,\n" +
			"yet alone; data directory unreadable); 8 a member's fetch is stalled. A warning follows\n" +
			"the tables when members run different builds.",
		Flags: []cli.Flag{
			dataFlag("the local daemon's data directory"),
			&cli.BoolFlag{Name: "json", Usage: "print the full status as JSON"},
			&cli.BoolFlag{Name: "engine", Usage: "print the local BitTorrent engine's connections and requests"},
		},
		Action: func(c *cli.Context) error {
			if _, err := args(c); err != nil {
				return err
			}
			if c.Bool("engine") {
				if c.Bool("json") {
					return errors.New("--engine prints text; it does not combine with --json")
				}
				s, err := host.DialControl(c.String("data")).Engine(c.Context)
				if err != nil {
					return err
				}
				_, err = io.WriteString(c.App.Writer, s)
				return err
			}
			s, err := host.DialControl(c.String("data")).Status(c.Context)
			if err != nil {
				return statusError{exitUnhealthy, err.Error()}
			}
			if c.Bool("json") {
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				if err := enc.Encode(s); err != nil {
					return err
				}
			} else {
				printStatus(c.App.Writer, s)
				fmt.Fprintf(c.App.Writer, "\n%s: %s\n", s.Self, s.JoinLine(time.Now()))
				printDeployStatus(c.App.Writer, s, datadir.Data(c.String("data")))
				printTrust(c.App.Writer, s)
				printVersions(c.App.Writer, s)
				for _, w := range s.Warnings {
					fmt.Fprintf(c.App.Writer, "\nwarning: %s\n", w)
				}
			}
			return statusExit(s)
		},
	}
}

// statusError is `scatter status` finding something wrong: its code says
// what (exitUnhealthy, exitStalled).
type statusError struct {
	code int
	msg  string
}

func (e statusError) Error() string { return e.msg }

// statusExit says how `scatter status` exits: exitUnhealthy when the local
// daemon is not ready for a reason other than a stall (alone although told
// to join, data directory unreadable), else exitStalled when any member
// reports a stalled fetch, else 0.
func statusExit(s *host.ClusterStatus) error {
	hl := s.Health
	if !hl.Joined {
		return statusError{exitUnhealthy, "the local daemon is not ready: it has joined no other member"}
	}
	if hl.Store != "" {
		return statusError{exitUnhealthy, "the local daemon is not ready: data directory: " + hl.Store}
	}
	var stalled []string
	for _, m := range s.Members {
		if m.Status == nil {
			continue
		}
		for _, r := range m.Status.Repos {
			for _, rel := range r.Releases {
				if rel.Stuck != "" {
					stalled = append(stalled, m.Name+" "+r.Repo+" "+rel.Release.Short())
				}
			}
		}
	}
	if len(stalled) > 0 {
		return statusError{exitStalled, fmt.Sprintf("%d fetch(es) stalled: %s", len(stalled), strings.Join(stalled, ", "))}
	}
	return nil
}

// printVersions prints the builds the members run when they differ.
func printVersions(w io.Writer, s *host.ClusterStatus) {
	builds := map[string][]string{}
	for _, m := range s.Members {
		b := m.Build
		if b == "" {
			b = "unknown (older than build reporting)"
		}
		builds[b] = append(builds[b], m.Name)
	}
	if len(builds) < 2 {
		return
	}
	var lines []string
	for b, names := range builds {
		lines = append(lines, fmt.Sprintf("  %s: %d host(s): %s", b, len(names), hostList(names)))
	}
	sort.Strings(lines)
	fmt.Fprintf(w, "\nwarning: the fleet runs %d different builds of scatter:\n%s\n", len(builds), strings.Join(lines, "\n"))
}

func printStatus(w io.Writer, s *host.ClusterStatus) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tBUILD\tROLE\tDC/RACK\tCLOCK\tREPO\tRELEASE\tVERSION\tSTATE\tPROGRESS\tFROM ORIGIN\tFROM PEERS\tUPLOADED\tNOTE")
	for _, m := range s.Members {
		loc := strings.Trim(m.DC+"/"+m.Rack, "/") + "\t?"
		if m.Status != nil {
			loc = strings.Trim(m.DC+"/"+m.Rack, "/") + "\t" + skewText(m.Skew)
		}
		build := or(m.Build, "-")
		if m.Trust != "" && m.Trust != host.TrustEnrolled {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\t\t\t%s\t\t\t\t\t%s\n", m.Name, build, m.Role, loc, strings.ToUpper(m.Trust), m.Error)
			continue
		}
		if m.Status == nil {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\t\t\tunreachable\t\t\t\t\t%s\n", m.Name, build, m.Role, loc, m.Error)
			continue
		}
		st := m.Status
		counters := fmt.Sprintf("%s\t%s\t%s", humanBytes(st.ReceivedFromOrigin), humanBytes(st.ReceivedFromPeers), humanBytes(st.Uploaded))
		note := ""
		if len(st.BadPeers) > 0 {
			note = "banned peers for bad data: " + strings.Join(st.BadPeers, ", ")
		}
		rows := 0
		for _, r := range st.Repos {
			for _, rel := range r.Releases {
				progress := ""
				if rel.Total > 0 {
					progress = fmt.Sprintf("%.0f%% of %s", 100*float64(rel.Done)/float64(rel.Total), humanBytes(rel.Total))
				}
				why := note
				switch {
				case rel.Stuck != "":
					why = "stalled: " + rel.Stuck
				case rel.Error != "":
					why = "error: " + rel.Error
				case rel.Offloaded:
					why = "origin stopped uploading: hosts serve it"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Name, build, m.Role, loc, r.Repo, rel.Release.Short(),
					rel.Version, rel.State, progress, counters, why)
				rows++
			}
		}
		if rows == 0 {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\t\t\tidle\t\t%s\t%s\n", m.Name, build, m.Role, loc, counters, note)
		}
	}
	tw.Flush()
}

// printTrust says what the roster does not vouch for: pending hosts, known
// names with new keys (loudly), and refused messages.
func printTrust(w io.Writer, s *host.ClusterStatus) {
	var pending, newKey []string
	for _, m := range s.Members {
		switch m.Trust {
		case host.TrustPending:
			pending = append(pending, m.Name+" ("+m.Key+")")
		case host.TrustNewKey, host.TrustBadMeta:
			newKey = append(newKey, m.Name+" ("+m.Key+")")
		}
	}
	fmt.Fprintf(w, "\nroster v%d\n", s.Roster)
	if len(newKey) > 0 {
		fmt.Fprintf(w, "WARNING: KNOWN HOSTS ADVERTISE A KEY THE ROSTER DOES NOT HOLD, nothing they say counts: %s\n"+
			"  reinstalled? `scatter hosts approve NAME`; otherwise `scatter hosts revoke NAME` and investigate\n", strings.Join(newKey, ", "))
	}
	if len(pending) > 0 {
		fmt.Fprintf(w, "pending hosts, never deployed to until approved (scatter hosts pending): %s\n", strings.Join(pending, ", "))
	}
	printRefused(w, s.Refused)
}

func torrentCommand() *cli.Command {
	return &cli.Command{
		Name:      "torrent",
		Usage:     "write a release's .torrent (or magnet link) for a stock BitTorrent client",
		ArgsUsage: "RELEASE",
		Description: "Writes the release's torrent to standard output. The data is the release's chunks as\n" +
			"stored (zstd frames, back to back); any BitTorrent client can fetch it from scatter\n" +
			"hosts, which it finds through the tracker on a daemon's metadata server. The release\n" +
			"comes from --repo's store in --data. Without --tracker, the local daemon\n" +
			"(DATA/control.sock) names its own tracker.",
		Flags: []cli.Flag{
			dataFlag("the local daemon's data directory"),
			&cli.StringFlag{Name: "repo", Usage: "the repo the release belongs to (required unless --store)"},
			&cli.StringFlag{Name: "store", Hidden: true, Usage: "deprecated: a repo's store directory, DATA/<repo>; use --data and --repo"},
			pathFlag("tracker", false, "tracker URL, e.g. http://10.0.0.5:7947/announce"),
			&cli.StringFlag{Name: "kind", Value: "full", Usage: "full (every chunk) or delta (chunks new since the parent)"},
			&cli.BoolFlag{Name: "magnet", Usage: "print a magnet link instead"},
		},
		Action: func(c *cli.Context) error {
			a, err := args(c, "RELEASE")
			if err != nil {
				return err
			}
			if k := c.String("kind"); k != "full" && k != "delta" {
				return usagef("--kind: want full or delta, got %q", k)
			}
			var repo datadir.Repo
			switch {
			case c.IsSet("store") && c.IsSet("repo"):
				return usagef("torrent: --store is the old spelling of --data DATA --repo REPO; give one or the other")
			case c.IsSet("store"):
				repo = datadir.Repo(c.String("store"))
			case c.String("repo") == "":
				return usagef("torrent: --repo is required")
			default:
				if err := artifact.ValidName("repo", c.String("repo")); err != nil {
					return usagef("--repo: %v", err)
				}
				repo = datadir.Data(c.String("data")).Repo(c.String("repo"))
			}
			st, err := artifact.OpenStore(repo.Dir(), nil)
			if err != nil {
				return err
			}
			defer st.Close()
			id, err := st.Resolve(a[0])
			if err != nil {
				return err
			}
			tracker := c.String("tracker")
			if tracker == "" {
				if tracker, err = host.DialControl(repo.Data().Dir()).Tracker(c.Context); err != nil {
					return fmt.Errorf("name a --tracker, or run this next to a daemon: %w", err)
				}
			}
			t, err := swarm.OpenStockTorrent(repo, id, c.String("kind"), tracker)
			if err != nil {
				return err
			}
			if c.Bool("magnet") {
				_, err := fmt.Fprintln(c.App.Writer, t.Magnet())
				return err
			}
			return t.Write(c.App.Writer)
		},
	}
}

// printPublished prints what the daemon built: the release ID, or the
// figures `scatter build --json` prints.
func printPublished(out io.Writer, p *fleet.Published, asJSON bool) error {
	if !asJSON {
		_, err := fmt.Fprintln(out, p.Release)
		return err
	}
	j := buildJSON{
		Release: p.Release.String(), Repo: p.Repo, Version: p.Version, Files: p.Files, Bytes: p.Bytes,
		Chunks: p.Chunks, NewChunks: p.NewChunks, NewBytes: p.NewBytes, Seconds: p.Seconds,
	}
	if !p.Parent.IsZero() {
		j.Parent = p.Parent.String()
	}
	return json.NewEncoder(out).Encode(j)
}

// skewText shows a member's clock relative to this host's: "+0s", or how
// far ahead (+) or behind (-), in tenths of a second.
func skewText(d time.Duration) string {
	d = d.Round(100 * time.Millisecond)
	if d >= 0 {
		return "+" + d.String()
	}
	return d.String()
}
