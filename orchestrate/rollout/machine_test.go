package rollout

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// script runs commands on a fresh driver and returns it; each command's
// output is discarded (d.log keeps the actions).
func script(t *testing.T, cmds ...string) *driver {
	t.Helper()
	d := &driver{}
	for _, c := range cmds {
		if _, err := d.do(c); err != nil {
			t.Fatalf("%s: %v", c, err)
		}
	}
	return d
}

// sends lists the host commands in the log as "kind phase [hosts]",
// resends marked.
func sends(log []Action) []string {
	var out []string
	for _, a := range log {
		if !a.Kind.ToHosts() {
			continue
		}
		s := fmt.Sprintf("%s %s [%s]", a.Kind, a.Phase, compact(a.Hosts))
		if a.Resend {
			s = "resend " + s
		}
		out = append(out, s)
	}
	return out
}

func result(t *testing.T, d *driver) Result {
	t.Helper()
	r, ok := d.m.Done()
	if !ok {
		t.Fatalf("not done; log:\n%s", strings.Join(sends(d.log), "\n"))
	}
	return r
}

func TestBatchSizes(t *testing.T) {
	for _, c := range []struct {
		plan string
		want []int // canary pool, then each batch
	}{
		{"plan hosts=30 canary=2 batch=25% limit=1", []int{2, 7, 7, 7, 7}},
		{"plan hosts=30 canary=0", []int{8, 8, 8, 6}}, // default 25%: 7.5 -> 8
		{"plan hosts=10 canary=3 batch=3", []int{3, 3, 3, 1}},
		{"plan hosts=5 canary=9", []int{5}},
		{"plan hosts=4 canary=1 batch=0%", []int{1, 1, 1, 1}}, // at least one host a batch
		{"plan hosts=4 canary=1 batch=100%", []int{1, 3}},
		{"plan hosts=1 canary=0 batch=1%", []int{1}},
	} {
		t.Run(c.plan, func(t *testing.T) {
			d := script(t, c.plan, "start", "ack 1 ok *")
			var got []int
			for step := 2; ; step++ {
				hosts := d.sent[step]
				if hosts == nil {
					break
				}
				got = append(got, len(hosts))
				if _, err := d.do(fmt.Sprintf("ack %d ok *", step)); err != nil {
					t.Fatal(err)
				}
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("promote waves %v, want %v", got, c.want)
			}
			if r := result(t, d); r != Success {
				t.Errorf("result %v", r)
			}
			checkTrace(t, d.m, d.log, d.abortAt)
		})
	}
}

// TestOutcomes pins the essentials of each scenario with assertions of its
// own, so that a careless -update of the golden files cannot hide a change
// of behaviour.
func TestOutcomes(t *testing.T) {
	for _, c := range []struct {
		name  string
		cmds  []string
		want  Result
		sends []string // every host command, in order
	}{
		{
			name: "healthy",
			cmds: []string{"plan hosts=30 canary=2 batch=25% limit=1 observe=5m", "start", "ack 1 ok *", "ack 2 ok *",
				"tick +5m", "ack 3 ok *", "ack 4 ok *", "ack 5 ok *", "ack 6 ok *", "ack 7 ok *"},
			want: Success,
			sends: []string{"stage stage [h1..h30]", "promote canary [h1,h2]", "check observe [h1,h2]",
				"promote batch 1 [h3..h9]", "promote batch 2 [h10..h16]", "promote batch 3 [h17..h23]", "promote batch 4 [h24..h30]"},
		},
		{
			name:  "canary fails: canaries rolled back, no batch",
			cmds:  []string{"plan hosts=10 canary=2 limit=5", "start", "ack 1 ok *", "ack 2 ok h2", "ack 2 fail h1", "ack 3 ok *"},
			want:  RolledBack,
			sends: []string{"stage stage [h1..h10]", "promote canary [h1,h2]", "rollback rollback [h1,h2]"},
		},
		{
			name: "canary fails the re-check",
			cmds: []string{"plan hosts=10 canary=2 observe=1m", "start", "ack 1 ok *", "ack 2 ok *", "tick +1m",
				"ack 3 fail h1", "ack 3 ok h2", "ack 4 ok *"},
			want:  RolledBack,
			sends: []string{"stage stage [h1..h10]", "promote canary [h1,h2]", "check observe [h1,h2]", "rollback rollback [h1,h2]"},
		},
		{
			name: "two fail in batch 2, limit 1",
			cmds: []string{"plan hosts=10 canary=2 batch=2 limit=1", "start", "ack 1 ok *", "ack 2 ok *", "ack 3 ok *",
				"ack 4 fail h5,h6", "ack 5 ok *"},
			want: RolledBack,
			sends: []string{"stage stage [h1..h10]", "promote canary [h1,h2]", "promote batch 1 [h3,h4]",
				"promote batch 2 [h5,h6]", "rollback rollback [h1..h6]"},
		},
		{
			name: "limit passed mid-batch: the batch still finishes first",
			cmds: []string{"plan hosts=10 canary=0 batch=4 limit=0", "start", "ack 1 ok *", "ack 2 fail h1",
				"tick +1s", "tick +1s", "ack 2 ok *", "ack 3 ok *"},
			want:  RolledBack,
			sends: []string{"stage stage [h1..h10]", "promote batch 1 [h1..h4]", "rollback rollback [h1..h4]"},
		},
		{
			name: "staging failures beyond the limit",
			cmds: []string{"plan hosts=10 canary=2 limit=10%", "start", "ack 1 fail h3,h7", "ack 1 ok *"},
			want: Failed, sends: []string{"stage stage [h1..h10]"},
		},
		{
			name: "unreachable counted against the limit",
			cmds: []string{"plan hosts=4 canary=0 batch=2 limit=0 timeout=30s", "start", "ack 1 ok *",
				"ack 2 ok h1", "tick +2s", "tick +28s", "ack 3 ok *"},
			want: RolledBack,
			sends: []string{"stage stage [h1..h4]", "promote batch 1 [h1,h2]",
				"resend promote batch 1 [h2]", "rollback rollback [h1,h2]"},
		},
		{
			name: "abort mid-batch, rollback",
			cmds: []string{"plan hosts=6 canary=1 batch=2", "start", "ack 1 ok *", "ack 2 ok *", "abort",
				"tick +5s", "ack 3 ok *", "ack 4 ok *"},
			want: Aborted,
			sends: []string{"stage stage [h1..h6]", "promote canary [h1]", "promote batch 1 [h2,h3]",
				"rollback rollback [h1..h3]"},
		},
		{
			name: "abort mid-batch, halt",
			cmds: []string{"plan hosts=6 canary=1 batch=2 onabort=halt", "start", "ack 1 ok *", "ack 2 ok *", "abort",
				"tick +5s", "ack 3 ok *"},
			want:  Aborted,
			sends: []string{"stage stage [h1..h6]", "promote canary [h1]", "promote batch 1 [h2,h3]"},
		},
		{
			name: "abort after the limit was passed still rolls back, as RolledBack",
			cmds: []string{"plan hosts=6 canary=0 batch=3 onabort=halt", "start", "ack 1 ok *", "ack 2 fail h1",
				"abort", "ack 2 ok *", "ack 3 ok *"},
			want:  RolledBack,
			sends: []string{"stage stage [h1..h6]", "promote batch 1 [h1..h3]", "rollback rollback [h1..h3]"},
		},
		{
			name: "abort during staging",
			cmds: []string{"plan hosts=6", "start", "ack 1 ok h1", "abort", "ack 1 ok *", "tick +1h"},
			want: Aborted, sends: []string{"stage stage [h1..h6]"},
		},
		{
			name: "rollback fails",
			cmds: []string{"plan hosts=6 canary=2", "start", "ack 1 ok *", "ack 2 fail h2", "ack 2 ok h1",
				"ack 3 ok h1", "ack 3 fail h2"},
			want:  RollbackFailed,
			sends: []string{"stage stage [h1..h6]", "promote canary [h1,h2]", "rollback rollback [h1,h2]"},
		},
		{
			name: "rollback times out",
			cmds: []string{"plan hosts=6 canary=2 timeout=10s retry=4s", "start", "ack 1 ok *", "ack 2 fail h2", "ack 2 ok h1",
				"ack 3 ok h1", "tick +5s", "tick +5s", "ack 3 ok h2"},
			want: RollbackFailed,
			sends: []string{"stage stage [h1..h6]", "promote canary [h1,h2]", "rollback rollback [h1,h2]",
				"resend rollback rollback [h2]"},
		},
		{
			name: "no From: nothing to roll back, not a rollback failure",
			cmds: []string{"plan hosts=3 canary=1 nofrom=h1", "start", "ack 1 ok *", "ack 2 fail h1"},
			want: RolledBack, sends: []string{"stage stage [h1..h3]", "promote canary [h1]"},
		},
		{
			name: "rollback grouped by From release",
			cmds: []string{"plan hosts=5 canary=0 batch=100% from=r0/r1/r9", "start", "ack 1 ok *", "ack 2 fail h5",
				"ack 2 ok *", "ack 3 ok *", "ack 4 ok *", "ack 5 ok *"},
			want: RolledBack,
			sends: []string{"stage stage [h1..h5]", "promote batch 1 [h1..h5]",
				"rollback rollback [h1,h4]", "rollback rollback [h2,h5]", "rollback rollback [h3]"},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := script(t, c.cmds...)
			if r := result(t, d); r != c.want {
				t.Errorf("result %v (%s), want %v", r, d.m.Reason(), c.want)
			}
			if got := sends(d.log); !slices.Equal(got, c.sends) {
				t.Errorf("sent:\n\t%s\nwant:\n\t%s", strings.Join(got, "\n\t"), strings.Join(c.sends, "\n\t"))
			}
			checkTrace(t, d.m, d.log, d.abortAt)
			// After Done every input returns nil.
			now := d.now.Add(time.Hour)
			if a := d.m.Start(now); a != nil {
				t.Errorf("Start after Done: %v", a)
			}
			if a := d.m.Tick(now); a != nil {
				t.Errorf("Tick after Done: %v", a)
			}
			if a := d.m.Abort(now); a != nil {
				t.Errorf("Abort after Done: %v", a)
			}
			for step := range d.sent {
				for _, h := range d.m.plan.Hosts {
					if a := d.m.Ack(now, Ack{Host: h, Step: step, OK: true}); a != nil {
						t.Errorf("Ack after Done: %v", a)
					}
				}
			}
		})
	}
}

func TestRetryTimes(t *testing.T) {
	d := script(t, "plan hosts=3 canary=0 batch=100% retry=2s stagetimeout=7s", "start")
	var at []string
	for i := 1; i <= 8; i++ {
		if i == 3 {
			d.do("ack 1 ok h2")
		}
		out, _ := d.do("tick +1s")
		for _, o := range out[1:] {
			at = append(at, fmt.Sprintf("%ds %s", i, o))
		}
	}
	want := []string{
		"2s stage #1 r2 resend (stage) [h1..h3]",
		"4s stage #1 r2 resend (stage) [h1,h3]",
		"6s stage #1 r2 resend (stage) [h1,h3]",
		`7s done failed in "stage": 2 hosts failed staging (limit 0); nothing was promoted`,
	}
	if !slices.Equal(at, want) {
		t.Errorf("got\n\t%s\nwant\n\t%s", strings.Join(at, "\n\t"), strings.Join(want, "\n\t"))
	}
}

func TestLateAck(t *testing.T) {
	d := script(t, "plan hosts=4 canary=0 batch=2 limit=1 timeout=10s", "start", "ack 1 ok *",
		"ack 2 ok h1", "tick +10s")
	h2 := d.m.Hosts()[1]
	if h2.State != HostUnreachable || h2.Phase != "batch 1" {
		t.Fatalf("h2 after timeout: %+v", h2)
	}
	if got := d.m.Ack(d.now, Ack{Host: "h2", Step: 2, OK: true}); got != nil {
		t.Errorf("late ack returned %v", got)
	}
	h2 = d.m.Hosts()[1]
	if h2.State != HostPromoted || !h2.Late {
		t.Errorf("h2 after late ack: %+v", h2)
	}
	if c := d.m.Counts(); c.Failures != 1 || c.Promoted != 2 || c.Unreachable != 0 {
		t.Errorf("counts after late ack: %+v", c)
	}
	// Batch 2 fails one more: limit passed; h2 must be rolled back.
	d = script(t, "plan hosts=4 canary=0 batch=2 limit=1 timeout=10s", "start", "ack 1 ok *",
		"ack 2 ok h1", "tick +10s", "ack 2 ok h2", "ack 3 fail h3", "ack 3 ok h4")
	last := d.log[len(d.log)-1]
	if last.Kind != Rollback || !slices.Equal(last.Hosts, []string{"h1", "h2", "h3", "h4"}) {
		t.Errorf("last action %+v, want a rollback of h1..h4", last)
	}
}

func TestValidate(t *testing.T) {
	good := Plan{To: "r2", Hosts: []string{"a", "b"}}
	if err := good.Validate(); err != nil {
		t.Fatalf("minimal plan: %v", err)
	}
	for _, c := range []struct {
		name string
		edit func(*Plan)
		want string
	}{
		{"no release", func(p *Plan) { p.To = "" }, "To is empty"},
		{"no hosts", func(p *Plan) { p.Hosts = nil }, "no hosts"},
		{"duplicate host", func(p *Plan) { p.Hosts = []string{"a", "a"} }, `"a" is listed twice`},
		{"empty host", func(p *Plan) { p.Hosts = []string{"a", ""} }, "empty name"},
		{"negative canary", func(p *Plan) { p.Canary = -1 }, "canary"},
		{"batch over 100%", func(p *Plan) { p.Batch = Size{N: 101, Percent: true} }, "batch size 101%"},
		{"negative limit", func(p *Plan) { p.FailureLimit = Size{N: -2} }, "failure limit -2"},
		{"negative timeout", func(p *Plan) { p.ActionTimeout = -time.Second }, "action timeout"},
		{"negative observe", func(p *Plan) { p.Observe = -time.Second }, "observe"},
		{"bad on-abort", func(p *Plan) { p.OnAbort = 7 }, "on-abort"},
	} {
		p := good
		p.Hosts = slices.Clone(good.Hosts)
		c.edit(&p)
		err := p.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Validate() = %v, want an error containing %q", c.name, err, c.want)
		}
		if _, err := New(p); err == nil {
			t.Errorf("%s: New accepted the plan", c.name)
		}
	}
}

func TestNewCopiesPlan(t *testing.T) {
	p := Plan{To: "r2", Hosts: []string{"a", "b"}, From: map[string]string{"a": "r1"}}
	m, err := New(p)
	if err != nil {
		t.Fatal(err)
	}
	p.Hosts[0], p.From["a"] = "zzz", "r0"
	got := m.Plan()
	if got.Hosts[0] != "a" || got.From["a"] != "r1" {
		t.Errorf("Machine saw the caller's later edits: %+v", got)
	}
	if got.Batch != defaultBatch || got.RetryEvery != DefaultRetryEvery || got.ActionTimeout != DefaultActionTimeout ||
		got.StageTimeout != DefaultStageTimeout {
		t.Errorf("defaults not applied: %+v", got)
	}
	acts := m.Start(epoch)
	acts[1].Hosts[0] = "mutated"
	if m.Hosts()[0].Name != "a" || m.waves[1].action.Hosts[0] != "a" {
		t.Errorf("an action's Hosts slice aliases the Machine's state")
	}
}
