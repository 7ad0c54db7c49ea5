package rollout

import (
	"testing"
	"time"
)

// A host that gossip thought had no release, but whose stage ack says it
// runs one, is rolled back to it; SetFrom after the rollback changes nothing.
func TestSetFromCorrectsRollbackTarget(t *testing.T) {
	t0 := time.Unix(0, 0)
	m, err := New(Plan{To: "new", Hosts: []string{"a", "b"}, Canary: 1, From: map[string]string{"b": "old"}})
	if err != nil {
		t.Fatal(err)
	}
	acts := m.Start(t0)
	stage := acts[len(acts)-1]
	m.SetFrom("a", "older")
	m.SetFrom("nobody", "x") // ignored
	m.Ack(t0, Ack{Host: "a", Step: stage.Step, OK: true})
	acts = m.Ack(t0, Ack{Host: "b", Step: stage.Step, OK: true})
	promote := acts[len(acts)-1]
	if promote.Kind != Promote || len(promote.Hosts) != 1 || promote.Hosts[0] != "a" {
		t.Fatalf("canary promote %+v", promote)
	}
	acts = m.Ack(t0, Ack{Host: "a", Step: promote.Step, OK: false, Error: "check failed"})
	var rb *Action
	for i := range acts {
		if acts[i].Kind == Rollback {
			rb = &acts[i]
		}
	}
	if rb == nil || rb.Release != "older" || rb.Hosts[0] != "a" {
		t.Fatalf("rollback %+v in %+v", rb, acts)
	}
	m.SetFrom("a", "other")
	if m.Hosts()[0].From != "older" {
		t.Fatal("SetFrom changed a host already rolling back")
	}
}
