package agent

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"scatter/artifact/core"
	"scatter/artifact/datadir"
	"scatter/orchestrate/command"
	"scatter/orchestrate/config"
	"scatter/swarm"
)

type fakeStager struct {
	mu    sync.Mutex
	state map[core.ReleaseID]swarm.ReleaseStatus
}

func (f *fakeStager) Release(repo string, id core.ReleaseID) (swarm.ReleaseStatus, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.state[id]
	return s, ok
}

func (f *fakeStager) set(id core.ReleaseID, s swarm.ReleaseStatus) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.state[id] = s
}

var (
	relA = core.ReleaseID{0xa}
	relB = core.ReleaseID{0xb}
)

type fixture struct {
	t      *testing.T
	data   string
	repo   datadir.Repo
	stager *fakeStager
	agent  *Agent
	health *int // HTTP status the check sees
	seq    int
}

func sh(script string) config.Action {
	return config.Action{Command: []string{"/bin/sh", "-c", script}, Timeout: 10 * time.Second}
}

func newFixture(t *testing.T) *fixture {
	data := t.TempDir()
	f := &fixture{t: t, data: data, repo: datadir.Data(data).Repo("mw"), stager: &fakeStager{state: map[core.ReleaseID]swarm.ReleaseStatus{}}}
	for _, id := range []core.ReleaseID{relA, relB} {
		if err := os.MkdirAll(f.repo.Release(id), 0o755); err != nil {
			t.Fatal(err)
		}
		f.stager.set(id, swarm.ReleaseStatus{State: swarm.Staged})
	}
	status := http.StatusOK
	f.health = &status
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(*f.health)
		w.Write([]byte("Main Page"))
	}))
	t.Cleanup(srv.Close)
	log := filepath.Join(data, "actions.log")
	repo := config.Repo{Actions: map[string]config.Action{
		"restart":  sh(`echo "restart $SCATTER_RELEASE $SCATTER_PHASE" >> ` + log),
		"noisy":    sh(`i=0; while [ $i -lt 2000 ]; do echo line $i; i=$((i+1)); done; exit 3`),
		"slow":     {Command: []string{"/bin/sh", "-c", "sleep 30"}, Timeout: 200 * time.Millisecond},
		"http-ok":  {HTTP: &config.HTTPCheck{URL: srv.URL, Status: 200, Contains: "Main Page"}, Timeout: 2 * time.Second},
		"tcp-ok":   {TCP: srv.Listener.Addr().String(), Timeout: time.Second},
		"hook-pwd": sh(`pwd >> ` + log),
	}}
	a, err := New(Config{Name: "mw1", DataDir: data, Repos: map[string]config.Repo{"mw": repo}, Stager: f.stager, Poll: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	f.agent = a
	return f
}

func (f *fixture) cmd(kind command.Kind, rel core.ReleaseID, mut ...func(*command.Command)) *command.Command {
	f.seq++
	c := &command.Command{Deploy: "d", Seq: uint64(f.seq), Step: f.seq, Controller: "deploy", Issued: time.Now(),
		Expires: time.Now().Add(time.Minute), Repo: "mw", Kind: kind, Release: rel, Hosts: []string{"mw1"},
		Restart: true, Checks: []string{"http-ok", "tcp-ok"}, Timeout: 5 * time.Second}
	for _, m := range mut {
		m(c)
	}
	return c
}

func (f *fixture) handle(c *command.Command) *command.Ack {
	ack, done := f.agent.Handle(context.Background(), c)
	if !done {
		f.t.Fatal("step reported running")
	}
	return ack
}

func (f *fixture) log() string {
	b, _ := os.ReadFile(filepath.Join(f.data, "actions.log"))
	return string(b)
}

func (f *fixture) current() core.ReleaseID {
	id, err := ReadLink(f.repo, datadir.CurrentLink)
	if err != nil {
		f.t.Fatal(err)
	}
	return id
}

func TestPromoteSwitchesRestartsChecks(t *testing.T) {
	f := newFixture(t)
	ack := f.handle(f.cmd(command.Promote, relA))
	if !ack.OK || ack.Current != relA || f.current() != relA {
		t.Fatalf("promote A: %+v", ack)
	}
	ack = f.handle(f.cmd(command.Promote, relB))
	if !ack.OK || f.current() != relB || ack.Previous != relA {
		t.Fatalf("promote B: %+v", ack)
	}
	if got := strings.Count(f.log(), "restart "); got != 2 {
		t.Fatalf("restart ran %d times, want 2:\n%s", got, f.log())
	}
	if !strings.Contains(f.log(), "restart "+relB.String()+" restart") {
		t.Fatalf("restart did not see the release and phase:\n%s", f.log())
	}
	var phases []string
	for _, r := range ack.Results {
		phases = append(phases, r.Phase+":"+r.Action)
	}
	if got := strings.Join(phases, " "); got != "restart:restart check:http-ok check:tcp-ok" {
		t.Fatalf("results %s", got)
	}
	st := f.agent.State()
	if len(st) != 1 || st[0].Current != relB || st[0].Previous != relA || st[0].Health != "ok" {
		t.Fatalf("state %+v", st)
	}
}

func TestPromoteIsIdempotent(t *testing.T) {
	f := newFixture(t)
	f.handle(f.cmd(command.Promote, relA))
	ack := f.handle(f.cmd(command.Promote, relA))
	if !ack.OK || !ack.Unchanged {
		t.Fatalf("second promote: %+v", ack)
	}
	if got := strings.Count(f.log(), "restart "); got != 1 {
		t.Fatalf("restart ran %d times, want 1", got)
	}
	if len(ack.Results) != 2 {
		t.Fatalf("an unchanged promote still checks: %+v", ack.Results)
	}
	f.handle(f.cmd(command.Promote, relA, func(c *command.Command) { c.Force = true }))
	if got := strings.Count(f.log(), "restart "); got != 2 {
		t.Fatalf("forced: restart ran %d times, want 2", got)
	}
}

func TestPromoteAfterCrashBeforeRestartRestarts(t *testing.T) {
	f := newFixture(t)
	// A crash after the switch, before the restart finished.
	if err := writePending(f.repo, relA); err != nil {
		t.Fatal(err)
	}
	if _, err := switchCurrent(f.repo, relA); err != nil {
		t.Fatal(err)
	}
	ack := f.handle(f.cmd(command.Promote, relA))
	if !ack.OK || ack.Unchanged || strings.Count(f.log(), "restart ") != 1 {
		t.Fatalf("retried promote after crash: %+v\n%s", ack, f.log())
	}
	if readPending(f.repo) != (core.ReleaseID{}) {
		t.Fatal("pending marker left after a restart")
	}
}

func TestUndefinedActionRefusedNothingRuns(t *testing.T) {
	f := newFixture(t)
	ack := f.handle(f.cmd(command.Promote, relA, func(c *command.Command) {
		c.Hooks = map[string][]string{command.AfterPromote: {"hook-pwd"}}
		c.Checks = []string{"http-ok", "rm-rf"}
	}))
	if ack.OK || !ack.Refused || !strings.Contains(ack.Error, `"rm-rf" is not defined`) {
		t.Fatalf("ack %+v", ack)
	}
	if f.log() != "" || !f.current().IsZero() {
		t.Fatalf("something ran: current %v, log %q", f.current(), f.log())
	}
}

func TestFailedCheckReportsEveryFailureAndOutput(t *testing.T) {
	f := newFixture(t)
	*f.health = http.StatusInternalServerError
	ack := f.handle(f.cmd(command.Promote, relA, func(c *command.Command) {
		c.Checks = []string{"http-ok", "noisy", "tcp-ok"}
	}))
	if ack.OK || !strings.Contains(ack.Error, "2 checks failed (http-ok, noisy)") {
		t.Fatalf("ack %+v", ack)
	}
	noisy := ack.Results[2]
	if noisy.Action != "noisy" || noisy.Exit != 3 || len(noisy.Output) > command.MaxOutput+4 || !strings.Contains(noisy.Output, "line 1999") {
		t.Fatalf("noisy result: exit %d, %d bytes of output, ends %q", noisy.Exit, len(noisy.Output), noisy.Output[max(0, len(noisy.Output)-20):])
	}
	if !ack.Results[3].OK {
		t.Fatalf("tcp check after the failures did not run: %+v", ack.Results)
	}
	if st := f.agent.State(); st[0].Health != "failing" {
		t.Fatalf("health %q", st[0].Health)
	}
}

func TestActionTimeoutKillsIt(t *testing.T) {
	f := newFixture(t)
	start := time.Now()
	ack := f.handle(f.cmd(command.Check, relA, func(c *command.Command) { c.Checks = []string{"slow"} }))
	if ack.OK || !strings.Contains(ack.Error, "timed out") || time.Since(start) > 5*time.Second {
		t.Fatalf("ack %+v after %v", ack, time.Since(start))
	}
}

func TestStepRunsOnce(t *testing.T) {
	f := newFixture(t)
	c := f.cmd(command.Promote, relA)
	first := f.handle(c)
	retry := *c
	retry.Seq = 99
	again := f.handle(&retry)
	if again != first || strings.Count(f.log(), "restart ") != 1 {
		t.Fatalf("a retried step ran again: %+v", again)
	}
}

func TestStageWaitsAndExplains(t *testing.T) {
	f := newFixture(t)
	relC := core.ReleaseID{0xc}
	f.stager.set(relC, swarm.ReleaseStatus{State: swarm.Fetching, Done: 10, Total: 100, Stuck: "no peer holds the missing pieces"})
	ack := f.handle(f.cmd(command.Stage, relC, func(c *command.Command) { c.Timeout = 100 * time.Millisecond }))
	if ack.OK || !strings.Contains(ack.Error, "10 of 100 bytes, stuck: no peer holds") {
		t.Fatalf("ack %+v", ack)
	}
	relD := core.ReleaseID{0xd}
	os.MkdirAll(f.repo.Release(relD), 0o755)
	go func() {
		time.Sleep(50 * time.Millisecond)
		f.stager.set(relD, swarm.ReleaseStatus{State: swarm.Staged})
	}()
	ack = f.handle(f.cmd(command.Stage, relD, func(c *command.Command) {
		c.Hooks = map[string][]string{command.AfterStage: {"hook-pwd"}}
	}))
	if !ack.OK || !strings.Contains(f.log(), relD.String()) {
		t.Fatalf("stage: %+v, log %q", ack, f.log())
	}
}

func TestSwitchNeverLeavesCurrentDangling(t *testing.T) {
	f := newFixture(t)
	if _, err := switchCurrent(f.repo, core.ReleaseID{0xee}); err == nil {
		t.Fatal("switched to a release that is not staged")
	}
	if _, err := os.Lstat(f.repo.Link(datadir.CurrentLink)); !os.IsNotExist(err) {
		t.Fatalf("current exists after a refused switch: %v", err)
	}
}

// A step older than one already run for the same deploy is refused, also
// after a restart (a new Agent on the same data); a new deploy starts over.
func TestOlderStepRefused(t *testing.T) {
	f := newFixture(t)
	promote := f.cmd(command.Promote, relA)   // step 1
	rollback := f.cmd(command.Rollback, relB) // step 2
	if ack := f.handle(rollback); !ack.OK {
		t.Fatalf("rollback: %+v", ack)
	}
	restarted, err := New(f.agent.cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.agent = restarted
	ack := f.handle(promote)
	if ack.OK || !ack.Refused || !strings.Contains(ack.Error, "older than step 2") {
		t.Fatalf("late promote: %+v", ack)
	}
	if f.current() != relB {
		t.Fatalf("the late promote moved current to %v", f.current().Short())
	}
	next := f.cmd(command.Promote, relA, func(c *command.Command) { c.Deploy, c.Step = "d2", 1 })
	if ack := f.handle(next); !ack.OK || f.current() != relA {
		t.Fatalf("a new deploy's first step: %+v", ack)
	}
}
