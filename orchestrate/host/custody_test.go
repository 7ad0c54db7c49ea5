package host_test

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"strings"
	"testing"
	"time"

	"scatter/artifact/core"
	"scatter/orchestrate/command"
	"scatter/orchestrate/host"
)

// The origin daemon is no signing oracle: it signs a command only for the
// deploy holding the lock of the command's repo, nothing else; the lock
// lasts as long as its holder's connection, and a second taker is told who
// holds it; abort reaches the holder over its lease.
func TestCustodySignsOnlyTheLockHoldersCommands(t *testing.T) {
	c := newTestCluster(t)
	c.Configure = func(cfg *host.Config) {
		if cfg.Origin {
			cfg.Key = c.Key
		}
	}
	h := c.start("origin", 230, true)
	if err := h.ServeControl(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ctl := host.DialControl(c.Dirs["origin"])
	signer, err := ctl.Signer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cmd := func(deploy string) *command.Command {
		now := time.Now()
		return &command.Command{Deploy: deploy, Seq: 1, Step: 1, Controller: "origin", Issued: now,
			Expires: now.Add(time.Minute), Repo: "mw", Kind: command.Stage, Release: core.ReleaseID{1},
			Hosts: []string{"h1"}, Timeout: time.Minute}
	}
	if _, err := command.Sign(cmd("d1"), signer); err == nil || !strings.Contains(err.Error(), "does not hold the deploy lock") {
		t.Fatalf("signed a command of a deploy holding no lock: %v", err)
	}
	if _, err := signer.Sign(nil, []byte("scatter manifest signature v2\x00anything"), crypto.Hash(0)); err == nil ||
		!strings.Contains(err.Error(), "not a message this daemon signs") {
		t.Fatalf("signed an arbitrary message: %v", err)
	}
	lease, err := ctl.Lock(ctx, "mw", "d1", "testing")
	if err != nil {
		t.Fatal(err)
	}
	b, err := command.Sign(cmd("d1"), signer)
	if err != nil {
		t.Fatalf("the lock holder's command: %v", err)
	}
	if _, err := command.Open(b, c.Key.Public().(ed25519.PublicKey)); err != nil {
		t.Fatal(err)
	}
	if _, err := command.Sign(cmd("d2"), signer); err == nil {
		t.Fatal("signed a command of another deploy")
	}
	if _, err := ctl.Lock(ctx, "mw", "d2", "second"); err == nil || !strings.Contains(err.Error(), "deploy lock held by") ||
		!strings.Contains(err.Error(), `"testing"`) {
		t.Fatalf("second lock: %v", err)
	}
	if _, err := ctl.Abort(ctx, "mw"); err != nil {
		t.Fatal(err)
	}
	select {
	case by := <-lease.Abort:
		if by == "" {
			t.Fatal("abort without a name")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the lease did not hear the abort")
	}
	lease.Release()
	c.WaitFor("lock free", 5*time.Second, func() bool {
		st, err := ctl.LockState(ctx, "mw")
		return err == nil && !st.Held
	})
	if _, err := command.Sign(cmd("d1"), signer); err == nil {
		t.Fatal("signed a command after its deploy released the lock")
	}
}
