package fleet

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"scatter/orchestrate/deploy"
	"scatter/orchestrate/host"
	"scatter/orchestrate/rollout"
)

// DeployOptions describe one `scatter deploy` or `scatter rollback`.
type DeployOptions struct {
	PlanOptions
	Message string // why: recorded in the audit log
	OnAbort rollout.OnAbort
	DryRun  bool // plan only: Deploy returns the plan and changes nothing
	// AuditFile, if set, gets a copy of the deploy's audit lines, besides
	// the repo's audit log that the daemon keeps.
	AuditFile string
	// RetryEvery re-sends a step to hosts that have not answered; 0: the
	// controller's default.
	RetryEvery time.Duration
	// Started is called once the lock is held, before the first command,
	// with the plan, the deploy's ID and the deploying user as the daemon
	// knows it; nil: nothing.
	Started func(p *Plan, id, user string)
	// Progress receives the deploy's events as they happen; nil: none.
	Progress func(deploy.Event)
	// Warn receives what went wrong after the outcome was decided (the
	// audit log, the drift record), and why a deploy was aborted; nil:
	// nowhere.
	Warn io.Writer
}

// Deploy plans a deploy (or fleet rollback) with the local daemon and runs
// it. Everything that needs the deploy key or the deploy host's records
// goes through the origin daemon, which keeps them: it takes the repo's
// deploy lock for this process (a second deploy is refused, naming the
// holder; `scatter abort` asks the daemon, which tells this deploy), signs
// each command of this deploy, appends the events to the audit log in the
// caller's Unix user's name, and after a success records the release as
// what the fleet runs. This process never reads the key. With DryRun it
// returns the plan alone. The summary says the outcome; the error is set
// only when the deploy could not run.
func Deploy(ctx context.Context, o DeployOptions) (*Plan, *deploy.Summary, error) {
	ctl := host.DialControl(o.Data.Dir())
	p, err := MakePlan(ctx, ctl, o.PlanOptions)
	if err != nil {
		return nil, nil, err
	}
	if o.DryRun {
		return p, nil, nil
	}
	warn := o.Warn
	if warn == nil {
		warn = io.Discard
	}
	// What this process asks of the daemon while the deploy runs (command
	// signatures, audit lines) stops as soon as the daemon is lost, so a
	// dead or hung daemon never holds the deploy up: it ends at once with
	// its outcome unknown (deploy.Monitor).
	ioctx, iocancel := context.WithCancel(context.Background())
	defer iocancel()
	go func() {
		select {
		case <-host.ControlTransport{C: ctl}.Lost(ioctx):
			iocancel()
		case <-ioctx.Done():
		}
	}()
	key, err := ctl.Signer(ioctx)
	if err != nil {
		return p, nil, err
	}
	id := deploy.NewID(time.Now())
	lease, err := ctl.Lock(ctx, o.Repo, id, o.Message)
	if err != nil {
		return p, nil, err
	}
	defer lease.Release()
	// `scatter abort` (through the daemon) stops the deploy as Ctrl-C does.
	// Losing the daemon (which frees the lock) is the transport's to notice
	// (host.ControlTransport.Lost): the deploy then ends with its outcome
	// unknown, sending nothing more.
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case by, ok := <-lease.Abort:
			if ok {
				fmt.Fprintf(warn, "abort requested by %s\n", by)
				cancel()
			}
		case <-dctx.Done():
		}
	}()
	audit := ctl.AuditWriter(ioctx, o.Repo, id)
	var auditW io.Writer = audit
	if o.AuditFile != "" {
		f, err := os.OpenFile(o.AuditFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			return p, nil, fmt.Errorf("audit log copy: %w", err)
		}
		defer f.Close()
		auditW = io.MultiWriter(audit, f)
	}
	hooks := map[string][]string{}
	for ph, names := range p.Config.Hooks {
		hooks[string(ph)] = names
	}
	if o.Started != nil {
		o.Started(p, id, lease.User)
	}
	cfg := p.Config
	report := reporter{ctl: ctl, repo: o.Repo, warn: warn}
	progress := func(e deploy.Event) {
		if e.Event == "phase" {
			report.send(host.DeployReport{Repo: o.Repo, Phase: e.Phase})
		}
		if o.Progress != nil {
			o.Progress(e)
		}
	}
	sum, err := deploy.Run(dctx, deploy.Options{
		Repo: o.Repo, Release: p.Release, Hosts: p.Hosts, From: p.From, DeployID: id,
		Canary: cfg.Canary, Batch: rollout.Size(cfg.Batch), FailureLimit: rollout.Size(cfg.FailureLimit),
		Observe: cfg.Timeouts.Observe, StageTimeout: cfg.Timeouts.Stage, ActionTimeout: cfg.Timeouts.Action,
		RetryEvery: o.RetryEvery, OnAbort: o.OnAbort, Restart: cfg.Restart, Force: o.Force,
		Checks: cfg.Checks, Hooks: hooks, Rollback: o.Rollback, User: lease.User, Message: o.Message,
		Controller: p.Controller, Key: key, Transport: host.ControlTransport{C: ctl}, Audit: auditW,
		Progress: progress,
	})
	if err != nil {
		return p, nil, err
	}
	done := host.DeployReport{Repo: o.Repo, Outcome: sum.Outcome}
	for _, ph := range sum.Phases {
		done.Phases = append(done.Phases, host.PhaseSpan{Name: ph.Name, Seconds: ph.End.Sub(ph.Start).Seconds()})
	}
	if sum.Outcome == deploy.OutcomeUnknown {
		iocancel() // the daemon is gone: the audit log's rest and the report with it
	} else {
		report.send(done)
	}
	if err := audit.Close(); err != nil && sum.Outcome != deploy.OutcomeUnknown {
		fmt.Fprintf(warn, "warning: %v\n", err)
	}
	if sum.Result == rollout.Success {
		rctx, rcancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := ctl.RecordDeployed(rctx, o.Repo, id, p.Release); err != nil {
			fmt.Fprintf(warn, "warning: record the deployed release: %v\n", err)
		}
		rcancel()
	}
	return p, sum, nil
}

// reporter tells the daemon how the deploy goes, for its metrics. It is
// best effort: a daemon that does not take the report (an older one, say)
// costs one warning, never the deploy.
type reporter struct {
	ctl    *host.Control
	repo   string
	warn   io.Writer
	warned bool
}

func (r *reporter) send(rep host.DeployReport) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := r.ctl.ReportDeploy(ctx, rep); err != nil && !r.warned {
		r.warned = true
		fmt.Fprintf(r.warn, "warning: the daemon's deploy metrics will miss this deploy: %v\n", err)
	}
}
