package deploy_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"scatter/artifact/core"
	"scatter/orchestrate/command"
	"scatter/orchestrate/deploy"
	"scatter/orchestrate/host"
	"scatter/orchestrate/host/hosttest"
	"scatter/orchestrate/membership"
	"scatter/orchestrate/rollout"
)

// forger sends, until stopped, acks for other hosts to the controller in
// every way a member holding the cluster key could: unsigned (the old
// wire form), sealed in the victim's name with the forger's key, and
// sealed in the forger's own (enrolled) name about the victim.
func forger(t *testing.T, evil *hosttest.Hostile, deployID string, victims []string, rel core.ReleaseID, ok bool) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, stranger, _ := ed25519.GenerateKey(rand.Reader)
		for ctx.Err() == nil {
			for _, v := range victims {
				for step := 1; step <= 6; step++ {
					a := &command.Ack{Deploy: deployID, Step: step, Host: v, Repo: "mw", Kind: command.Promote,
						Release: rel, OK: ok, Current: rel, Duration: time.Millisecond}
					if !ok {
						a.Error = "check health: forged failure"
						a.Results = []command.Result{{Phase: "check", Action: "health", Exit: 2, Error: "forged"}}
					}
					plain, _ := command.EncodeAck(a)
					inName, _ := host.AckMessage(v, a, stranger)
					own, _ := host.AckMessage(evil.Name, a, evil.Key)
					for _, msg := range [][]byte{append([]byte{'K'}, plain...), inName, own} {
						evil.Node.SendTo("origin", msg)
					}
				}
			}
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
