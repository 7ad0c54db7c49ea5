package rollout

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The scenario files under testdata/ are scripts in a tiny language, in the
// manner of etcd raft's datadriven tests: each block is one command, a line
// "----", the output it produced, and a blank line. Run with -update to
// rewrite the files from what the Machine does now, then read the diff.
//
//	plan hosts=6 canary=1 batch=50% limit=0 observe=5m from=r1 to=r2
//	     retry=2s timeout=1m stagetimeout=5m onabort=halt skipstage nofrom=h1,h2
//	start | abort | tick +5s | ack STEP ok|fail HOSTS [error text] | hosts | counts
//
// HOSTS is "*" (every host the step was first sent to), "h3..h9", or a
// comma-separated list. Hosts are named h1..hN.
var update = flag.Bool("update", false, "rewrite testdata scenario files")

// driver runs one Machine from script commands with a fake clock.
type driver struct {
	m     *Machine
	now   time.Time
	start time.Time
	sent  map[int][]string // step -> hosts of the first send
	log   []Action         // every action returned, for invariant checks
	// abortAt is len(log) when Abort was first called, -1 before.
	abortAt int
}

var epoch = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func hostNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("h%d", i+1)
	}
	return out
}

// parsePlan reads "plan k=v ..." arguments.
func parsePlan(args []string) (Plan, error) {
	p := Plan{Deploy: "d1", To: "r2", Hosts: hostNames(4), RetryEvery: 2 * time.Second,
		StageTimeout: 5 * time.Minute, ActionTimeout: time.Minute}
	from, nofrom := "r1", map[string]bool{}
	for _, a := range args {
		k, v, _ := strings.Cut(a, "=")
		var err error
		switch k {
		case "hosts":
			var n int
			n, err = strconv.Atoi(v)
			p.Hosts = hostNames(n)
		case "canary":
			p.Canary, err = strconv.Atoi(v)
		case "batch":
			p.Batch, err = ParseSize(v)
		case "limit":
			p.FailureLimit, err = ParseSize(v)
		case "observe":
			p.Observe, err = time.ParseDuration(v)
		case "retry":
			p.RetryEvery, err = time.ParseDuration(v)
		case "timeout":
			p.ActionTimeout, err = time.ParseDuration(v)
		case "stagetimeout":
			p.StageTimeout, err = time.ParseDuration(v)
		case "from":
			from = v
		case "to":
			p.To = v
		case "nofrom":
			for _, h := range strings.Split(v, ",") {
				nofrom[h] = true
			}
		case "onabort":
			err = p.OnAbort.UnmarshalText([]byte(v))
		case "skipstage":
			p.SkipStage = true
		default:
			err = fmt.Errorf("unknown plan key %q", k)
		}
		if err != nil {
			return Plan{}, err
		}
	}
	p.From = map[string]string{}
	for i, h := range p.Hosts {
		switch {
		case nofrom[h]:
		case strings.Contains(from, "/"): // "r0/r1": alternate by host
			alts := strings.Split(from, "/")
			p.From[h] = alts[i%len(alts)]
		default:
			p.From[h] = from
		}
	}
	return p, nil
}

// do runs one command line and returns its output lines.
func (d *driver) do(line string) ([]string, error) {
	f := strings.Fields(line)
	if len(f) == 0 {
		return nil, fmt.Errorf("empty command")
	}
	var acts []Action
	var out []string
	switch f[0] {
	case "plan":
		p, err := parsePlan(f[1:])
		if err != nil {
			return nil, err
		}
		m, err := New(p)
		if err != nil {
			return nil, err
		}
		*d = driver{m: m, now: epoch, start: epoch, sent: map[int][]string{}, abortAt: -1}
		return nil, nil
	case "start":
		acts = d.m.Start(d.now)
	case "abort":
		if d.abortAt < 0 {
			d.abortAt = len(d.log)
		}
		acts = d.m.Abort(d.now)
	case "tick":
		if len(f) != 2 || !strings.HasPrefix(f[1], "+") {
			return nil, fmt.Errorf("want tick +DURATION")
		}
		dur, err := time.ParseDuration(f[1][1:])
		if err != nil {
			return nil, err
		}
		d.now = d.now.Add(dur)
		out = append(out, fmt.Sprintf("t=%s", d.now.Sub(d.start)))
		acts = d.m.Tick(d.now)
	case "ack":
		if len(f) < 4 {
			return nil, fmt.Errorf("want ack STEP ok|fail HOSTS [error]")
		}
		step, err := strconv.Atoi(f[1])
		if err != nil {
			return nil, err
		}
		ok := f[2] == "ok"
		errText := strings.Join(f[4:], " ")
		if !ok && errText == "" {
			errText = "check failed"
		}
		for _, h := range d.expand(step, f[3]) {
			acts = append(acts, d.m.Ack(d.now, Ack{Host: h, Step: step, OK: ok, Error: errText})...)
		}
	case "hosts":
		for _, h := range d.m.Hosts() {
			s := fmt.Sprintf("%s %s", h.Name, h.State)
			if h.Phase != "" {
				s += fmt.Sprintf(" phase=%q error=%q", h.Phase, h.Error)
			}
			if h.Late {
				s += " late"
			}
			if h.RollbackError != "" {
				s += fmt.Sprintf(" rollback-error=%q", h.RollbackError)
			}
			out = append(out, s)
		}
		return out, nil
	case "counts":
		return []string{fmt.Sprintf("%+v", d.m.Counts())}, nil
	default:
		return nil, fmt.Errorf("unknown command %q", f[0])
	}
	for _, a := range acts {
		if a.Kind.ToHosts() && !a.Resend {
			d.sent[a.Step] = a.Hosts
		}
		out = append(out, formatAction(a))
	}
	d.log = append(d.log, acts...)
	return out, nil
}

var hostNum = regexp.MustCompile(`^h(\d+)$`)

// expand turns "*", "h3..h9" or "h1,h2" into host names.
func (d *driver) expand(step int, spec string) []string {
	if spec == "*" {
		return d.sent[step]
	}
	var out []string
	for _, part := range strings.Split(spec, ",") {
		lo, hi, ok := strings.Cut(part, "..")
		a, b := hostNum.FindStringSubmatch(lo), hostNum.FindStringSubmatch(hi)
		if !ok || a == nil || b == nil {
			out = append(out, part)
			continue
		}
		i, _ := strconv.Atoi(a[1])
		j, _ := strconv.Atoi(b[1])
		for k := i; k <= j; k++ {
			out = append(out, fmt.Sprintf("h%d", k))
		}
	}
	return out
}

// compact writes h1,h2,h3,h5 as h1..h3,h5.
func compact(hosts []string) string {
	var parts []string
	for i := 0; i < len(hosts); {
		j := i
		for j+1 < len(hosts) && next(hosts[j], hosts[j+1]) {
			j++
		}
		switch {
		case j == i:
			parts = append(parts, hosts[i])
		case j == i+1:
			parts = append(parts, hosts[i], hosts[j])
		default:
			parts = append(parts, hosts[i]+".."+hosts[j])
		}
		i = j + 1
	}
	return strings.Join(parts, ",")
}

func next(a, b string) bool {
	x, y := hostNum.FindStringSubmatch(a), hostNum.FindStringSubmatch(b)
	if x == nil || y == nil {
		return false
	}
	i, _ := strconv.Atoi(x[1])
	j, _ := strconv.Atoi(y[1])
	return j == i+1
}

func formatAction(a Action) string {
	switch a.Kind {
	case Phase:
		return fmt.Sprintf("phase %q [%s] %q", a.Phase, compact(a.Hosts), a.Reason)
	case Done:
		return fmt.Sprintf("done %s in %q: %s", a.Result, a.Phase, a.Reason)
	}
	s := fmt.Sprintf("%s #%d %s", a.Kind, a.Step, a.Release)
	if a.Resend {
		s += " resend"
	}
	return s + fmt.Sprintf(" (%s) [%s]", a.Phase, compact(a.Hosts))
}

// runScript runs a scenario file's text and returns the rewritten text.
func runScript(t *testing.T, text string) (string, *driver) {
	t.Helper()
	var b strings.Builder
	d := &driver{}
	lines := strings.Split(text, "\n")
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			b.WriteString(line + "\n")
			continue
		}
		// Skip the old output of this block.
		if i+1 < len(lines) && lines[i+1] == "----" {
			i++
			for i+1 < len(lines) && lines[i+1] != "" {
				i++
			}
		}
		out, err := d.do(line)
		if err != nil {
			out = []string{"error: " + err.Error()}
		}
		b.WriteString(line + "\n----\n")
		for _, o := range out {
			b.WriteString(o + "\n")
		}
	}
	return strings.TrimRight(b.String(), "\n") + "\n", d
}

func TestScenarios(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenario files: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
			want, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			got, d := runScript(t, string(want))
			if d.m != nil {
				checkTrace(t, d.m, d.log, d.abortAt)
			}
			if *update {
				if err := os.WriteFile(f, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if got != string(want) {
				t.Errorf("scenario %s differs (run with -update and read the diff):\n%s", f, got)
			}
		})
	}
}
