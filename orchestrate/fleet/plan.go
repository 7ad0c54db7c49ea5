package fleet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"scatter/artifact/core"
	"scatter/artifact/datadir"
	"scatter/orchestrate/config"
	"scatter/orchestrate/host"
	"scatter/orchestrate/rollout"
)

// PlanOptions say what to deploy and how; zero values mean the repo's
// scatter.yaml, and its defaults where it is silent.
type PlanOptions struct {
	Data datadir.Data // the origin daemon's data directory
	Repo string
	// Release is an ID, an ID prefix or a version; "": the newest, or for
	// a rollback the last deployed release if hosts run different ones,
	// else the previous release of most hosts.
	Release string
	// ConfigFile is the repo's scatter.yaml; "": the one publish saved,
	// else the defaults.
	ConfigFile          string
	Canary              int    // -1: from the config
	Batch, FailureLimit string // "": from the config; else N or P%
	Rollback            bool
	Force               bool // promote and restart hosts already on the release
}

// Plan is a deploy decided but not started: the hosts in rollout order
// (canaries first), what each runs now, and the release.
type Plan struct {
	Repo     string
	Release  core.ReleaseID
	Version  string
	Rollback bool
	Force    bool
	Hosts    []string
	From     map[string]core.ReleaseID // each host's current release
	Config   *config.Deploy            // with the flags applied
	// Controller is the local daemon's member name: acks go to it.
	Controller string
}

// What is "deploy" or "rollback", for messages.
func (p *Plan) What() string {
	if p.Rollback {
		return "rollback"
	}
	return "deploy"
}

// Canaries is the canary pool, the first hosts of the plan.
func (p *Plan) Canaries() []string { return p.Hosts[:min(p.Config.Canary, len(p.Hosts))] }

// Batches are the hosts after the canaries, in batches of the plan's size.
func (p *Plan) Batches() [][]string {
	rest := p.Hosts[len(p.Canaries()):]
	per := max(1, rollout.Size(p.Config.Batch).Of(len(rest)))
	var out [][]string
	for len(rest) > 0 {
		n := min(per, len(rest))
		out = append(out, rest[:n])
		rest = rest[n:]
	}
	return out
}

// Restarts counts the hosts a promote restarts and those already on the
// release (not restarted unless forced).
func (p *Plan) Restarts() (restart, same int) {
	for _, h := range p.Hosts {
		if p.From[h] == p.Release && !p.Force {
			same++
		} else {
			restart++
		}
	}
	return restart, same
}

// MakePlan asks the local daemon for the cluster and decides the plan:
// the live members that the repo's selector matches (never the origin),
// and the release among those the origin seeds.
func MakePlan(ctx context.Context, ctl *host.Control, o PlanOptions) (*Plan, error) {
	cfg, err := LoadPlanConfig(o)
	if err != nil {
		return nil, err
	}
	st, err := ctl.Status(ctx)
	if err != nil {
		return nil, err
	}
	targets, err := ctl.Targets(ctx, o.Repo)
	if err != nil {
		return nil, err
	}
	p := &Plan{Repo: o.Repo, Rollback: o.Rollback, Force: o.Force, Config: cfg, Controller: st.Self,
		From: map[string]core.ReleaseID{}}
	for _, t := range targets {
		if t.Role == "origin" || !cfg.Hosts.Match(t.Labels()) {
			continue
		}
		p.Hosts = append(p.Hosts, t.Name)
		p.From[t.Name] = t.Deploy.Current
	}
	if len(p.Hosts) == 0 {
		return nil, fmt.Errorf("no live host matches the selector of %s (%d members seen)", o.Repo, len(targets))
	}
	if p.Release, p.Version, err = resolveRelease(st, targets, p.Hosts, o); err != nil {
		return nil, err
	}
	return p, nil
}

// LoadPlanConfig reads the repo's scatter.yaml (if any) and applies the
// options over it.
func LoadPlanConfig(o PlanOptions) (*config.Deploy, error) {
	path := o.ConfigFile
	explicit := path != ""
	if !explicit {
		path = o.Data.Repo(o.Repo).Config()
	}
	d, err := config.LoadDeploy(path)
	if errors.Is(err, os.ErrNotExist) && !explicit {
		d, err = config.ParseDeploy("defaults", []byte("repo: "+o.Repo+"\n"))
	}
	if err != nil {
		return nil, err
	}
	if d.Repo != o.Repo {
		return nil, invalidError{fmt.Sprintf("%s is for repo %q, not %q", path, d.Repo, o.Repo)}
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
			return nil, invalidError{fmt.Sprintf("%s: %v", f.flag, err)}
		}
		*f.dst = s
	}
	if err := d.Validate(); err != nil {
		return nil, invalidError{err.Error()}
	}
	return d, nil
}

// resolveRelease finds the release to deploy among those the origin
// seeds: an ID, an ID prefix or a version; by default the newest, or for
// a rollback the previous release of the selected hosts.
func resolveRelease(st *host.ClusterStatus, targets []host.Target, hosts []string, o PlanOptions) (core.ReleaseID, string, error) {
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
		prev, err := rollbackTarget(targets, hosts, Deployed(o.Data.Repo(o.Repo)))
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
		return core.ReleaseID{}, "", invalidError{fmt.Sprintf("release %q of %s is not retained here; have %s", want, o.Repo, strings.Join(have, ", "))}
	case 1:
		return match[0].id, match[0].version, nil
	}
	return core.ReleaseID{}, "", invalidError{fmt.Sprintf("release %q of %s is ambiguous: %d matches", want, o.Repo, len(match))}
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
