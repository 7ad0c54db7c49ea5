package deploy_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"scatter/artifact/core"
	"scatter/orchestrate/deploy"
	"scatter/orchestrate/host"
	"scatter/orchestrate/host/hosttest"
	"scatter/orchestrate/membership"
	"scatter/orchestrate/rollout"
)

// forger sends, until stopped, acks for other hosts to the controller in
// every way a member holding the cluster key could (Hostile.ForgeAcks).
func forger(t *testing.T, evil *hosttest.Hostile, deployID string, victims []string, rel core.ReleaseID, ok bool) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		f := hosttest.Forgery{Controller: "origin", Deploy: deployID, Repo: "mw", Release: rel, Victims: victims, Steps: 6, OK: ok}
		for ctx.Err() == nil {
			evil.ForgeAcks(f) // a forged ack that does not arrive proves nothing either way
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return func() { cancel(); wg.Wait() }
}

// Property: acks forged for other hosts change no outcome. Forged failures
// do not fail a good release; forged successes do not pass a failing
// canary, which is rolled back with every host on the old release. The
// forger is a real gossip member with the cluster key, enrolled with a
// key of its own.
func TestForgedAcksChangeNothing(t *testing.T) {
	c := newCluster(t, 4)
	evil := c.StartHostile("evil", 240, membership.Meta{Role: "host"}, host.SignMeta)
	c.Add(evil.Entry())
	c.WaitMembers(6, 30*time.Second)

	r1 := c.publish("1")
	stop := forger(t, evil, "forged-fail", c.names, r1, false)
	res := c.deploy(context.Background(), r1, func(o *deploy.Options) { o.DeployID = "forged-fail" })
	stop()
	if res.sum.Result != rollout.Success {
		t.Fatalf("a good release with forged failure acks: %s: %s", res.sum.Outcome, res.sum.Reason)
	}
	for _, name := range c.names {
		if got := c.current(name); got != r1 {
			t.Errorf("%s is on %v, want %v", name, got.Short(), r1.Short())
		}
	}

	r2 := c.publish("2")
	if err := os.WriteFile(filepath.Join(c.Dirs["mw02"], "fail-"+r2.String()), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	stop = forger(t, evil, "forged-ok", c.names, r2, true)
	res = c.deploy(context.Background(), r2, func(o *deploy.Options) { o.DeployID = "forged-ok" })
	stop()
	if res.sum.Result != rollout.RolledBack {
		t.Fatalf("a failing canary with forged OK acks: %s: %s", res.sum.Outcome, res.sum.Reason)
	}
	for _, name := range c.names {
		if got := c.current(name); got != r1 {
			t.Errorf("%s is on %v after the rollback, want %v", name, got.Short(), r1.Short())
		}
	}
	refused := c.Hosts["origin"].Refused()
	for _, reason := range []string{"ack:malformed", "ack:bad-signature", "ack:speaks-for-another"} {
		if refused[reason] == 0 {
			t.Errorf("no %s refusal counted: %v", reason, refused)
		}
	}
}
