package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"scatter/artifact/core"
	"scatter/artifact/keys"
	"scatter/orchestrate/config"
	"scatter/orchestrate/deploy"
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

// deployFile is where publish keeps the repo's scatter.yaml on the deploy
// host, and deploy reads it by default.
func deployFile(data, repo string) string { return filepath.Join(data, repo, "scatter.yaml") }

func deployFlags(rollback bool) []cli.Flag {
	what := "deploy"
	if rollback {
		what = "rollback"
	}
	return []cli.Flag{
		&cli.StringFlag{Name: "data", Required: true, Usage: "the origin daemon's data directory"},
		&cli.StringFlag{Name: "key", Required: true, Usage: "deploy private key (signs the commands)"},
		&cli.StringFlag{Name: "message", Aliases: []string{"m"}, Required: !rollback, Usage: "why: recorded in the audit log"},
		&cli.StringFlag{Name: "config", Usage: "the repo's scatter.yaml (default: DATA/REPO/scatter.yaml, saved by publish)"},
		&cli.IntFlag{Name: "canary", Usage: "canary pool size", DefaultText: "scatter.yaml, else 1"},
		&cli.StringFlag{Name: "batch", Usage: "batch size after the canaries, N or P% (default: scatter.yaml, else 25%)"},
		&cli.StringFlag{Name: "failure-limit", Usage: "failures tolerated among non-canary hosts, N or P% (default: scatter.yaml, else 0)"},
		&cli.StringFlag{Name: "on-abort", Value: "rollback", Usage: "on Ctrl-C or 'scatter abort': rollback or halt (leave hosts as they are)"},
		&cli.BoolFlag{Name: "dry-run", Usage: "print the plan (hosts per phase, what would restart) and change nothing"},
		&cli.BoolFlag{Name: "force", Hidden: rollback, Usage: "promote and restart even hosts already on the release"},
		&cli.StringFlag{Name: "audit", Usage: "audit log, JSON lines (default: DATA/REPO/audit.jsonl)"},
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
			return runDeploy(c.Context, o, c.App.Writer)
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
			return runDeploy(c.Context, o, c.App.Writer)
		},
	}
}

func abortCommand() *cli.Command {
	return &cli.Command{
		Name:      "abort",
		Usage:     "abort the running deploy of a repo, as Ctrl-C in its terminal would",
		ArgsUsage: "REPO",
		Description: "Sends SIGINT to the `scatter deploy` (or rollback) holding the repo's deploy lock:\n" +
			"no new batch starts, the batch in flight finishes, then it rolls back or halts as its\n" +
			"--on-abort says. Waits until that deploy has ended (--wait=0 to return at once).",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "data", Required: true, Usage: "the origin daemon's data directory"},
			&cli.DurationFlag{Name: "wait", Value: 10 * time.Minute, Usage: "how long to wait for the deploy to end"},
		},
		Action: func(c *cli.Context) error {
			a, err := args(c, "REPO")
			if err != nil {
				return err
			}
			return runAbort(c.Context, c.String("data"), a[0], c.Duration("wait"), c.App.Writer)
		},
	}
}

func runAbort(ctx context.Context, data, repo string, wait time.Duration, out io.Writer) error {
	path := deploy.LockPath(data, repo)
	if !deploy.Held(path) {
		return fmt.Errorf("no deploy of %s is running", repo)
	}
	h, err := deploy.ReadHolder(path)
	if err != nil || h.PID <= 0 {
		return fmt.Errorf("a deploy of %s runs but its lock file does not say which process: %v", repo, err)
	}
	if err := syscall.Kill(h.PID, syscall.SIGINT); err != nil {
		return fmt.Errorf("abort deploy %s (pid %d): %w", h.Deploy, h.PID, err)
	}
	fmt.Fprintf(out, "abort sent to deploy %s by %s (pid %d)\n", h.Deploy, h.User, h.PID)
	deadline := time.Now().Add(wait)
	for deploy.Held(path) && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	if deploy.Held(path) {
		return fmt.Errorf("deploy %s still running after %v", h.Deploy, wait)
	}
	fmt.Fprintf(out, "deploy %s ended; its summary is in its terminal and the audit log\n", h.Deploy)
	return nil
}

// deployOpts is what runDeploy needs; tests fill it directly.
type deployOpts struct {
	Data, Repo, Release  string // Release: ID, ID prefix, version, or "" for the default
	KeyFile, Message     string
	ConfigFile           string
	Canary               int // -1: from config
	Batch, FailureLimit  string
	OnAbort              string
	DryRun, Force, Quiet bool
	Rollback             bool
	AuditFile            string
	RetryEvery           time.Duration // 0: default
}

func deployOptionsFrom(c *cli.Context, rollback bool) (deployOpts, error) {
	o := deployOpts{
		Data: c.String("data"), Repo: c.Args().Get(0), Release: c.Args().Get(1), KeyFile: c.String("key"),
		Message: c.String("message"), ConfigFile: c.String("config"), Canary: -1,
		Batch: c.String("batch"), FailureLimit: c.String("failure-limit"), OnAbort: c.String("on-abort"),
		DryRun: c.Bool("dry-run"), Force: c.Bool("force"), Quiet: c.Bool("quiet"), Rollback: rollback,
		AuditFile: c.String("audit"),
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

// loadPlanConfig reads the repo's scatter.yaml (if any) and applies the
// flags over it.
func loadPlanConfig(o deployOpts) (*config.Deploy, error) {
	path := o.ConfigFile
	explicit := path != ""
	if !explicit {
		path = deployFile(o.Data, o.Repo)
	}
	d, err := config.LoadDeploy(path)
	if errors.Is(err, os.ErrNotExist) && !explicit {
		d, err = config.ParseDeploy("defaults", []byte("repo: "+o.Repo+"\n"))
	}
	if err != nil {
		return nil, err
	}
	if d.Repo != o.Repo {
		return nil, usagef("%s is for repo %q, not %q", path, d.Repo, o.Repo)
	}
	if o.Canary >= 0 {
		d.Canary = o.Canary
	}
	for _, f := range []struct {
		flag, v string
		dst     *config.Size
	}{{"--batch", o.Batch, &d.Batch}, {"--failure-limit", o.FailureLimit, &d.FailureLimit}} {
		if f.v == "" {
			continue
		}
		s, err := config.ParseSize(f.v)
		if err != nil {
			return nil, usagef("%s: %v", f.flag, err)
		}
		*f.dst = s
	}
	if err := d.Validate(); err != nil {
		return nil, usagef("%v", err)
	}
	return d, nil
}

func runDeploy(ctx context.Context, o deployOpts, out io.Writer) error {
	var onAbort rollout.OnAbort
	if err := onAbort.UnmarshalText([]byte(o.OnAbort)); err != nil {
		return usagef("--on-abort: %v", err)
	}
	cfg, err := loadPlanConfig(o)
	if err != nil {
		return err
	}
	key, err := keys.LoadPrivate(o.KeyFile)
	if err != nil {
		return err
	}
	ctl := host.DialControl(o.Data)
	st, err := ctl.Status(ctx)
	if err != nil {
		return err
	}
	targets, err := ctl.Targets(ctx, o.Repo)
	if err != nil {
		return err
	}
	var hosts []string
	from := map[string]core.ReleaseID{}
	for _, t := range targets {
		if t.Role == "origin" || !cfg.Hosts.Match(t.Labels()) {
			continue
		}
		hosts = append(hosts, t.Name)
		from[t.Name] = t.Deploy.Current
	}
	if len(hosts) == 0 {
		return fmt.Errorf("no live host matches the selector of %s (%d members seen)", o.Repo, len(targets))
	}
	rel, version, err := resolveRelease(st, targets, hosts, o)
	if err != nil {
		return err
	}
	if o.DryRun {
		printPlan(out, o, cfg, rel, version, hosts, from)
		return nil
	}
	who := currentUser()
	id := deploy.NewID(time.Now())
	hostname, _ := os.Hostname()
	lock, err := deploy.Acquire(deploy.LockPath(o.Data, o.Repo), deploy.Holder{
		User: who, Host: hostname, PID: os.Getpid(), Deploy: id, Message: o.Message, Since: time.Now().UTC()})
	if err != nil {
		return err
	}
	defer lock.Release()
	auditPath := o.AuditFile
	if auditPath == "" {
		auditPath = filepath.Join(o.Data, o.Repo, "audit.jsonl")
	}
	audit, err := os.OpenFile(auditPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	defer audit.Close()
	hooks := map[string][]string{}
	for p, names := range cfg.Hooks {
		hooks[string(p)] = names
	}
	what := "deploy"
	if o.Rollback {
		what = "rollback"
	}
	fmt.Fprintf(out, "%s %s: %s %s (%s) to %d hosts, canary %d, batch %s, failure limit %s, by %s\n",
		what, id, o.Repo, rel.Short(), version, len(hosts), cfg.Canary, cfg.Batch, cfg.FailureLimit, who)
	p := &progress{w: out, quiet: o.Quiet}
	sum, err := deploy.Run(ctx, deploy.Options{
		Repo: o.Repo, Release: rel, Hosts: hosts, From: from, DeployID: id,
		Canary: cfg.Canary, Batch: rollout.Size(cfg.Batch), FailureLimit: rollout.Size(cfg.FailureLimit),
		Observe: cfg.Timeouts.Observe, StageTimeout: cfg.Timeouts.Stage, ActionTimeout: cfg.Timeouts.Action,
		RetryEvery: o.RetryEvery, OnAbort: onAbort, Restart: cfg.Restart, Force: o.Force,
		Checks: cfg.Checks, Hooks: hooks, Rollback: o.Rollback, User: who, Message: o.Message,
		Controller: st.Self, Key: key, Transport: host.ControlTransport{C: ctl}, Audit: audit,
		Progress: p.event,
	})
	if err != nil {
		return err
	}
	if err := audit.Sync(); err != nil {
		fmt.Fprintf(out, "warning: audit log %s: %v\n", auditPath, err)
	}
	printSummary(out, sum, version)
	if sum.Lost != "" {
		printLost(out, sum, o, from)
		return deployError{reason: sum.Lost, unknown: true}
	}
	if sum.Result == rollout.Success {
		if err := recordDeployed(o.Data, o.Repo, rel, id); err != nil {
			fmt.Fprintf(out, "warning: %v\n", err)
		}
		return nil
	}
	return deployError{result: sum.Result, reason: sum.Reason}
}

func currentUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return fmt.Sprintf("uid %d", os.Getuid())
}

// deployedFile records the release the last successful deploy put on the
// fleet: status compares every host's current with it to flag drift.
func deployedFile(data, repo string) string { return filepath.Join(data, repo, "deployed") }

func recordDeployed(data, repo string, id core.ReleaseID, deployID string) error {
	p := deployedFile(data, repo)
	if err := os.WriteFile(p+".tmp", []byte(id.String()+" "+deployID+"\n"), 0o644); err != nil {
		return fmt.Errorf("record deployed release: %w", err)
	}
	return os.Rename(p+".tmp", p)
}

func readDeployed(data, repo string) core.ReleaseID {
	b, err := os.ReadFile(deployedFile(data, repo))
	if err != nil {
		return core.ReleaseID{}
	}
	id, _ := core.ParseReleaseID(strings.Fields(string(b) + " x")[0])
	return id
}

// resolveRelease finds the release to deploy among those the origin
// seeds: an ID, an ID prefix or a version; by default the newest, or for
// a rollback the previous release of the selected hosts.
func resolveRelease(st *host.ClusterStatus, targets []host.Target, hosts []string, o deployOpts) (core.ReleaseID, string, error) {
	var self *host.MemberStatus
	for i := range st.Members {
		if st.Members[i].Name == st.Self {
			self = &st.Members[i]
		}
	}
	if self == nil || self.Status == nil {
		return core.ReleaseID{}, "", errors.New("the local daemon does not report its own releases")
	}
	type known struct {
		id      core.ReleaseID
		version string
	}
	var rels []known // newest first
	for _, r := range self.Status.Repos {
		if r.Repo == o.Repo {
			for _, x := range r.Releases {
				rels = append(rels, known{x.Release, x.Version})
			}
		}
	}
	if len(rels) == 0 {
		return core.ReleaseID{}, "", fmt.Errorf("no release of %s is published here; run `scatter publish` first", o.Repo)
	}
	want := o.Release
	if want == "" && o.Rollback {
		prev, err := rollbackTarget(targets, hosts, readDeployed(o.Data, o.Repo))
		if err != nil {
			return core.ReleaseID{}, "", err
		}
		want = prev.String()
	}
	if want == "" {
		return rels[0].id, rels[0].version, nil
	}
	// A version label that matches exactly wins over an ID prefix: "2"
	// names version 2 even when some release ID happens to start with 2.
	var match []known
	for _, r := range rels {
		if r.version == want {
			match = append(match, r)
		}
	}
	if len(match) == 0 {
		for _, r := range rels {
			if strings.HasPrefix(r.id.String(), want) {
				match = append(match, r)
			}
		}
	}
	switch len(match) {
	case 0:
		var have []string
		for _, r := range rels {
			have = append(have, r.id.Short()+" ("+r.version+")")
		}
		return core.ReleaseID{}, "", usagef("release %q of %s is not retained here; have %s", want, o.Repo, strings.Join(have, ", "))
	case 1:
		return match[0].id, match[0].version, nil
	}
	return core.ReleaseID{}, "", usagef("release %q of %s is ambiguous: %d matches", want, o.Repo, len(match))
}

// rollbackTarget is the default release of a rollback. When the selected
// hosts run different releases and the last successful deploy is known
// (recorded on this deploy host), it is that release: an interrupted
// deploy is undone, stranded canaries included. Otherwise it is what most
// hosts ran before what they run now.
func rollbackTarget(targets []host.Target, hosts []string, deployed core.ReleaseID) (core.ReleaseID, error) {
	if !deployed.IsZero() {
		selected := map[string]bool{}
		for _, h := range hosts {
			selected[h] = true
		}
		for _, t := range targets {
			if selected[t.Name] && t.Deploy.Current != deployed {
				return deployed, nil
			}
		}
	}
	return previousRelease(targets, hosts)
}

// previousRelease is what most selected hosts ran before what they run now.
func previousRelease(targets []host.Target, hosts []string) (core.ReleaseID, error) {
	selected := map[string]bool{}
	for _, h := range hosts {
		selected[h] = true
	}
	votes := map[core.ReleaseID]int{}
	for _, t := range targets {
		if selected[t.Name] && !t.Deploy.Previous.IsZero() {
			votes[t.Deploy.Previous]++
		}
	}
	var best core.ReleaseID
	for id, n := range votes {
		if n > votes[best] || (n == votes[best] && id.String() < best.String()) {
			best = id
		}
	}
	if best.IsZero() {
		return best, errors.New("no host reports a previous release: name the release to roll back to")
	}
	return best, nil
}

func printPlan(w io.Writer, o deployOpts, cfg *config.Deploy, rel core.ReleaseID, version string, hosts []string, from map[string]core.ReleaseID) {
	what := "deploy"
	if o.Rollback {
		what = "rollback"
	}
	fmt.Fprintf(w, "dry run: %s %s %s (%s) to %d hosts; nothing changes\n", what, o.Repo, rel.Short(), version, len(hosts))
	canary := min(cfg.Canary, len(hosts))
	fmt.Fprintf(w, "  stage:  all %d hosts (timeout %v)\n", len(hosts), cfg.Timeouts.Stage)
	if canary > 0 {
		fmt.Fprintf(w, "  canary: %s", strings.Join(hosts[:canary], " "))
		if cfg.Timeouts.Observe > 0 {
			fmt.Fprintf(w, " (then observe %v and check again)", cfg.Timeouts.Observe)
		}
		fmt.Fprintln(w)
	}
	rest := hosts[canary:]
	per := max(1, rollout.Size(cfg.Batch).Of(len(rest)))
	for i := 0; len(rest) > 0; i++ {
		n := min(per, len(rest))
		fmt.Fprintf(w, "  batch %d: %s\n", i+1, strings.Join(rest[:n], " "))
		rest = rest[n:]
	}
	restart, same := 0, 0
	for _, h := range hosts {
		if from[h] == rel && !o.Force {
			same++
		} else {
			restart++
		}
	}
	if cfg.Restart {
		fmt.Fprintf(w, "  restart: %d hosts", restart)
		if same > 0 {
			fmt.Fprintf(w, " (%d already on %s: not restarted)", same, rel.Short())
		}
		fmt.Fprintln(w)
	} else {
		fmt.Fprintln(w, "  restart: none (restart: false)")
	}
	fmt.Fprintf(w, "  checks: %s\n", strings.Join(cfg.Checks, ", "))
	fmt.Fprintf(w, "  failure limit: %s of the non-canary hosts; any canary failure stops the %s\n", cfg.FailureLimit, what)
	var phases []string
	for p, names := range cfg.Hooks {
		if len(names) > 0 {
			phases = append(phases, string(p)+": "+strings.Join(names, ", "))
		}
	}
	sort.Strings(phases)
	for _, p := range phases {
		fmt.Fprintf(w, "  hook %s\n", p)
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

// printLost tells the operator of a deploy that lost its daemon what each
// host last did, and what to run next.
func printLost(w io.Writer, s *deploy.Summary, o deployOpts, from map[string]core.ReleaseID) {
	fmt.Fprintf(w, "  last known state of each host (nothing was sent after the daemon was lost):\n")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "    HOST\tSTATE\tRUNS\tRAN BEFORE\tLAST ANSWER")
	for _, l := range s.Last {
		said := l.Said
		if said == "" {
			said = "-"
		}
		fmt.Fprintf(tw, "    %s\t%s\t%s\t%s\t%s\n", l.Host, l.State, shortOrDash(l.Runs), shortOrDash(from[l.Host]), said)
	}
	tw.Flush()
	what := "deploy"
	if o.Rollback {
		what = "rollback"
	}
	fmt.Fprintf(w, "\nThe %s's outcome is unknown: hosts may run different releases (a host \"promoting\"\n"+
		"may run either). Next:\n"+
		"  1. restart the daemon (the same `scatter seed` command and --data %s); it rejoins the fleet;\n"+
		"  2. `scatter status --data %s` shows which host runs which release (DRIFT, MIXED);\n"+
		"  3. finish:     scatter deploy --data %s --key KEY -m MESSAGE %s %s\n"+
		"     or go back: scatter rollback --data %s --key KEY %s\n"+
		"Either brings every selected host to one release. See docs/operations-faults.md.\n",
		what, o.Data, o.Data, o.Data, o.Repo, s.Release.Short(), o.Data, o.Repo)
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

// publishConfig finds and loads the repo's scatter.yaml for publish:
// explicit, or SRC/scatter.yaml when SRC is a directory that has one.
func publishConfig(explicit, src, repo string) (string, *config.Deploy, error) {
	path := explicit
	if path == "" {
		path = filepath.Join(src, "scatter.yaml")
		if fi, err := os.Stat(path); err != nil || !fi.Mode().IsRegular() {
			return "", nil, nil
		}
	}
	d, err := config.LoadDeploy(path)
	if err != nil {
		return "", nil, err
	}
	if d.Repo != repo {
		return "", nil, usagef("%s is for repo %q, not %q", path, d.Repo, repo)
	}
	return path, d, nil
}

// runPrepare runs the deploy host's prepare hooks in the source directory,
// in order; the first failure stops the publish with the hook's output.
func runPrepare(ctx context.Context, d *config.Deploy, src string, log io.Writer) error {
	for _, argv := range d.Prepare {
		fmt.Fprintf(log, "prepare: %s\n", strings.Join(argv, " "))
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Dir = src
		out, err := cmd.CombinedOutput()
		if err != nil {
			tail := string(out)
			if len(tail) > 4096 {
				tail = "…" + tail[len(tail)-4096:]
			}
			return fmt.Errorf("prepare hook %q failed (%w); nothing was published; its output:\n%s", strings.Join(argv, " "), err, tail)
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.WriteFile(dst+".tmp", b, 0o644); err != nil {
		return err
	}
	return os.Rename(dst+".tmp", dst)
}

// printDeployStatus prints what runs where, flagging drift from the last
// successful deploy recorded in data (on the deploy host).
func printDeployStatus(w io.Writer, s *host.ClusterStatus, data string) {
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
			if want := readDeployed(data, r.Repo); !want.IsZero() && r.Current != want {
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
