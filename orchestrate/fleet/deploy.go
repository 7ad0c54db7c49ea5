package fleet

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/user"
	"time"

	"scatter/artifact/keys"
	"scatter/orchestrate/deploy"
	"scatter/orchestrate/host"
	"scatter/orchestrate/rollout"
)

// DeployOptions describe one `scatter deploy` or `scatter rollback`.
type DeployOptions struct {
	PlanOptions
	KeyFile   string // the deploy private key: signs the commands
	Message   string // why: recorded in the audit log
	OnAbort   rollout.OnAbort
	DryRun    bool   // plan only: Deploy returns the plan and changes nothing
	AuditFile string // "": the repo's audit log on the deploy host
	// RetryEvery re-sends a step to hosts that have not answered; 0: the
	// controller's default.
	RetryEvery time.Duration
	// Started is called once the lock is held, before the first command,
	// with the plan and the deploy's ID; nil: nothing.
	Started func(p *Plan, id, user string)
	// Progress receives the deploy's events as they happen; nil: none.
	Progress func(deploy.Event)
	// Warn receives what went wrong after the outcome was decided (the
	// audit log's sync, the drift record); nil: nowhere.
	Warn io.Writer
}

// Deploy plans a deploy (or fleet rollback) with the local daemon and runs
// it: it takes the repo's deploy lock (a second deploy is refused, naming
// the holder), appends to the audit log, drives deploy.Run over the
// daemon's gossip, and after a success records the release as what the
// fleet runs. With DryRun it returns the plan alone. The summary says the
// outcome; the error is set only when the deploy could not run.
func Deploy(ctx context.Context, o DeployOptions) (*Plan, *deploy.Summary, error) {
	ctl := host.DialControl(o.Data.Dir())
	p, err := MakePlan(ctx, ctl, o.PlanOptions)
	if err != nil {
		return nil, nil, err
	}
	if o.DryRun {
		return p, nil, nil
	}
	key, err := keys.LoadPrivate(o.KeyFile)
	if err != nil {
		return p, nil, err
	}
	who := currentUser()
	id := deploy.NewID(time.Now())
	hostname, _ := os.Hostname()
	repo := o.Data.Repo(o.Repo)
	lock, err := deploy.Acquire(repo.DeployLock(), deploy.Holder{
		User: who, Host: hostname, PID: os.Getpid(), Deploy: id, Message: o.Message, Since: time.Now().UTC()})
	if err != nil {
		return p, nil, err
	}
	defer lock.Release()
	auditPath := o.AuditFile
	if auditPath == "" {
		auditPath = repo.Audit()
	}
	audit, err := os.OpenFile(auditPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return p, nil, fmt.Errorf("audit log: %w", err)
	}
	defer audit.Close()
	warn := o.Warn
	if warn == nil {
		warn = io.Discard
	}
	hooks := map[string][]string{}
	for ph, names := range p.Config.Hooks {
		hooks[string(ph)] = names
	}
	if o.Started != nil {
		o.Started(p, id, who)
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
	sum, err := deploy.Run(ctx, deploy.Options{
		Repo: o.Repo, Release: p.Release, Hosts: p.Hosts, From: p.From, DeployID: id,
		Canary: cfg.Canary, Batch: rollout.Size(cfg.Batch), FailureLimit: rollout.Size(cfg.FailureLimit),
		Observe: cfg.Timeouts.Observe, StageTimeout: cfg.Timeouts.Stage, ActionTimeout: cfg.Timeouts.Action,
		RetryEvery: o.RetryEvery, OnAbort: o.OnAbort, Restart: cfg.Restart, Force: o.Force,
		Checks: cfg.Checks, Hooks: hooks, Rollback: o.Rollback, User: who, Message: o.Message,
		Controller: p.Controller, Key: key, Transport: host.ControlTransport{C: ctl}, Audit: audit,
		Progress: progress,
	})
	if err != nil {
		return p, nil, err
	}
	done := host.DeployReport{Repo: o.Repo, Outcome: sum.Outcome}
	for _, ph := range sum.Phases {
		done.Phases = append(done.Phases, host.PhaseSpan{Name: ph.Name, Seconds: ph.End.Sub(ph.Start).Seconds()})
	}
	report.send(done)
	if err := audit.Sync(); err != nil {
		fmt.Fprintf(warn, "warning: audit log %s: %v\n", auditPath, err)
	}
	if sum.Result == rollout.Success {
		if err := RecordDeployed(repo, p.Release, id); err != nil {
			fmt.Fprintf(warn, "warning: %v\n", err)
		}
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

func currentUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return fmt.Sprintf("uid %d", os.Getuid())
}
