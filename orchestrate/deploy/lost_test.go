package deploy_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"sync"
	"testing"
	"time"

	"scatter/artifact/core"
	"scatter/orchestrate/command"
	"scatter/orchestrate/deploy"
	"scatter/orchestrate/rollout"
)

// lossyTransport acks every Stage at once and is lost the moment the
// first Promote goes out: a daemon killed during the canary phase. Sends
// after the loss are counted, and block as a hung daemon's would.
type lossyTransport struct {
	pub  ed25519.PublicKey
	acks chan *command.Ack
	lost chan error

	mu        sync.Mutex
	gone      bool
	afterLoss int
}

func (t *lossyTransport) SendCommand(b []byte, to []string) error {
	c, err := command.Open(b, t.pub)
	if err != nil {
		return err
	}
	t.mu.Lock()
	if t.gone {
		t.afterLoss++
		t.mu.Unlock()
		time.Sleep(time.Minute) // a hung daemon: the deploy must not wait for this
		return errors.New("gone")
	}
	if c.Kind == command.Promote {
		t.gone = true
		t.mu.Unlock()
		t.lost <- errors.New("the daemon died")
		return nil
	}
	t.mu.Unlock()
	if c.Kind == command.Stage {
		for _, h := range c.Hosts {
			if len(to) == 0 || contains(to, h) {
				t.acks <- &command.Ack{Deploy: c.Deploy, Step: c.Step, Host: h, Repo: c.Repo, Kind: c.Kind, Release: c.Release,
					OK: true, Current: core.ReleaseID{1}}
			}
		}
	}
	return nil
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func (t *lossyTransport) Subscribe(string) (<-chan *command.Ack, func()) { return t.acks, func() {} }

func (t *lossyTransport) Lost(ctx context.Context) <-chan error { return t.lost }

// A deploy whose transport is lost stops at once: it sends nothing more,
// blames no host, and says what each host was last known to do.
func TestDeployLosesTransport(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	tr := &lossyTransport{pub: pub, acks: make(chan *command.Ack, 100), lost: make(chan error, 1)}
	hosts := []string{"h1", "h2", "h3", "h4"}
	from := map[string]core.ReleaseID{}
	for _, h := range hosts {
		from[h] = core.ReleaseID{1}
	}
	start := time.Now()
	sum, err := deploy.Run(context.Background(), deploy.Options{
		Repo: "mw", Release: core.ReleaseID{2}, Hosts: hosts, From: from, Canary: 1,
		Batch: rollout.Size{N: 1}, StageTimeout: time.Minute, ActionTimeout: 20 * time.Second,
		RetryEvery: 100 * time.Millisecond, Restart: true, Controller: "origin", Key: key, Transport: tr,
		TickEvery: 10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("the deploy took %v to give up on a lost transport", took)
	}
	if sum.Lost == "" || sum.Outcome != deploy.OutcomeUnknown || sum.Result != 0 || len(sum.Failures) != 0 {
		t.Fatalf("summary: lost %q, outcome %q, result %v, failures %+v", sum.Lost, sum.Outcome, sum.Result, sum.Failures)
	}
	want := map[string]string{"h1": "promoting", "h2": "staged", "h3": "staged", "h4": "staged"}
	for _, l := range sum.Last {
		if want[l.Host] != l.State || l.Runs != (core.ReleaseID{1}) || l.Said != "stage ok" {
			t.Errorf("last known %+v, want state %s", l, want[l.Host])
		}
	}
	if len(sum.Last) != len(hosts) {
		t.Fatalf("last known states for %d hosts, want %d", len(sum.Last), len(hosts))
	}
	time.Sleep(300 * time.Millisecond) // a controller still running would resend by now
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.afterLoss != 0 {
		t.Fatalf("%d commands sent after the transport was lost", tr.afterLoss)
	}
}
