package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestExamples(t *testing.T) {
	d, err := LoadDeploy("example_scatter.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s, err := LoadSeed("example_seed.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := &Deploy{
		Repo:         "mediawiki",
		Hosts:        Selector{Labels: map[string]string{"dc": "eqiad", "name": "mw1*"}, Names: []string{"mwdebug1001"}},
		Canary:       2,
		Batch:        Size{25, true},
		FailureLimit: Size{1, false},
		Timeouts:     Timeouts{Stage: 10 * time.Minute, Action: 2 * time.Minute, Observe: 30 * time.Second},
		Checks:       []string{"http-ok", "php-lint"},
		Restart:      true,
		Prepare:      [][]string{{"git", "submodule", "update", "--init"}, {"php", "maintenance/rebuildLocalisationCache.php"}},
		Hooks: map[Phase][]string{
			BeforeStage: {}, AfterStage: {}, BeforePromote: {}, AfterPromote: {"opcache-reset"},
			BeforeRestart: {}, AfterRestart: {}, BeforeCheck: {}, AfterCheck: {},
		},
	}
	if !reflect.DeepEqual(d, want) {
		t.Errorf("example_scatter.yaml:\n got %+v\nwant %+v", d, want)
	}
	if s.Data != "/var/lib/scatter" || s.Bind != "10.0.0.5" || !reflect.DeepEqual(s.Join, []string{"deploy1:7946"}) ||
		s.DC != "eqiad" || s.Rack != "a1" || s.UploadRate != 100<<20 || s.DownloadRate != 0 || s.Keep != 5 ||
		s.PubKey != "/etc/scatter/deploy.key.pub" || s.ClusterKey != "/etc/scatter/cluster.key" {
		t.Errorf("example_seed.yaml settings: %+v", s)
	}
	mw := s.Repos["mediawiki"]
	if mw.User != "mwdeploy" || mw.Dir != "current" || len(mw.Actions) != 5 {
		t.Errorf("example_seed.yaml repo: %+v", mw)
	}
	wantActions := map[string]Action{
		"restart":       {Name: "restart", Command: []string{"sudo", "-n", "/bin/systemctl", "reload", "php-fpm"}, Timeout: 60 * time.Second},
		"opcache-reset": {Name: "opcache-reset", Command: []string{"/usr/local/bin/opcache-reset"}, Timeout: DefaultTimeout},
		"http-ok":       {Name: "http-ok", HTTP: &HTTPCheck{URL: "http://127.0.0.1/wiki/Main_Page", Status: 200, Contains: "Main Page"}, Timeout: 5 * time.Second},
		"port-80":       {Name: "port-80", TCP: "127.0.0.1:80", Timeout: DefaultTimeout},
		"php-lint":      {Name: "php-lint", Command: []string{"php", "-l", "index.php"}, Env: map[string]string{"LC_ALL": "C"}, Timeout: DefaultTimeout},
	}
	if !reflect.DeepEqual(mw.Actions, wantActions) {
		t.Errorf("example_seed.yaml actions:\n got %+v\nwant %+v", mw.Actions, wantActions)
	}
	// The two examples belong together: the seed defines every action the deploy names.
	for _, name := range d.ActionNames() {
		if _, ok := s.Action(d.Repo, name); !ok {
			t.Errorf("example_seed.yaml does not define action %q that example_scatter.yaml uses", name)
		}
	}
	if err := d.Validate(); err != nil {
		t.Errorf("Validate(example deploy): %v", err)
	}
	if err := s.Validate(); err != nil {
		t.Errorf("Validate(example seed): %v", err)
	}
}

func TestDeployDefaults(t *testing.T) {
	d, err := ParseDeploy("scatter.yaml", []byte("repo: mediawiki\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := &Deploy{
		Repo:     "mediawiki",
		Canary:   1,
		Batch:    Size{25, true},
		Timeouts: Timeouts{Stage: 10 * time.Minute, Action: 2 * time.Minute},
		Restart:  true,
		Hooks:    map[Phase][]string{},
	}
	if !reflect.DeepEqual(d, want) {
		t.Errorf("got %+v\nwant %+v", d, want)
	}
	if !d.Hosts.Match(map[string]string{"name": "anything"}) {
		t.Error("a deploy without hosts should select every host")
	}
	if got := d.ActionNames(); !reflect.DeepEqual(got, []string{"restart"}) {
		t.Errorf("ActionNames = %v", got)
	}

	// An empty value keeps the default; explicit zeros do not.
	d, err = ParseDeploy("scatter.yaml", []byte("repo: x\ncanary: 0\nrestart: false\ntimeouts:\nbatch:\n"))
	if err != nil {
		t.Fatal(err)
	}
	if d.Canary != 0 || d.Restart || d.Batch != DefaultBatch || d.Timeouts.Stage != DefaultStageTimeout {
		t.Errorf("got %+v", d)
	}
}

func TestSeedDefaults(t *testing.T) {
	s, err := ParseSeed("seed.yaml", nil)
	if err != nil {
		t.Fatalf("empty seed.yaml: %v", err)
	}
	if !reflect.DeepEqual(s, &Seed{Repos: map[string]Repo{}}) {
		t.Errorf("empty seed.yaml: %+v", s)
	}
	s, err = ParseSeed("seed.yaml", []byte("repos:\n  mw:\n    actions:\n      up:\n        http: {url: 'https://localhost/'}\n  other:\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Repo{
		"mw":    {Dir: "current", Actions: map[string]Action{"up": {Name: "up", HTTP: &HTTPCheck{URL: "https://localhost/", Status: 200}, Timeout: time.Minute}}},
		"other": {Dir: "current", Actions: map[string]Action{}},
	}
	if !reflect.DeepEqual(s.Repos, want) {
		t.Errorf("got %+v\nwant %+v", s.Repos, want)
	}
	if _, ok := s.Action("mw", "up"); !ok {
		t.Error("Action(mw, up) not found")
	}
	if _, ok := s.Action("nope", "up"); ok {
		t.Error("Action(nope, up) found")
	}
}

// errCase is a file that must fail with an error at line, whose text holds want.
type errCase struct {
	name string
	yaml string
	line int
	want string
}

func TestDeployErrors(t *testing.T) {
	cases := []errCase{
		{"empty", "", 0, "scatter.yaml: empty file"},
		{"comment only", "# nothing\n", 0, "empty file"},
		{"syntax", "repo: a\nbatch: 1\nc 2\nd: 3\n", 3, "scatter.yaml:3: invalid YAML: could not find expected ':'"},
		{"two documents", "repo: a\n---\nrepo: b\n", 2, "more than one YAML document"},
		{"not a mapping", "- repo\n", 1, "got a list; want a mapping"},
		{"repo missing", "canary: 2\n", 0, "repo: missing"},
		{"repo bad", "repo: MediaWiki\n", 1, `repo: "MediaWiki": want a repository name`},
		{"repo too long", "repo: " + strings.Repeat("a", 65) + "\n", 1, "at most 64"},
		{"repo list", "repo: [a]\n", 1, "repo: got a list; want a string"},
		{"unknown top key", "repo: a\ncanery: 2\n", 2, `canery: unknown key; did you mean "canary"?`},
		{"unknown far key", "repo: a\nzzz: 2\n", 2, "zzz: unknown key; want one of batch, canary, checks,"},
		{"dash for underscore", "repo: a\nfailure-limit: 1\n", 2, `did you mean "failure_limit"?`},
		{"duplicate key", "repo: a\ncanary: 1\ncanary: 2\n", 3, "canary: duplicate key (first at line 2)"},
		{"batch bad", "repo: a\n\n\nbatch: 30x\n", 4, `scatter.yaml:4: batch: "30x": want a count like 3 or a percentage like 25%`},
		{"batch zero", "repo: a\nbatch: 0\n", 2, "batch: 0: want at least 1"},
		{"batch zero percent", "repo: a\nbatch: 0%\n", 2, "batch: 0%: want at least 1"},
		{"batch over 100", "repo: a\nbatch: 101%\n", 2, "at most 100%"},
		{"batch negative", "repo: a\nbatch: -1\n", 2, `"-1": want a count`},
		{"batch list", "repo: a\nbatch: [1]\n", 2, "batch: got a list; want a single value"},
		{"failure_limit bad", "repo: a\nfailure_limit: lots\n", 2, `failure_limit: "lots"`},
		{"canary negative", "repo: a\ncanary: -1\n", 2, "canary: -1: want 0 or more"},
		{"canary string", "repo: a\ncanary: two\n", 2, `canary: got "two"; want a whole number`},
		{"canary percent", "repo: a\ncanary: 10%\n", 2, `canary: got "10%"; want a whole number`},
		{"canary float", "repo: a\ncanary: 1.5\n", 2, "canary: got a number; want a whole number"},
		{"canary huge", "repo: a\ncanary: 99999999999999999999999\n", 2, "canary:"},
		{"restart yes", "repo: a\nrestart: yes\n", 2, `restart: got "yes"; want true or false`},
		{"timeouts scalar", "repo: a\ntimeouts: 5m\n", 2, `timeouts: got "5m"; want a mapping of keys`},
		{"timeout no unit", "repo: a\ntimeouts:\n  stage: 60\n", 3, `timeouts.stage: "60": want a duration like 30s or 2m`},
		{"timeout zero", "repo: a\ntimeouts:\n  action: 0s\n", 3, "timeouts.action: 0s: want a positive duration"},
		{"timeout negative", "repo: a\ntimeouts:\n  stage: -1m\n", 3, "timeouts.stage: -1m0s: want a positive duration"},
		{"observe negative", "repo: a\ntimeouts:\n  observe: -1s\n", 3, "timeouts.observe: -1s"},
		{"timeouts unknown", "repo: a\ntimeouts:\n  stage: 1m\n  stge: 1m\n", 4, `timeouts.stge: unknown key; did you mean "stage"?`},
		{"checks scalar", "repo: a\nchecks: http-ok\n", 2, `checks: got "http-ok"; want a list`},
		{"checks bad name", "repo: a\nchecks:\n  - ok\n  - Bad Name\n", 4, `checks[1]: "Bad Name": want an action name`},
		{"checks null item", "repo: a\nchecks: [ok, ~]\n", 2, "checks[1]: got nothing; want a string"},
		{"hosts unknown", "repo: a\nhosts:\n  selct: {dc: x}\n", 3, `hosts.selct: unknown key; did you mean "select"?`},
		{"hosts list", "repo: a\nhosts: [mw1]\n", 2, "hosts: got a list; want a mapping"},
		{"select unknown label", "repo: a\nhosts:\n  select:\n    dc: x\n    rol: app\n", 5, `hosts.select.rol: unknown label; did you mean "role"?`},
		{"select other label", "repo: a\nhosts:\n  select: {datacenter: x}\n", 3, "hosts.select.datacenter: unknown label; want one of"},
		{"select bad glob", "repo: a\nhosts:\n  select: {name: \"mw[\"}\n", 3, `hosts.select.name: "mw[": bad glob pattern`},
		{"select empty", "repo: a\nhosts:\n  select: {dc: \"\"}\n", 3, "hosts.select.dc: empty pattern"},
		{"select list", "repo: a\nhosts:\n  select: [dc]\n", 3, "hosts.select: got a list; want a mapping of names"},
		{"select value list", "repo: a\nhosts:\n  select: {dc: [a, b]}\n", 3, "hosts.select.dc: got a list; want a string"},
		{"names bad", "repo: a\nhosts:\n  names:\n    - mw1001\n    - \"mw 2\"\n", 5, `hosts.names[1]: "mw 2": want a host name`},
		{"hooks unknown", "repo: a\nhooks:\n  after_promot: [x]\n", 3, `hooks.after_promot: unknown key; did you mean "after_promote"?`},
		{"hook bad name", "repo: a\nhooks:\n  after_promote: [ok, \"rm -rf /\"]\n", 3, `hooks.after_promote[1]: "rm -rf /": want an action name`},
		{"hook argv", "repo: a\nhooks:\n  before_stage: [[warm, disk]]\n", 3, "hooks.before_stage[0]: got a list; want a string"},
		{"prepare scalar", "repo: a\nhooks:\n  prepare: make\n", 3, `hooks.prepare: got "make"; want a list of commands`},
		{"prepare string item", "repo: a\nhooks:\n  prepare:\n    - make all\n", 4, `hooks.prepare[0]: got "make all"; want a list like [a, b]`},
		{"prepare empty argv", "repo: a\nhooks:\n  prepare:\n    - [make]\n    - []\n", 5, "hooks.prepare[1]: empty command"},
		{"prepare empty program", "repo: a\nhooks:\n  prepare:\n    - [\"\", x]\n", 4, "hooks.prepare[0]: empty program name"},
		{"key not scalar", "repo: a\n[x]: 1\n", 2, "key is a list; want a name"},
		{"merge of scalar", "repo: a\ntimeouts:\n  <<: 5\n", 3, "merge (<<) of a number"},
		{"alias of wrong kind", "repo: &r a\ncanary: *r\n", 1, `canary: got "a"; want a whole number`},
	}
	runErrors(t, cases, func(data []byte) error { _, err := ParseDeploy("scatter.yaml", data); return err })
}

func TestSeedErrors(t *testing.T) {
	act := func(body string) string {
		return "repos:\n  mw:\n    actions:\n      a:\n" + body
	}
	cases := []errCase{
		{"syntax", "data: x\nbind: : :\n", 2, "seed.yaml:2: invalid YAML"},
		{"not a mapping", "just text\n", 1, `got "just text"; want a mapping of keys`},
		{"unknown key", "data: /x\nupload-rate: 1\n", 2, `upload-rate: unknown key; did you mean "upload_rate"?`},
		{"pubkey typo", "pubky: /k\n", 1, `did you mean "pubkey"?`},
		{"bind not ip", "bind: host.example\n", 1, `bind: "host.example": want an IP address`},
		{"join scalar", "join: deploy1:7946\n", 1, "join: got \"deploy1:7946\"; want a list"},
		{"join bad port", "join: [deploy1:http]\n", 1, `join[0]: "deploy1:http": port "http"`},
		{"join bad host", "join:\n  - ok:1\n  - \"bad host\"\n", 3, `join[1]: "bad host": want host or host:port`},
		{"dc bad", "dc: \"e q\"\n", 1, `dc: "e q": want a label`},
		{"rack glob", "rack: \"a*\"\n", 1, `rack: "a*": want a label`},
		{"rate unit", "upload_rate: 100mb\n", 1, `upload_rate: "100mb": want a number of bytes with a unit`},
		{"rate negative", "download_rate: -5\n", 1, `download_rate: "-5": want a number of bytes`},
		{"rate huge", "upload_rate: 99999999999TiB\n", 1, `upload_rate: "99999999999TiB": too large`},
		{"keep negative", "keep: -1\n", 1, "keep: -1: want 0 (the default) or more"},
		{"keep string", "keep: five\n", 1, `keep: got "five"; want a whole number`},
		{"repos list", "repos: [mw]\n", 1, "repos: got a list; want a mapping of names"},
		{"repo bad name", "repos:\n  MW:\n    user: x\n", 2, `repos.MW: "MW": want a repository name`},
		{"repo unknown key", "repos:\n  mw:\n    usr: x\n", 3, `repos.mw.usr: unknown key; did you mean "user"?`},
		{"user bad", "repos:\n  mw:\n    user: \"root; rm\"\n", 3, `repos.mw.user: "root; rm": want a user name`},
		{"dir absolute", "repos:\n  mw:\n    dir: /etc\n", 3, `repos.mw.dir: "/etc": want a path inside`},
		{"dir escapes", "repos:\n  mw:\n    dir: ../other\n", 3, `repos.mw.dir: "../other": want a path inside`},
		{"actions list", "repos:\n  mw:\n    actions: [restart]\n", 3, "repos.mw.actions: got a list; want a mapping of names"},
		{"action bad name", "repos:\n  mw:\n    actions:\n      Restart:\n        tcp: a:1\n", 4, `repos.mw.actions.Restart: "Restart": want an action name`},
		{"action none", act("        timeout: 5s\n"), 4, "repos.mw.actions.a: want exactly one of command, http or tcp; got none"},
		{"action null", act(""), 4, "repos.mw.actions.a: want exactly one of command, http or tcp; got none"},
		{"action two", act("        command: [x]\n        tcp: a:1\n"), 4, "got command and tcp"},
		{"action three", act("        command: [x]\n        http: {url: 'http://a/'}\n        tcp: a:1\n"), 4, "got command and http and tcp"},
		{"action unknown key", act("        comand: [x]\n"), 5, `repos.mw.actions.a.comand: unknown key; did you mean "command"?`},
		{"action scalar", act("        [x]\n"), 5, "repos.mw.actions.a: got a list; want a mapping of keys"},
		{"command string", act("        command: systemctl reload php-fpm\n"), 5, `repos.mw.actions.a.command: got "systemctl reload php-fpm"; want a list`},
		{"command empty", act("        command: []\n"), 5, "repos.mw.actions.a.command: empty command"},
		{"command map item", act("        command: [x, {a: b}]\n"), 5, "repos.mw.actions.a.command[1]: got a mapping; want a string"},
		{"env without command", act("        tcp: a:1\n        env: {A: b}\n"), 6, "repos.mw.actions.a.env: env applies only to a command"},
		{"env bad name", act("        command: [x]\n        env:\n          \"A-B\": c\n"), 7, `repos.mw.actions.a.env.A-B: "A-B": want an environment variable name`},
		{"env value list", act("        command: [x]\n        env: {A: [b]}\n"), 6, "repos.mw.actions.a.env.A: got a list; want a string"},
		{"timeout no unit", act("        tcp: a:1\n        timeout: 5\n"), 6, `repos.mw.actions.a.timeout: "5": want a duration`},
		{"timeout zero", act("        tcp: a:1\n        timeout: 0s\n"), 6, "repos.mw.actions.a.timeout: 0s: want a positive duration"},
		{"tcp no port", act("        tcp: localhost\n"), 5, `repos.mw.actions.a.tcp: "localhost": want host:port`},
		{"tcp port range", act("        tcp: localhost:70000\n"), 5, `repos.mw.actions.a.tcp: "localhost:70000": port "70000" is not a number from 1 to 65535`},
		{"tcp list", act("        tcp: [a, 1]\n"), 5, "repos.mw.actions.a.tcp: got a list; want a string"},
		{"http scalar", act("        http: http://a/\n"), 5, `repos.mw.actions.a.http: got "http://a/"; want a mapping`},
		{"http no url", act("        http: {status: 200}\n"), 5, "repos.mw.actions.a.http.url: missing"},
		{"http url missing", act("        http:\n          status: 200\n"), 5, "repos.mw.actions.a.http.url: missing"},
		{"http ftp", act("        http: {url: 'ftp://a/'}\n"), 5, `repos.mw.actions.a.http.url: "ftp://a/": want an http:// or https:// URL`},
		{"http no host", act("        http: {url: 'http:///x'}\n"), 5, `"http:///x": want an http:// or https:// URL with a host`},
		{"http status", act("        http:\n          url: http://a/\n          status: 2000\n"), 7, "repos.mw.actions.a.http.status: 2000: want an HTTP status"},
		{"http status string", act("        http:\n          url: http://a/\n          status: ok\n"), 7, `repos.mw.actions.a.http.status: got "ok"; want a whole number`},
		{"http unknown", act("        http:\n          url: http://a/\n          contain: x\n"), 7, `repos.mw.actions.a.http.contain: unknown key; did you mean "contains"?`},
		{"duplicate action", "repos:\n  mw:\n    actions:\n      a: {tcp: 'a:1'}\n      a: {tcp: 'a:2'}\n", 5, "repos.mw.actions.a: duplicate key (first at line 4)"},
	}
	runErrors(t, cases, func(data []byte) error { _, err := ParseSeed("seed.yaml", data); return err })
}

func runErrors(t *testing.T, cases []errCase, parse func([]byte) error) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := parse([]byte(c.yaml))
			if err == nil {
				t.Fatalf("no error for:\n%s", c.yaml)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T is not an *Error: %v", err, err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not contain %q", err, c.want)
			}
			if e.Line != c.line {
				t.Errorf("line %d, want %d (error %q)", e.Line, c.line, err)
			}
		})
	}
}

func TestErrorFormat(t *testing.T) {
	_, err := ParseDeploy("scatter.yaml", []byte("repo: mediawiki\ncanary: 2\n\n\n\n\n\n\n\n\n\nbatch: 30x\n"))
	if got, want := err.Error(), `scatter.yaml:12: batch: "30x": want a count like 3 or a percentage like 25%`; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestAllErrorsReported(t *testing.T) {
	_, err := ParseDeploy("scatter.yaml", []byte("repo: a\nbatch: x\ncanery: 1\ntimeouts: {stage: 0s}\n"))
	got := strings.Split(err.Error(), "\n")
	want := []string{
		`scatter.yaml:2: batch: "x": want a count like 3 or a percentage like 25%`,
		`scatter.yaml:3: canery: unknown key; did you mean "canary"?`,
		`scatter.yaml:4: timeouts.stage: 0s: want a positive duration`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// A field that failed to decode is not also reported by validation.
func TestNoDoubleReport(t *testing.T) {
	_, err := ParseDeploy("scatter.yaml", []byte("repo: [a]\n"))
	if n := strings.Count(err.Error(), "\n"); n != 0 {
		t.Errorf("want one error, got %q", err)
	}
}

func TestAliasesAndMerge(t *testing.T) {
	s, err := ParseSeed("seed.yaml", []byte(`
repos:
  a:
    actions: &std
      restart: {command: [systemctl, reload, x]}
      up: &up {tcp: "127.0.0.1:80", timeout: 5s}
  b:
    actions:
      <<: *std
      up:
        <<: *up
        timeout: 9s
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Repos["b"].Actions["up"]; got.TCP != "127.0.0.1:80" || got.Timeout != 9*time.Second {
		t.Errorf("merged up = %+v", got)
	}
	if _, ok := s.Action("b", "restart"); !ok {
		t.Error("merge lost restart")
	}
	if got := s.Repos["a"].Actions["up"].Timeout; got != 5*time.Second {
		t.Errorf("a.up timeout = %v", got)
	}
}

// Merge keys nest: each level merges the one below ten times, so walking
// the last one naively would visit 10^9 mappings.
func TestAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("repos:\n  mw:\n    actions:\n      a0: &a0 {tcp: 'a:1'}\n")
	for i := 1; i <= 9; i++ {
		fmt.Fprintf(&b, "      a%d: &a%d {<<: [", i, i)
		for j := 0; j < 10; j++ {
			fmt.Fprintf(&b, "*a%d, ", i-1)
		}
		b.WriteString("]}\n")
	}
	start := time.Now()
	_, err := ParseSeed("seed.yaml", []byte(b.String()))
	if err == nil || !strings.Contains(err.Error(), "too many nodes") {
		t.Errorf("err = %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestValidate(t *testing.T) {
	d := &Deploy{Repo: "mw", Batch: Size{1, false}, Timeouts: Timeouts{Stage: time.Minute, Action: time.Minute}}
	if err := d.Validate(); err != nil {
		t.Fatalf("valid deploy: %v", err)
	}
	before := *d
	d.Canary = -1
	d.Hooks = map[Phase][]string{"sometime": {"x"}, AfterCheck: {"Bad"}}
	err := d.Validate()
	for _, want := range []string{"canary: -1: want 0 or more", "hooks.sometime: unknown phase", `hooks.after_check[0]: "Bad"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to contain %q", err, want)
		}
	}
	if (&Deploy{}).Validate() == nil {
		t.Error("zero Deploy is valid")
	}
	if before.Canary != 0 {
		t.Error("Validate changed its receiver")
	}

	s := &Seed{Repos: map[string]Repo{"mw": {Actions: map[string]Action{
		"ok":  {Name: "ok", TCP: "a:1", Timeout: time.Second},
		"bad": {Name: "other", Command: []string{"x"}},
	}}}}
	err = s.Validate()
	for _, want := range []string{`repos.mw.actions.bad: action named "other" is filed under "bad"`, "repos.mw.actions.bad.timeout: 0s"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to contain %q", err, want)
		}
	}
	var e *Error
	if errors.As(err, &e) && (e.File != "" || e.Line != 0) {
		t.Errorf("Validate error has a location: %+v", e)
	}
}

func TestSelectorMatch(t *testing.T) {
	host := func(name, dc, rack, role string) map[string]string {
		return map[string]string{"name": name, "dc": dc, "rack": rack, "role": role}
	}
	mw1001 := host("mw1001", "eqiad", "a1", "app")
	mw2001 := host("mw2001", "codfw", "b2", "app")
	db1001 := host("db1001", "eqiad", "a1", "db")
	cases := []struct {
		name string
		sel  Selector
		yes  []map[string]string
		no   []map[string]string
	}{
		{"empty selects all", Selector{}, []map[string]string{mw1001, mw2001, db1001, {}}, nil},
		{"exact label", Selector{Labels: map[string]string{"dc": "eqiad"}}, []map[string]string{mw1001, db1001}, []map[string]string{mw2001}},
		{"all labels must match", Selector{Labels: map[string]string{"dc": "eqiad", "role": "app"}}, []map[string]string{mw1001}, []map[string]string{mw2001, db1001}},
		{"glob", Selector{Labels: map[string]string{"name": "mw1*"}}, []map[string]string{mw1001}, []map[string]string{mw2001, db1001}},
		{"glob class", Selector{Labels: map[string]string{"name": "mw[12]00?"}}, []map[string]string{mw1001, mw2001}, []map[string]string{db1001, host("mw10011", "", "", "")}},
		{"glob rack", Selector{Labels: map[string]string{"rack": "?1"}}, []map[string]string{mw1001, db1001}, []map[string]string{mw2001}},
		{"missing label", Selector{Labels: map[string]string{"role": "*"}}, []map[string]string{mw1001}, []map[string]string{{"name": "x"}}},
		{"names exact", Selector{Names: []string{"mw2001", "db1001"}}, []map[string]string{mw2001, db1001}, []map[string]string{mw1001, host("mw200", "", "", "")}},
		{"names are not globs", Selector{Names: []string{"mw*"}}, nil, []map[string]string{mw1001}},
		{"union", Selector{Labels: map[string]string{"dc": "codfw"}, Names: []string{"db1001"}}, []map[string]string{mw2001, db1001}, []map[string]string{mw1001}},
		{"bad glob matches nothing", Selector{Labels: map[string]string{"name": "["}}, nil, []map[string]string{mw1001, host("[", "", "", "")}},
	}
	for _, c := range cases {
		for _, h := range c.yes {
			if !c.sel.Match(h) {
				t.Errorf("%s: %+v does not match %v", c.name, c.sel, h)
			}
		}
		for _, h := range c.no {
			if c.sel.Match(h) {
				t.Errorf("%s: %+v matches %v", c.name, c.sel, h)
			}
		}
	}
}

func TestSelectorFromYAML(t *testing.T) {
	d, err := ParseDeploy("scatter.yaml", []byte("repo: mw\nhosts:\n  select: {dc: eqiad, name: \"mw1*\"}\n  names: [mw2001]\n"))
	if err != nil {
		t.Fatal(err)
	}
	for h, want := range map[string]bool{"mw1001": true, "mw1002": true, "mw2001": true, "mw2002": false} {
		dc := "eqiad"
		if h[2] == '2' {
			dc = "codfw"
		}
		if got := d.Hosts.Match(map[string]string{"name": h, "dc": dc}); got != want {
			t.Errorf("Match(%s) = %v, want %v", h, got, want)
		}
	}
}

func TestParseSize(t *testing.T) {
	good := map[string]Size{"0": {0, false}, "3": {3, false}, "25%": {25, true}, "100%": {100, true}, "0%": {0, true}, " 7 ": {7, false}, "5 %": {5, true}}
	for in, want := range good {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %v, %v; want %v", in, got, err, want)
		}
		if err == nil && strings.TrimSpace(in) == got.String() {
			continue
		}
	}
	for _, in := range []string{"", "%", "30x", "-1", "+1", "1.5", "101%", "1e3", "0x10", "99999999999999999999", "25%%", "%25"} {
		if got, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %v, want an error", in, got)
		}
	}
	if s := (Size{25, true}).String(); s != "25%" {
		t.Errorf("String = %q", s)
	}
	if s := (Size{3, false}).String(); s != "3" {
		t.Errorf("String = %q", s)
	}
}

func TestParseBytes(t *testing.T) {
	good := map[string]int64{
		"0": 0, "1": 1, "10B": 10, "1KB": 1000, "1KiB": 1024, "100MiB": 100 << 20, "2MB": 2e6,
		"3GiB": 3 << 30, "3GB": 3e9, "1TiB": 1 << 40, "1TB": 1e12, "100 MiB": 100 << 20, " 5 ": 5,
		"8388607TiB": 8388607 << 40, "1.5GiB": 3 << 29, "1.5MiB": 3 << 19, "0.5KB": 500, "2.25KiB": 2304,
		"0.0": 0, "1.000001MB": 1000001,
	}
	for in, want := range good {
		if got, err := ParseBytes(in); err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "1mb", "1Mb", "1.5B", "1.0000001MB", ".5MiB", "1..5MiB", "1.2.3MiB", "-1", "1 M", "10 KiB/s", "8388608TiB", "99999999999999999999"} {
		if got, err := ParseBytes(in); err == nil {
			t.Errorf("ParseBytes(%q) = %d, want an error", in, got)
		}
	}
}

func TestParseDuration(t *testing.T) {
	good := map[string]time.Duration{"0": 0, "30s": 30 * time.Second, "2m": 2 * time.Minute, "1h30m": 90 * time.Minute, "500ms": 500 * time.Millisecond}
	for in, want := range good {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "60", "1 minute", "m", "1d"} {
		if got, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) = %v, want an error", in, got)
		}
	}
}

func TestSuggest(t *testing.T) {
	known := []string{"batch", "canary", "checks", "failure_limit", "hooks", "hosts", "repo", "restart", "timeouts"}
	cases := map[string]string{
		"canery": "canary", "Repo": "repo", "failure-limit": "failure_limit", "timeout": "timeouts",
		"host": "hosts", "hook": "hooks", "restrat": "restart",
		"zzz": "", "x": "", "ab": "", "deploy_timeout": "",
	}
	for in, want := range cases {
		if got := suggest(in, known); got != want {
			t.Errorf("suggest(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLoadMissingFile(t *testing.T) {
	if _, err := LoadDeploy("testdata/nope.yaml"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadDeploy: %v", err)
	}
	if _, err := LoadSeed("testdata/nope.yaml"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadSeed: %v", err)
	}
}
