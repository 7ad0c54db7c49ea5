package config

import (
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// DefaultSeedFile is where `scatter seed` looks for its config when none is
// named: the path the package installs.
const DefaultSeedFile = "/etc/scatter/seed.yaml"

// DefaultTimeout bounds one run of a target's action when its config gives none.
const DefaultTimeout = 60 * time.Second

// DefaultDir is where a repository's actions run, relative to <data>/<repo>.
const DefaultDir = "current"

// Seed is the daemon's own config file (scatter seed --config), kept on each
// target host. Besides daemon settings, which flags override and whose zero
// value means "the daemon's default", it defines the named actions the host
// runs for each repository: the network can only name an action and a
// release, never carry a command.
type Seed struct {
	Data         string        // data directory, <data>/<repo>/… (see DESIGN.md)
	Bind         string        // IP address to listen on
	Join         []string      // peers to join, host or host:port
	DC, Rack     string        // this host's labels
	UploadRate   int64         // bytes per second; 0 means unlimited
	DownloadRate int64         // bytes per second; 0 means unlimited
	Keep         int           // releases kept per repository
	PubKey       string        // file holding the deploy public key
	Key          string        // the origin's deploy private key file: the daemon keeps it and signs for deployers
	Deployers    string        // Unix group allowed to use the control socket
	ClockSkew    time.Duration // how far in the future a command's issue time may lie; 0: the default
	ClusterKey   string        // file holding the gossip encryption key
	Repos        map[string]Repo
}

// Repo is what one repository may do on this host.
type Repo struct {
	User    string // the user actions run as; "" means the daemon's own user
	Dir     string // working directory of commands, relative to <data>/<repo>
	Actions map[string]Action
}

// Action is one named thing a target does when a deploy asks for it by name.
// Exactly one of Command, HTTP and TCP is set.
type Action struct {
	Name    string
	Command []string          // argv run directly, without a shell
	Env     map[string]string // added to the command's environment
	HTTP    *HTTPCheck        // a GET that must answer Status (and contain Contains)
	TCP     string            // host:port that must accept a connection
	Timeout time.Duration
}

// HTTPCheck is an HTTP GET health check.
type HTTPCheck struct {
	URL      string
	Status   int    // the status wanted, 200 by default
	Contains string // text the body must contain, if not ""
}

// Action looks up a repository's action by name.
func (s *Seed) Action(repo, name string) (Action, bool) {
	a, ok := s.Repos[repo].Actions[name]
	return a, ok
}

// LoadSeed reads and checks the daemon's config file.
func LoadSeed(file string) (*Seed, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, readError(file, err)
	}
	return ParseSeed(file, data)
}

// ParseSeed decodes the daemon's config, fills in defaults and checks it.
// name is used only in errors. An empty file is valid. Every problem found
// is reported, each as an *Error naming the line and key path; several are
// joined with errors.Join.
func ParseSeed(name string, data []byte) (*Seed, error) {
	d := newDecoder(name)
	cfg := &Seed{Repos: map[string]Repo{}}
	rate := func(dst *int64) field {
		return func(v *yaml.Node, p string) { scalar(d, v, p, ParseBytes, dst) }
	}
	root := d.parse(data)
	if len(d.errs) > 0 {
		return nil, d.err()
	}
	if root != nil {
		d.fields(root, "", map[string]field{
			"data":          d.text(&cfg.Data),
			"bind":          d.text(&cfg.Bind),
			"join":          func(v *yaml.Node, p string) { cfg.Join = d.strs(v, p) },
			"dc":            d.text(&cfg.DC),
			"rack":          d.text(&cfg.Rack),
			"upload_rate":   rate(&cfg.UploadRate),
			"download_rate": rate(&cfg.DownloadRate),
			"keep":          func(v *yaml.Node, p string) { d.integer(v, p, &cfg.Keep) },
			"pubkey":        d.text(&cfg.PubKey),
			"key":           d.text(&cfg.Key),
			"deployers":     d.text(&cfg.Deployers),
			"clock_skew":    func(v *yaml.Node, p string) { d.duration(v, p, &cfg.ClockSkew) },
			"cluster_key":   d.text(&cfg.ClusterKey),
			"repos": func(v *yaml.Node, p string) {
				d.entries(v, p, func(key string, v *yaml.Node, p string) { cfg.Repos[key] = d.repo(v, p) })
			},
		})
	}
	if err := d.check(cfg.validate); err != nil {
		return nil, err
	}
	return cfg, nil
}

func (d *decoder) repo(n *yaml.Node, path string) Repo {
	r := Repo{Dir: DefaultDir, Actions: map[string]Action{}}
	d.fields(n, path, map[string]field{
		"user": d.text(&r.User),
		"dir":  d.text(&r.Dir),
		"actions": func(v *yaml.Node, p string) {
			d.entries(v, p, func(key string, v *yaml.Node, p string) { r.Actions[key] = d.action(key, v, p) })
		},
	})
	return r
}

func (d *decoder) action(name string, n *yaml.Node, path string) Action {
	a := Action{Name: name, Timeout: DefaultTimeout}
	d.fields(n, path, map[string]field{
		"command": func(v *yaml.Node, p string) { a.Command = d.strs(v, p) },
		"env":     func(v *yaml.Node, p string) { a.Env = d.strMap(v, p) },
		"http": func(v *yaml.Node, p string) {
			h := &HTTPCheck{Status: 200}
			d.fields(v, p, map[string]field{
				"url":      d.text(&h.URL),
				"status":   func(v *yaml.Node, p string) { d.integer(v, p, &h.Status) },
				"contains": d.text(&h.Contains),
			})
			a.HTTP = h
		},
		"tcp":     d.text(&a.TCP),
		"timeout": func(v *yaml.Node, p string) { d.duration(v, p, &a.Timeout) },
	})
	return a
}

// Validate checks s without changing it; the errors name key paths.
func (s *Seed) Validate() error { return validation(s.validate) }

func (s *Seed) validate(bad report) {
	if s.Bind != "" {
		if _, err := netip.ParseAddr(s.Bind); err != nil {
			bad("bind", fmt.Errorf("%q: want an IP address like 10.0.0.5", s.Bind))
		}
	}
	for i, j := range s.Join {
		if err := checkHostPort(j, true); err != nil {
			bad(index("join", i), err)
		}
	}
	for _, f := range []struct{ key, value string }{{"dc", s.DC}, {"rack", s.Rack}} {
		if f.value != "" {
			if err := checkLabelValue(f.value); err != nil {
				bad(f.key, err)
			}
		}
	}
	if s.UploadRate < 0 {
		bad("upload_rate", fmt.Errorf("%d: want 0 (unlimited) or more", s.UploadRate))
	}
	if s.DownloadRate < 0 {
		bad("download_rate", fmt.Errorf("%d: want 0 (unlimited) or more", s.DownloadRate))
	}
	if s.ClockSkew < 0 {
		bad("clock_skew", fmt.Errorf("%v: want a positive duration like 1m", s.ClockSkew))
	}
	if s.Keep < 0 {
		bad("keep", fmt.Errorf("%d: want 0 (the default) or more", s.Keep))
	}
	for _, name := range sortedKeys(s.Repos) {
		p := "repos." + name
		if err := checkRepoName(name); err != nil {
			bad(p, err)
		}
		s.Repos[name].validate(bad, p)
	}
}

func (r Repo) validate(bad report, path string) {
	if r.User != "" && !userName.MatchString(r.User) {
		bad(path+".user", fmt.Errorf("%q: want a user name like mwdeploy", r.User))
	}
	if r.Dir != "" && !filepath.IsLocal(r.Dir) {
		bad(path+".dir", fmt.Errorf("%q: want a path inside the repository directory, like current", r.Dir))
	}
	for _, name := range sortedKeys(r.Actions) {
		r.Actions[name].validate(bad, path+".actions."+name, name)
	}
}

func (a Action) validate(bad report, path, key string) {
	if err := checkActionName(key); err != nil {
		bad(path, err)
	}
	if a.Name != key {
		bad(path, fmt.Errorf("action named %q is filed under %q", a.Name, key))
	}
	var kinds []string
	if a.Command != nil {
		kinds = append(kinds, "command")
	}
	if a.HTTP != nil {
		kinds = append(kinds, "http")
	}
	if a.TCP != "" {
		kinds = append(kinds, "tcp")
	}
	if len(kinds) != 1 {
		got := "none"
		if len(kinds) > 1 {
			got = strings.Join(kinds, " and ")
		}
		bad(path, fmt.Errorf("want exactly one of command, http or tcp; got %s", got))
	}
	if a.Command != nil {
		if err := checkArgv(a.Command); err != nil {
			bad(path+".command", err)
		}
	}
	if a.Env != nil && a.Command == nil {
		bad(path+".env", fmt.Errorf("env applies only to a command"))
	}
	for _, k := range sortedKeys(a.Env) {
		if !envName.MatchString(k) {
			bad(path+".env."+k, fmt.Errorf("%q: want an environment variable name like LC_ALL", k))
		}
	}
	if a.HTTP != nil {
		a.HTTP.validate(bad, path+".http")
	}
	if a.TCP != "" {
		if err := checkHostPort(a.TCP, false); err != nil {
			bad(path+".tcp", err)
		}
	}
	if a.Timeout <= 0 {
		bad(path+".timeout", fmt.Errorf("%v: want a positive duration", a.Timeout))
	}
}

func (h *HTTPCheck) validate(bad report, path string) {
	u, err := url.Parse(h.URL)
	switch {
	case h.URL == "":
		bad(path+".url", fmt.Errorf("missing; want a URL like http://127.0.0.1/health"))
	case err != nil || !slices.Contains([]string{"http", "https"}, u.Scheme) || u.Host == "":
		bad(path+".url", fmt.Errorf("%q: want an http:// or https:// URL with a host", h.URL))
	}
	if h.Status < 100 || h.Status > 599 {
		bad(path+".status", fmt.Errorf("%d: want an HTTP status from 100 to 599", h.Status))
	}
}
