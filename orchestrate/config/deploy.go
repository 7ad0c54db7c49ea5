package config

import (
	"errors"
	"fmt"
	"os"
	"path"
	"slices"
	"time"

	"go.yaml.in/yaml/v3"
)

// Defaults that LoadDeploy and ParseDeploy fill in for keys a file leaves out.
const (
	DefaultCanary        = 1
	DefaultStageTimeout  = 10 * time.Minute
	DefaultActionTimeout = 2 * time.Minute
)

// DefaultBatch is the batch size when scatter.yaml gives none.
var DefaultBatch = Size{N: 25, Percent: true}

// Phase names the moment of a deploy at which hook actions run on targets.
type Phase string

const (
	BeforeStage   Phase = "before_stage"
	AfterStage    Phase = "after_stage"
	BeforePromote Phase = "before_promote"
	AfterPromote  Phase = "after_promote"
	BeforeRestart Phase = "before_restart"
	AfterRestart  Phase = "after_restart"
	BeforeCheck   Phase = "before_check"
	AfterCheck    Phase = "after_check"
)

// Phases lists every phase in the order a deploy reaches them.
var Phases = []Phase{BeforeStage, AfterStage, BeforePromote, AfterPromote, BeforeRestart, AfterRestart, BeforeCheck, AfterCheck}

// SelectorLabels are the label keys a Selector may match on.
var SelectorLabels = []string{"name", "dc", "rack", "role"}

// Deploy is one repository's scatter.yaml: which hosts get its releases and
// how a rolling deploy proceeds. It lives with the repository and is read on
// the deploy host; targets never see it, only the action names it uses.
type Deploy struct {
	Repo         string
	Hosts        Selector
	Canary       int  // hosts in the canary pool; 0 means no canary
	Batch        Size // hosts per batch after the canaries; more than 0
	FailureLimit Size // failed non-canary hosts tolerated before rollback
	Timeouts     Timeouts
	Checks       []string // action names each target runs as health checks
	Restart      bool     // run the target's "restart" action on promote
	// Prepare are commands run on the deploy host, in the repository
	// directory, before the release is built; each is an argv, not a shell line.
	Prepare [][]string
	// Hooks are the action names targets run at each phase, in order.
	Hooks map[Phase][]string
}

// Timeouts bound each step of a deploy.
type Timeouts struct {
	Stage   time.Duration // fetching and materializing a release on one host
	Action  time.Duration // one promote, restart, check or rollback on one host
	Observe time.Duration // how long canaries are watched before the batches start
}

// Selector picks hosts by their labels (name, dc, rack, role). A host
// matches if its name is in Names, or if Labels is not empty and every
// pattern in it matches the host's label of that key. An empty Selector
// matches every host.
type Selector struct {
	Labels map[string]string // label key → glob pattern (path.Match syntax)
	Names  []string          // exact host names
}

// Empty reports whether s has neither labels nor names, and so matches all.
func (s Selector) Empty() bool { return len(s.Labels) == 0 && len(s.Names) == 0 }

// Match reports whether a host with these labels is selected.
func (s Selector) Match(labels map[string]string) bool {
	if s.Empty() {
		return true
	}
	if name, ok := labels["name"]; ok && slices.Contains(s.Names, name) {
		return true
	}
	if len(s.Labels) == 0 {
		return false
	}
	for key, pattern := range s.Labels {
		v, ok := labels[key]
		if !ok {
			return false
		}
		if m, err := path.Match(pattern, v); err != nil || !m {
			return false
		}
	}
	return true
}

// ActionNames lists, without repeats, every action a target must define for
// this deploy: "restart" when Restart is set, the checks, then the hooks.
func (d *Deploy) ActionNames() []string {
	var names []string
	add := func(n string) {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	if d.Restart {
		add("restart")
	}
	for _, c := range d.Checks {
		add(c)
	}
	for _, p := range Phases {
		for _, a := range d.Hooks[p] {
			add(a)
		}
	}
	return names
}

// LoadDeploy reads and checks a scatter.yaml file.
func LoadDeploy(file string) (*Deploy, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, readError(file, err)
	}
	return ParseDeploy(file, data)
}

// ParseDeploy decodes a scatter.yaml, fills in defaults and checks it. name
// is used only in errors. Every problem found is reported, each as an *Error
// naming the line and key path; several are joined with errors.Join.
func ParseDeploy(name string, data []byte) (*Deploy, error) {
	d := newDecoder(name)
	cfg := &Deploy{
		Canary:   DefaultCanary,
		Batch:    DefaultBatch,
		Timeouts: Timeouts{Stage: DefaultStageTimeout, Action: DefaultActionTimeout},
		Restart:  true,
		Hooks:    map[Phase][]string{},
	}
	root := d.parse(data)
	if len(d.errs) > 0 {
		return nil, d.err()
	}
	if root == nil {
		return nil, &Error{File: name, Err: errors.New("empty file; want at least repo: <name>")}
	}
	d.fields(root, "", map[string]field{
		"repo":          d.text(&cfg.Repo),
		"hosts":         func(v *yaml.Node, p string) { cfg.Hosts = d.selector(v, p) },
		"canary":        func(v *yaml.Node, p string) { d.integer(v, p, &cfg.Canary) },
		"batch":         func(v *yaml.Node, p string) { scalar(d, v, p, ParseSize, &cfg.Batch) },
		"failure_limit": func(v *yaml.Node, p string) { scalar(d, v, p, ParseSize, &cfg.FailureLimit) },
		"timeouts": func(v *yaml.Node, p string) {
			d.fields(v, p, map[string]field{
				"stage":   func(v *yaml.Node, p string) { d.duration(v, p, &cfg.Timeouts.Stage) },
				"action":  func(v *yaml.Node, p string) { d.duration(v, p, &cfg.Timeouts.Action) },
				"observe": func(v *yaml.Node, p string) { d.duration(v, p, &cfg.Timeouts.Observe) },
			})
		},
		"checks":  func(v *yaml.Node, p string) { cfg.Checks = d.strs(v, p) },
		"restart": func(v *yaml.Node, p string) { d.boolean(v, p, &cfg.Restart) },
		"hooks":   func(v *yaml.Node, p string) { d.hooks(v, p, cfg) },
	})
	if err := d.check(cfg.validate); err != nil {
		return nil, err
	}
	return cfg, nil
}

func (d *decoder) selector(n *yaml.Node, path string) Selector {
	var s Selector
	d.fields(n, path, map[string]field{
		"select": func(v *yaml.Node, p string) { s.Labels = d.strMap(v, p) },
		"names":  func(v *yaml.Node, p string) { s.Names = d.strs(v, p) },
	})
	return s
}

func (d *decoder) hooks(n *yaml.Node, path string, cfg *Deploy) {
	fs := map[string]field{
		"prepare": func(v *yaml.Node, p string) {
			cfg.Prepare = [][]string{}
			d.list(v, p, "a list of commands like [[git, submodule, update, --init]]", func(v *yaml.Node, p string) {
				cfg.Prepare = append(cfg.Prepare, d.strs(v, p))
			})
		},
	}
	for _, ph := range Phases {
		fs[string(ph)] = func(v *yaml.Node, p string) { cfg.Hooks[ph] = d.strs(v, p) }
	}
	d.fields(n, path, fs)
}

// Validate checks d without changing it; the errors name key paths.
func (d *Deploy) Validate() error { return validation(d.validate) }

func (d *Deploy) validate(bad report) {
	if err := checkRepoName(d.Repo); err != nil {
		bad("repo", err)
	}
	for _, key := range sortedKeys(d.Hosts.Labels) {
		p := "hosts.select." + key
		if !slices.Contains(SelectorLabels, key) {
			msg := fmt.Sprintf("unknown label; want one of %v", SelectorLabels)
			if s := suggest(key, slices.Clone(SelectorLabels)); s != "" {
				msg = fmt.Sprintf("unknown label; did you mean %q?", s)
			}
			bad(p, errors.New(msg))
			continue
		}
		if err := checkPattern(d.Hosts.Labels[key]); err != nil {
			bad(p, err)
		}
	}
	for i, name := range d.Hosts.Names {
		if err := checkHostName(name); err != nil {
			bad(index("hosts.names", i), err)
		}
	}
	if d.Canary < 0 {
		bad("canary", fmt.Errorf("%d: want 0 or more", d.Canary))
	}
	if err := checkSize(d.Batch, 1); err != nil {
		bad("batch", err)
	}
	if err := checkSize(d.FailureLimit, 0); err != nil {
		bad("failure_limit", err)
	}
	if d.Timeouts.Stage <= 0 {
		bad("timeouts.stage", fmt.Errorf("%v: want a positive duration", d.Timeouts.Stage))
	}
	if d.Timeouts.Action <= 0 {
		bad("timeouts.action", fmt.Errorf("%v: want a positive duration", d.Timeouts.Action))
	}
	if d.Timeouts.Observe < 0 {
		bad("timeouts.observe", fmt.Errorf("%v: want 0 or a positive duration", d.Timeouts.Observe))
	}
	checkNames(bad, "checks", d.Checks)
	for i, argv := range d.Prepare {
		if err := checkArgv(argv); err != nil {
			bad(index("hooks.prepare", i), err)
		}
	}
	for _, ph := range sortedKeys(d.Hooks) {
		if !slices.Contains(Phases, ph) {
			bad("hooks."+string(ph), fmt.Errorf("unknown phase; want one of %v", Phases))
			continue
		}
		checkNames(bad, "hooks."+string(ph), d.Hooks[ph])
	}
}

func checkNames(bad report, path string, names []string) {
	for i, n := range names {
		if err := checkActionName(n); err != nil {
			bad(index(path, i), err)
		}
	}
}

// checkSize checks that s is at least least, as a count or a percentage,
// and that a percentage is at most 100.
func checkSize(s Size, least int) error {
	if s.N < least {
		return fmt.Errorf("%s: want at least %d", s, least)
	}
	if s.Percent && s.N > 100 {
		return fmt.Errorf("%s: want at most 100%%", s)
	}
	return nil
}

func sortedKeys[K ~string, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
