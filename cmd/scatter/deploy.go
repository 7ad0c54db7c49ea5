package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"scatter/artifact/core"
	"scatter/artifact/datadir"
	"scatter/orchestrate/deploy"
	"scatter/orchestrate/fleet"
	"scatter/orchestrate/host"
	"scatter/orchestrate/rollout"
)

// Exit codes of deploy and rollback beyond the common ones.
const (
	exitDeployFailed   = 4 // the deploy stopped and every promoted host was rolled back (or nothing was promoted)
	exitRollbackFailed = 5 // some host could not be rolled back: look at it now
	exitOutcomeUnknown = 6 // the deploy lost its local daemon: hosts may run different releases
)

// deployError carries a deploy's outcome to exitCode.
type deployError struct {
	result  rollout.Result
	reason  string
	unknown bool // lost the daemon: no outcome
}

func (e deployError) Error() string {
	if e.unknown {
		return "outcome unknown: " + e.reason
	}
	return e.result.String() + ": " + e.reason
}

func (e deployError) Unwrap() error {
	if !e.unknown && e.result == rollout.Aborted {
		return context.Canceled
	}
	return nil
}

func deployFlags(rollback bool) []cli.Flag {
	what := "deploy"
	if rollback {
		what = "rollback"
	}
	return []cli.Flag{
		dataFlag("the origin daemon's data directory"),
		&cli.StringFlag{Name: "message", Aliases: []string{"m"}, Required: !rollback, Usage: "why: recorded in the audit log"},
		&cli.StringFlag{Name: "config", EnvVars: env("deploy-config"), Usage: "the repo's scatter.yaml (default: DATA/REPO/scatter.yaml, saved by publish)"},
		&cli.IntFlag{Name: "canary", Usage: "canary pool size", DefaultText: "scatter.yaml, else 1"},
		&cli.StringFlag{Name: "batch", Usage: "batch size after the canaries, N or P% (default: scatter.yaml, else 25%)"},
		&cli.StringFlag{Name: "failure-limit", Usage: "failures tolerated among non-canary hosts, N or P% (default: scatter.yaml, else 0)"},
		&cli.StringFlag{Name: "on-abort", Value: "rollback", Usage: "on Ctrl-C or 'scatter abort': rollback or halt (leave hosts as they are)"},
		&cli.BoolFlag{Name: "dry-run", Usage: "print the plan (hosts per phase, what would restart) and change nothing"},
		&cli.BoolFlag{Name: "force", Hidden: rollback, Usage: "promote and restart even hosts already on the release"},
		pathFlag("audit", false, "also write the audit lines to this file (the daemon always appends them to DATA/REPO/audit.jsonl)"),
		&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print only failures and the summary of the " + what},
	}
}

func deployCommand() *cli.Command {
	return &cli.Command{
		Name:      "deploy",
		Usage:     "roll a release out: stage everywhere, canaries, batches, checks, automatic rollback",
		ArgsUsage: "REPO [RELEASE]",
		Description: "Runs on the deploy host, next to the origin daemon (--data). RELEASE is a release ID\n" +
			"(or a prefix of one) or a version; default: the newest published. The plan comes from\n" +
			"the repo's scatter.yaml, flags override it.\n\n" +
			"  1. takes the repo's deploy lock (a second deploy is refused, naming the holder);\n" +
			"  2. has every selected host stage the release, all in parallel;\n" +
			"  3. promotes the canary pool: switch `current`, run `restart`, run the checks,\n" +
			"     watch for the observation period, check again;\n" +
			"  4. promotes the rest batch by batch, with checks after each;\n" +
			"  5. past the failure limit (any canary failure counts), stops and rolls every\n" +
			"     promoted host back to the release it ran before.\n\n" +
			"Ctrl-C (or `scatter abort REPO`) aborts: no new batch starts, the one in flight\n" +
			"finishes, then promoted hosts roll back (--on-abort=halt leaves them). Hosts already on\n" +
			"the release are not restarted unless --force.\n\n" +
			"If the local daemon dies or stops answering mid-deploy, the deploy notices within 2 s,\n" +
			"sends nothing more, prints what each host was last known to run and exits 6.\n\n" +
			"Exit status: 0 success, 4 stopped and rolled back (or stopped before promoting),\n" +
			"5 a rollback failed (hosts need attention), 6 outcome unknown: lost the local\n" +
			"daemon, hosts may run different releases (see docs/operations-faults.md),\n" +
			"130 aborted, 1 could not run, 2 usage.",
		Flags: deployFlags(false),
		Action: func(c *cli.Context) error {
			if c.NArg() < 1 || c.NArg() > 2 {
				return usagef("deploy: want REPO [RELEASE]; see --help")
			}
			o, err := deployOptionsFrom(c, false)
			if err != nil {
				return err
			}
			return runDeploy(c.Context, o, c.Bool("quiet"), c.App.Writer)
		},
	}
}

func rollbackCommand() *cli.Command {
	return &cli.Command{
		Name:      "rollback",
		Usage:     "roll the fleet back to a retained release, with the same canary, batch and check machinery",
		ArgsUsage: "REPO [RELEASE]",
		Description: "RELEASE defaults to the previous release: what most hosts ran before the release\n" +
			"they run now. Every other behaviour, flag and exit status is as for deploy.",
		Flags: deployFlags(true),
		Action: func(c *cli.Context) error {
			if c.NArg() < 1 || c.NArg() > 2 {
				return usagef("rollback: want REPO [RELEASE]; see --help")
			}
			o, err := deployOptionsFrom(c, true)
			if err != nil {
				return err
			}
			return runDeploy(c.Context, o, c.Bool("quiet"), c.App.Writer)
		},
	}
}

func abortCommand() *cli.Command {
	return &cli.Command{
		Name:      "abort",
		Usage:     "abort the running deploy of a repo, as Ctrl-C in its terminal would",
		ArgsUsage: "REPO",
		Description: "Asks the origin daemon, which holds the repo's deploy lock for the running `scatter\n" +
			"deploy` (or rollback), to abort it; the daemon tells that deploy, whoever runs it (no\n" +
			"process is signalled): no new batch starts, the batch in flight finishes, then it rolls\n" +
			"back or halts as its --on-abort says. Waits until that deploy has ended (--wait=0 to\n" +
			"return at once). Open to the deployers group.",
		Flags: []cli.Flag{
			dataFlag("the origin daemon's data directory"),
			&cli.DurationFlag{Name: "wait", Value: 10 * time.Minute, Usage: "how long to wait for the deploy to end"},
		},
		Action: func(c *cli.Context) error {
			a, err := args(c, "REPO")
			if err != nil {
				return err
			}
			return fleet.Abort(c.Context, datadir.Data(c.String("data")), a[0], c.Duration("wait"), c.App.Writer)
		},
	}
}

// deployOptionsFrom reads deploy's and rollback's flags.
func deployOptionsFrom(c *cli.Context, rollback bool) (fleet.DeployOptions, error) {
	o := fleet.DeployOptions{
		PlanOptions: fleet.PlanOptions{
			Data: datadir.Data(c.String("data")), Repo: c.Args().Get(0), Release: c.Args().Get(1),
			ConfigFile: c.String("config"), Canary: -1, Batch: c.String("batch"),
			FailureLimit: c.String("failure-limit"), Rollback: rollback, Force: c.Bool("force"),
		},
		Message: c.String("message"), DryRun: c.Bool("dry-run"),
		AuditFile: c.String("audit"),
	}
	if err := o.OnAbort.UnmarshalText([]byte(c.String("on-abort"))); err != nil {
		return o, usagef("--on-abort: %v", err)
	}
	if c.IsSet("canary") {
		o.Canary = c.Int("canary")
		if o.Canary < 0 {
			return o, usagef("--canary: %d: want 0 or more", o.Canary)
		}
	}
	if rollback && o.Message == "" {
		o.Message = "rollback"
	}
	return o, nil
}

// runDeploy runs a deploy or rollback and prints its progress and summary.
func runDeploy(ctx context.Context, o fleet.DeployOptions, quiet bool, out io.Writer) error {
	pr := &progress{w: out, quiet: quiet}
	o.Progress, o.Warn = pr.event, out
	o.Started = func(p *fleet.Plan, id, who string) {
		cfg := p.Config
		fmt.Fprintf(out, "%s %s: %s %s (%s) to %d hosts, canary %d, batch %s, failure limit %s, by %s\n",
			p.What(), id, p.Repo, p.Release.Short(), p.Version, len(p.Hosts), cfg.Canary, cfg.Batch, cfg.FailureLimit, who)
	}
	p, sum, err := fleet.Deploy(ctx, o)
	if err != nil {
		return err
	}
	if sum == nil {
		printPlan(out, p)
		return nil
	}
	printSummary(out, sum, p.Version)
	if sum.Lost != "" {
		printLost(out, sum, p, o.Data.Dir())
		return deployError{reason: sum.Lost, unknown: true}
	}
	if sum.Result != rollout.Success {
		return deployError{result: sum.Result, reason: sum.Reason}
	}
	return nil
}

// printLost tells the operator of a deploy that lost its daemon what each
// host last did, and what to run next.
func printLost(w io.Writer, s *deploy.Summary, p *fleet.Plan, data string) {
	fmt.Fprintf(w, "  last known state of each host (nothing was sent after the daemon was lost):\n")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "    HOST\tSTATE\tRUNS\tRAN BEFORE\tLAST ANSWER")
	for _, l := range s.Last {
		said := l.Said
		if said == "" {
			said = "-"
		}
		fmt.Fprintf(tw, "    %s\t%s\t%s\t%s\t%s\n", l.Host, l.State, shortOrDash(l.Runs), shortOrDash(p.From[l.Host]), said)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nThe %s's outcome is unknown: hosts may run different releases (a host \"promoting\"\n"+
		"may run either). Next:\n"+
		"  1. restart the daemon (the same `scatter seed` command and --data %s); it rejoins the fleet;\n"+
		"  2. `scatter status --data %s` shows which host runs which release (DRIFT, MIXED);\n"+
		"  3. finish:     scatter deploy --data %s -m MESSAGE %s %s\n"+
		"     or go back: scatter rollback --data %s %s\n"+
		"Either brings every selected host to one release. See docs/operations-faults.md.\n",
		p.What(), data, data, data, p.Repo, s.Release.Short(), data, p.Repo)
}

func printPlan(w io.Writer, p *fleet.Plan) {
	cfg := p.Config
	fmt.Fprintf(w, "dry run: %s %s %s (%s) to %d hosts; nothing changes\n", p.What(), p.Repo, p.Release.Short(), p.Version, len(p.Hosts))
	fmt.Fprintf(w, "  stage:  all %d hosts (timeout %v)\n", len(p.Hosts), cfg.Timeouts.Stage)
	if canaries := p.Canaries(); len(canaries) > 0 {
		fmt.Fprintf(w, "  canary: %s", strings.Join(canaries, " "))
		if cfg.Timeouts.Observe > 0 {
			fmt.Fprintf(w, " (then observe %v and check again)", cfg.Timeouts.Observe)
		}
		fmt.Fprintln(w)
	}
	for i, b := range p.Batches() {
		fmt.Fprintf(w, "  batch %d: %s\n", i+1, strings.Join(b, " "))
	}
	restart, same := p.Restarts()
	if cfg.Restart {
		fmt.Fprintf(w, "  restart: %d hosts", restart)
		if same > 0 {
			fmt.Fprintf(w, " (%d already on %s: not restarted)", same, p.Release.Short())
		}
		fmt.Fprintln(w)
	} else {
		fmt.Fprintln(w, "  restart: none (restart: false)")
	}
	fmt.Fprintf(w, "  checks: %s\n", strings.Join(cfg.Checks, ", "))
	fmt.Fprintf(w, "  failure limit: %s of the non-canary hosts; any canary failure stops the %s\n", cfg.FailureLimit, p.What())
	var phases []string
	for ph, names := range cfg.Hooks {
		if len(names) > 0 {
			phases = append(phases, string(ph)+": "+strings.Join(names, ", "))
		}
	}
	sort.Strings(phases)
	for _, ph := range phases {
		fmt.Fprintf(w, "  hook %s\n", ph)
	}
}

// progress prints a deploy's events as they come.
type progress struct {
	w     io.Writer
	quiet bool
	last  time.Time
}

func hostList(hs []string) string {
	if len(hs) <= 8 {
		return strings.Join(hs, " ")
	}
	return fmt.Sprintf("%s … %s (%d hosts)", strings.Join(hs[:3], " "), hs[len(hs)-1], len(hs))
}

func (p *progress) event(e deploy.Event) {
	ts := e.Time.Format("15:04:05")
	switch e.Event {
	case "phase":
		if !p.quiet {
			fmt.Fprintf(p.w, "%s %s: %s\n", ts, e.Phase, hostList(e.Hosts))
		}
	case "abort":
		fmt.Fprintf(p.w, "%s aborting: no new batch starts; the batch in flight finishes first\n", ts)
	case "ack":
		a := e.Ack
		if !a.OK {
			fmt.Fprintf(p.w, "%s FAILED %s %s on %s: %s\n", ts, e.Phase, e.Kind, a.Host, a.Error)
			if r, ok := a.Failed(); ok && r.Output != "" {
				for _, line := range strings.Split(strings.TrimRight(r.Output, "\n"), "\n") {
					fmt.Fprintf(p.w, "    | %s\n", line)
				}
			}
		}
		if !p.quiet && time.Since(p.last) > time.Second {
			p.last = time.Now()
			c := e.Counts
			fmt.Fprintf(p.w, "%s   %d/%d staged, %d promoted, %d healthy, %d failed, %d unreachable, %d rolled back\n",
				ts, c.Staged, c.Hosts, c.Promoted, c.Healthy, c.Failed, c.Unreachable, c.RolledBack)
		}
	}
}

func printSummary(w io.Writer, s *deploy.Summary, version string) {
	fmt.Fprintf(w, "\n%s %s (%s): %s\n  %s\n", s.Repo, s.Release.Short(), version, strings.ToUpper(s.Outcome), s.Reason)
	var phases []string
	for _, p := range s.Phases {
		phases = append(phases, fmt.Sprintf("%s %.1fs", p.Name, p.End.Sub(p.Start).Seconds()))
	}
	fmt.Fprintf(w, "  phases: %s; total %.1fs\n", strings.Join(phases, ", "), s.Ended.Sub(s.Started).Seconds())
	c := s.Counts
	fmt.Fprintf(w, "  hosts: %d, %d staged, %d promoted, %d healthy, %d failed, %d unreachable, %d rolled back, %d rollback failed\n",
		c.Hosts, c.Staged, c.Promoted, c.Healthy, c.Failed, c.Unreachable, c.RolledBack, c.RollbackFailed)
	if len(s.Failures) > 0 {
		fmt.Fprintln(w, "  failures:")
	}
	for _, f := range s.Failures {
		fmt.Fprintf(w, "    %s  %s  %s  exit %d  %s\n", f.Host, f.Phase, f.Step, f.Exit, f.Error)
		if f.Output != "" {
			for _, line := range strings.Split(strings.TrimRight(f.Output, "\n"), "\n") {
				fmt.Fprintf(w, "      | %s\n", line)
			}
		}
	}
}

// printDeployStatus prints what runs where, flagging drift from the last
// successful deploy recorded in data (on the deploy host).
func printDeployStatus(w io.Writer, s *host.ClusterStatus, data datadir.Data) {
	rows := 0
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, m := range s.Members {
		for _, r := range m.Deploy {
			if r.Current.IsZero() && r.Last == nil {
				continue
			}
			if rows == 0 {
				fmt.Fprintln(tw, "\nHOST\tREPO\tCURRENT\tPREVIOUS\tHEALTH\tLAST STEP\tNOTE")
			}
			rows++
			last := ""
			if r.Last != nil {
				last = string(r.Last.Kind) + " " + r.Last.Release.Short()
				if r.Last.OK {
					last += " ok"
				} else {
					last += " FAILED: " + r.Last.Error
				}
			}
			note := ""
			if want := fleet.Deployed(data.Repo(r.Repo)); !want.IsZero() && r.Current != want {
				note = "DRIFT: the fleet was deployed to " + want.Short()
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Name, r.Repo, shortOrDash(r.Current), shortOrDash(r.Previous),
				r.Health, last, note)
		}
	}
	tw.Flush()
	for _, mix := range s.Mixed() {
		var parts []string
		for _, r := range mix.Runs {
			parts = append(parts, fmt.Sprintf("%s on %s", hostList(r.Hosts), shortOrDash(r.Release)))
		}
		fmt.Fprintf(w, "\nMIXED %s: %s.\n  A deploy did not finish, or hosts were out of reach. `scatter deploy %s RELEASE`\n"+
			"  or `scatter rollback %s` brings every host to one release (docs/operations-faults.md).\n",
			mix.Repo, strings.Join(parts, "; "), mix.Repo, mix.Repo)
	}
}

func shortOrDash(id core.ReleaseID) string {
	if id.IsZero() {
		return "-"
	}
	return id.Short()
}
