package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"scatter/artifact/core"
	"scatter/artifact/datadir"
	"scatter/bench/gen"
	"scatter/orchestrate/agent"
	"scatter/orchestrate/command"
	"scatter/orchestrate/config"
	"scatter/orchestrate/deploy"
	"scatter/orchestrate/host/hosttest"
	"scatter/orchestrate/rollout"
)

// cluster is an origin (the deploy host, which is also the controller)
// and targets, each a real host.Host on its own loopback address.
type cluster struct {
	*hosttest.Cluster
	t     *testing.T
	names []string // targets, in order
}

func newCluster(t *testing.T, n int) *cluster {
	c := &cluster{Cluster: hosttest.New(t), t: t}
	c.Repos = func(_, dir string) map[string]config.Repo { return repoConfig(dir) }
	c.Start("origin", 200, true)
	for i := range n {
		name := fmt.Sprintf("mw%02d", i+1)
		c.names = append(c.names, name)
		c.Start(name, 201+i, false)
	}
	c.WaitMembers(n+1, 30*time.Second)
	return c
}

// repoConfig defines the target's actions: restart records the release it
// restarted into; the check fails while a marker file names the release.
func repoConfig(dir string) map[string]config.Repo {
	sh := func(s string) config.Action {
		return config.Action{Command: []string{"/bin/sh", "-c", s}, Timeout: 10 * time.Second}
	}
	return map[string]config.Repo{"mw": {Actions: map[string]config.Action{
		"restart": sh(`echo "$SCATTER_RELEASE" >> ` + filepath.Join(dir, "restarts")),
		"health": sh(`if [ -e ` + dir + `/fail-$SCATTER_RELEASE ]; then echo "GET /health: 500 Internal Server Error"; exit 2; fi; ` +
			`test -e "$SCATTER_RELEASE_DIR"`),
	}}}
}

// publish builds a small generated release and announces it.
func (c *cluster) publish(version string) core.ReleaseID {
	c.t.Helper()
	src := filepath.Join(c.t.TempDir(), "src"+version)
	if _, err := gen.Generate(src, gen.Config{Seed: 7, TotalBytes: 1 << 20}); err != nil {
		c.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "VERSION"), []byte(version), 0o644); err != nil {
		c.t.Fatal(err)
	}
	return c.Publish("mw", src, version).ID
}

type runResult struct {
	sum   *deploy.Summary
	audit []deploy.Event
}

func (c *cluster) deploy(ctx context.Context, rel core.ReleaseID, mut ...func(*deploy.Options)) runResult {
	c.t.Helper()
	var audit bytes.Buffer
	o := deploy.Options{
		Repo: "mw", Release: rel, Hosts: c.names, Canary: 2,
		Batch: rollout.Size{N: 25, Percent: true}, FailureLimit: rollout.Size{N: 1},
		StageTimeout: time.Minute, ActionTimeout: 20 * time.Second, RetryEvery: time.Second,
		Restart: true, Checks: []string{"health"}, User: "tester", Message: "test deploy",
		Controller: "origin", Key: c.Key, Transport: c.Hosts["origin"], Audit: &audit,
	}
	for _, m := range mut {
		m(&o)
	}
	sum, err := deploy.Run(ctx, o)
	if err != nil {
		c.t.Fatal(err)
	}
	var events []deploy.Event
	sc := bufio.NewScanner(&audit)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var e deploy.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			c.t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		events = append(events, e)
	}
	return runResult{sum, events}
}

func (c *cluster) current(name string) core.ReleaseID {
	id, err := agent.ReadLink(datadir.Data(c.Dirs[name]).Repo("mw"), datadir.CurrentLink)
	if err != nil {
		c.t.Fatal(err)
	}
	return id
}

func (c *cluster) restarts(name string) []string {
	b, _ := os.ReadFile(filepath.Join(c.Dirs[name], "restarts"))
	return strings.Fields(string(b))
}

func phases(events []deploy.Event) []string {
	var out []string
	for _, e := range events {
		if e.Event == "phase" {
			out = append(out, e.Phase)
		}
	}
	return out
}

func hostsCount(n int) int {
	if testing.Short() {
		return 8
	}
	return n
}

// Property 1: a healthy deploy puts every host on the new release with
// every check passed, canary first, then the batches in order.
func TestHealthyDeploy(t *testing.T) {
	n := hostsCount(30)
	c := newCluster(t, n)
	r1 := c.publish("1")
	res := c.deploy(context.Background(), r1)
	if res.sum.Result != rollout.Success {
		t.Fatalf("first deploy: %s: %s %+v", res.sum.Outcome, res.sum.Reason, res.sum.Failures)
	}
	r2 := c.publish("2")
	res = c.deploy(context.Background(), r2)
	if res.sum.Result != rollout.Success {
		t.Fatalf("deploy: %s: %s %+v", res.sum.Outcome, res.sum.Reason, res.sum.Failures)
	}
	for _, name := range c.names {
		if c.current(name) != r2 {
			t.Errorf("%s: current %v, want %v", name, c.current(name).Short(), r2.Short())
		}
		if got := c.restarts(name); len(got) != 2 || got[1] != r2.String() {
			t.Errorf("%s restarted into %v", name, got)
		}
	}
	b := ((n-2)*25 + 99) / 100 // 25% of the non-canaries, rounded up
	wantBatches := (n - 2 + b - 1) / b
	got := phases(res.audit)
	if len(got) != 2+wantBatches {
		t.Fatalf("phases %v, want stage, canary and %d batches", got, wantBatches)
	}
	if len(got) < 4 || got[0] != "stage" || got[1] != "canary" || !strings.HasPrefix(got[len(got)-1], "batch ") {
		t.Fatalf("phases %v", got)
	}
	for i, p := range got[2:] {
		if p != fmt.Sprintf("batch %d", i+1) {
			t.Fatalf("phases out of order: %v", got)
		}
	}
	// Every promote ack was OK and came from a check that ran.
	acks := 0
	for _, e := range res.audit {
		if e.Event == "ack" && e.Kind == "promote" {
			acks++
			if !e.Ack.OK || len(e.Ack.Results) != 2 || e.Ack.Results[1].Action != "health" {
				t.Fatalf("promote ack %+v", e.Ack)
			}
		}
	}
	if acks != n {
		t.Fatalf("%d promote acks, want %d", acks, n)
	}

	// Deploying it again restarts nothing.
	res = c.deploy(context.Background(), r2)
	if res.sum.Result != rollout.Success {
		t.Fatalf("redeploy: %s", res.sum.Reason)
	}
	for _, name := range c.names {
		if got := c.restarts(name); len(got) != 2 {
			t.Fatalf("%s restarted on a redeploy of the current release: %v", name, got)
		}
	}
}

// Property 2: a failing canary check stops the deploy before any batch;
// the canaries are back on the old release, healthy; the summary shows
// the check's output.
func TestCanaryFailureRollsBack(t *testing.T) {
	c := newCluster(t, hostsCount(10))
	r1 := c.publish("1")
	if res := c.deploy(context.Background(), r1); res.sum.Result != rollout.Success {
		t.Fatalf("first deploy: %s", res.sum.Reason)
	}
	r2 := c.publish("2")
	os.WriteFile(filepath.Join(c.Dirs["mw02"], "fail-"+r2.String()), nil, 0o644)
	res := c.deploy(context.Background(), r2)
	if res.sum.Result != rollout.RolledBack {
		t.Fatalf("result %s: %s", res.sum.Outcome, res.sum.Reason)
	}
	for _, p := range phases(res.audit) {
		if strings.HasPrefix(p, "batch") {
			t.Fatalf("a batch started after the canary failed: %v", phases(res.audit))
		}
	}
	for _, name := range c.names {
		if c.current(name) != r1 {
			t.Errorf("%s is on %v, want the old release", name, c.current(name).Short())
		}
	}
	for _, name := range c.names[:2] {
		if got := c.restarts(name); len(got) != 3 || got[2] != r1.String() {
			t.Errorf("canary %s restarts %v: want old, new, old", name, got)
		}
	}
	if len(res.sum.Failures) != 1 || res.sum.Failures[0].Host != "mw02" || res.sum.Failures[0].Exit != 2 ||
		!strings.Contains(res.sum.Failures[0].Output, "500 Internal Server Error") {
		t.Fatalf("failures %+v", res.sum.Failures)
	}
	// The rollback's checks passed: both canaries healthy on r1.
	for _, h := range res.sum.Hosts[:2] {
		if h.State != rollout.HostRolledBack {
			t.Fatalf("canary %s: %s", h.Name, h.State)
		}
	}
}

// Property 3: two failures in batch 2 with a limit of 1 stop the deploy
// and roll back every promoted host.
func TestBatchFailuresRollBackEveryone(t *testing.T) {
	n := hostsCount(14)
	c := newCluster(t, n)
	r1 := c.publish("1")
	if res := c.deploy(context.Background(), r1); res.sum.Result != rollout.Success {
		t.Fatalf("first deploy: %s", res.sum.Reason)
	}
	r2 := c.publish("2")
	// canary 2, then batches of ceil(25% of n-2): batch 2 starts at 2+b.
	b := ((n-2)*25 + 99) / 100
	bad := []string{c.names[2+b], c.names[2+b+1]}
	for _, name := range bad {
		os.WriteFile(filepath.Join(c.Dirs[name], "fail-"+r2.String()), nil, 0o644)
	}
	res := c.deploy(context.Background(), r2)
	if res.sum.Result != rollout.RolledBack {
		t.Fatalf("result %s: %s", res.sum.Outcome, res.sum.Reason)
	}
	ph := phases(res.audit)
	if ph[len(ph)-1] != "rollback" || ph[len(ph)-2] != "batch 2" {
		t.Fatalf("phases %v", ph)
	}
	for _, name := range c.names {
		if c.current(name) != r1 {
			t.Errorf("%s is on %v after the rollback", name, c.current(name).Short())
		}
	}
	rolled := 0
	for _, h := range res.sum.Hosts {
		if h.State == rollout.HostRolledBack {
			rolled++
		}
	}
	if rolled != 2+2*b {
		t.Fatalf("%d hosts rolled back, want %d (canaries and batches 1-2)", rolled, 2+2*b)
	}
}

// Ctrl-C (context cancelled) mid-deploy: no new batch starts, the batch in
// flight finishes, then everything promoted rolls back; the audit log
// records the abort.
func TestAbortRollsBack(t *testing.T) {
	c := newCluster(t, hostsCount(10))
	r1 := c.publish("1")
	c.deploy(context.Background(), r1)
	r2 := c.publish("2")
	ctx, cancel := context.WithCancel(context.Background())
	var once sync.Once
	res := c.deploy(ctx, r2, func(o *deploy.Options) {
		o.Progress = func(e deploy.Event) {
			if e.Event == "phase" && e.Phase == "batch 1" {
				once.Do(cancel)
			}
		}
	})
	if res.sum.Result != rollout.Aborted || !res.sum.Aborted {
		t.Fatalf("result %s: %s", res.sum.Outcome, res.sum.Reason)
	}
	ph := phases(res.audit)
	for _, p := range ph {
		if p == "batch 2" {
			t.Fatalf("batch 2 started after the abort: %v", ph)
		}
	}
	aborted := false
	for _, e := range res.audit {
		aborted = aborted || e.Event == "abort"
	}
	if !aborted {
		t.Fatal("audit log does not record the abort")
	}
	for _, name := range c.names {
		if c.current(name) != r1 {
			t.Errorf("%s on %v after abort with rollback", name, c.current(name).Short())
		}
	}
}

// Property 5: a forged, replayed or expired command, and one naming an
// undefined action: nothing runs; the valid sender gets an ack saying why.
func TestBadCommandsRunNothing(t *testing.T) {
	c := newCluster(t, 2)
	r1 := c.publish("1")
	c.WaitFor("staged", time.Minute, func() bool { return c.Hosts["mw01"].Swarm().Staged("mw", r1) })
	origin := c.Hosts["origin"]
	acks, cancel := origin.Subscribe("bad")
	defer cancel()
	now := time.Now()
	cmd := func(seq uint64, mut func(*command.Command)) *command.Command {
		x := &command.Command{Deploy: "bad", Seq: seq, Step: int(seq), Controller: "origin", Issued: now,
			Expires: now.Add(time.Minute), Repo: "mw", Kind: command.Promote, Release: r1,
			Hosts: []string{"mw01"}, Restart: true, Checks: []string{"health"}, Timeout: 10 * time.Second}
		if mut != nil {
			mut(x)
		}
		return x
	}
	_, forger, _ := ed25519.GenerateKey(rand.Reader)
	forged, _ := command.Sign(cmd(1, nil), forger)
	expired, _ := command.Sign(cmd(2, func(x *command.Command) { x.Issued, x.Expires = now.Add(-time.Hour), now.Add(-time.Minute) }), c.Key)
	undefined, _ := command.Sign(cmd(3, func(x *command.Command) { x.Checks = []string{"rm-rf"} }), c.Key)
	for _, b := range [][]byte{forged, expired, undefined} {
		if err := origin.SendCommand(b, []string{"mw01"}); err != nil {
			t.Fatal(err)
		}
	}
	got := map[int]*command.Ack{}
	deadline := time.After(10 * time.Second)
	for len(got) < 2 {
		select {
		case a := <-acks:
			got[a.Step] = a
		case <-deadline:
			t.Fatalf("acks: %v", got)
		}
	}
	if a := got[2]; a == nil || !a.Refused || !strings.Contains(a.Error, "expired") {
		t.Fatalf("expired: %+v", a)
	}
	if a := got[3]; a == nil || !a.Refused || !strings.Contains(a.Error, `"rm-rf" is not defined`) {
		t.Fatalf("undefined action: %+v", a)
	}
	// The replay: a good command, then the same bytes again.
	good, _ := command.Sign(cmd(4, nil), c.Key)
	origin.SendCommand(good, []string{"mw01"})
	select {
	case a := <-acks:
		if a.Step != 4 || !a.OK {
			t.Fatalf("good command: %+v", a)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no ack for the good command")
	}
	origin.SendCommand(good, []string{"mw01"})
	select {
	case a := <-acks:
		t.Fatalf("a replay was answered: %+v", a)
	case <-time.After(time.Second):
	}
	if got := c.restarts("mw01"); len(got) != 1 {
		t.Fatalf("restarts %v: only the good command may restart", got)
	}
	if _, ok := got[1]; ok {
		t.Fatal("a forged command was answered")
	}
}
