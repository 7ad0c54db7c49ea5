package rollout

import (
	"slices"
	"testing"
)

// checkTrace checks what must hold for every run of a Machine: log is every
// action it returned, in order, and abortAt the length of log when Abort
// was first called (-1 if never).
func checkTrace(t *testing.T, m *Machine, log []Action, abortAt int) {
	t.Helper()
	p := m.Plan()
	res, done := m.Done()

	var (
		phase      string
		lastStep   int
		first      = map[int]Action{}  // step -> first send
		promoted   = map[string]bool{} // sent a Promote
		rolledBack = map[string]int{}  // Rollback sends per host
		dones      int
		kinds      = map[Kind]int{}
	)
	for i, a := range log {
		if dones > 0 {
			t.Fatalf("action %d (%+v) after Done", i, a)
		}
		kinds[a.Kind]++
		switch {
		case a.Kind == Phase:
			phase = a.Phase
			continue
		case a.Kind == Done:
			dones++
			if a.Phase != phase {
				t.Errorf("Done in phase %q, last phase was %q", a.Phase, phase)
			}
			if !done || a.Result != res {
				t.Errorf("Done action %v but Machine.Done() = %v, %v", a.Result, res, done)
			}
			continue
		case !a.Kind.ToHosts():
			t.Fatalf("action %d has kind %v", i, a.Kind)
		}
		if a.Phase != phase {
			t.Errorf("action %d %v in phase %q, last Phase action was %q", i, a.Kind, a.Phase, phase)
		}
		if len(a.Hosts) == 0 {
			t.Errorf("action %d %v #%d to no host", i, a.Kind, a.Step)
		}
		if a.Kind == Promote && abortAt >= 0 && i >= abortAt {
			t.Errorf("action %d: Promote #%d to %v after Abort", i, a.Step, a.Hosts)
		}
		if a.Resend {
			f, ok := first[a.Step]
			if !ok || f.Kind != a.Kind || f.Release != a.Release || f.Phase != a.Phase {
				t.Errorf("resend %+v does not match its first send %+v", a, f)
			}
			for _, h := range a.Hosts {
				if !slices.Contains(f.Hosts, h) {
					t.Errorf("resend #%d to %s, which the step was not sent to", a.Step, h)
				}
			}
			continue
		}
		if a.Step != lastStep+1 {
			t.Errorf("action %d: step %d after step %d", i, a.Step, lastStep)
		}
		lastStep = a.Step
		first[a.Step] = a
		switch a.Kind {
		case Stage, Promote, Check:
			if a.Release != p.To {
				t.Errorf("%v #%d of release %q, want %q", a.Kind, a.Step, a.Release, p.To)
			}
		}
		for _, h := range a.Hosts {
			switch a.Kind {
			case Promote:
				if promoted[h] {
					t.Errorf("%s sent a second Promote (#%d)", h, a.Step)
				}
				promoted[h] = true
			case Rollback:
				rolledBack[h]++
				if p.From[h] == "" || p.From[h] != a.Release {
					t.Errorf("Rollback #%d of %s to %q, its From is %q", a.Step, h, a.Release, p.From[h])
				}
				if !promoted[h] {
					t.Errorf("Rollback #%d of %s, which was never sent a Promote", a.Step, h)
				}
			}
		}
	}
	if done != (dones == 1) {
		t.Errorf("Done() = %v but %d Done actions", done, dones)
	}
	for h, n := range rolledBack {
		if n > 1 {
			t.Errorf("%s rolled back %d times", h, n)
		}
	}
	if !done {
		return
	}
	rolled := res == RolledBack || res == RollbackFailed ||
		(res == Aborted && p.OnAbort == OnAbortRollback && len(promoted) > 0)
	for h := range promoted {
		if rolled && p.From[h] != "" && rolledBack[h] == 0 {
			t.Errorf("result %v but %s, sent a Promote, was not rolled back", res, h)
		}
	}
	switch res {
	case Success:
		if kinds[Rollback] > 0 {
			t.Errorf("Success after a rollback")
		}
		c := m.Counts()
		if c.Failures > c.FailureLimit {
			t.Errorf("Success with %d failures, limit %d", c.Failures, c.FailureLimit)
		}
	case Failed:
		if kinds[Promote] > 0 {
			t.Errorf("Failed after sending a Promote")
		}
	case Aborted:
		if abortAt < 0 {
			t.Errorf("Aborted without Abort")
		}
		if p.OnAbort == OnAbortHalt && kinds[Rollback] > 0 {
			t.Errorf("Aborted with Halt after a rollback")
		}
	}
	c := m.Counts()
	if c.Hosts != len(p.Hosts) || c.Healthy+c.Failed+c.Unreachable+c.RolledBack+c.RollbackFailed > c.Hosts {
		t.Errorf("counts do not add up: %+v", c)
	}
}
