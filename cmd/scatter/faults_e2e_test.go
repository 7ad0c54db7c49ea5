package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"scatter/orchestrate/host"
)

// Control-plane faults with real processes on loopback: the origin
// daemon killed mid-deploy, the deploy process killed, daemons restarted.
// Every daemon listens on a fixed gossip port (7946) on its own address in
// the test's own 127.0.N.0/24 (77 and up), so that a restarted one comes back where the others
// remember it, as it does in production.

// faultCluster is a deployCluster whose origin can be killed and
// restarted on the same address and data directory.
type faultCluster struct {
	*deployCluster
	originArgs []string
}

const faultYAML = `repo: mw
canary: 1
batch: 1
failure_limit: 0
checks: [health]
timeouts: {stage: 1m, action: 20s}
hooks:
  after_stage: [slowstage]
`

// newFaultCluster starts an origin at NET.1 and n targets at NET.10 up;
// each test has its own NET (e.g. "127.0.77"), so tests never share an
// address and port.
func newFaultCluster(t *testing.T, n int, net string) *faultCluster {
	t.Helper()
	if testing.Short() {
		t.Skip("real processes: skipped under -short")
	}
	bin := scatterBinary(t)
	dir := t.TempDir()
	e := &e2eCluster{t: t, bin: bin, dir: dir, key: filepath.Join(dir, "deploy.key"), ckey: filepath.Join(dir, "cluster.key")}
	runBin(t, bin, "keygen", "--out", e.key)
	if err := os.WriteFile(e.ckey, []byte(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{11}, 32))), 0o600); err != nil {
		t.Fatal(err)
	}
	fc := &faultCluster{originArgs: append(e.args("origin", net+".1"), "--origin", "--key", e.key, "--gossip-port", "7946")}
	e.origin = startDaemon(t, bin, fc.originArgs...)
	e.seed = net + ".1:7946"
	fc.deployCluster = &deployCluster{e2eCluster: e, hosts: map[string]*daemon{}, ips: map[string]string{}}
	for i := range n {
		name := fmt.Sprintf("h%d", i+1)
		fc.names = append(fc.names, name)
		fc.ips[name] = fmt.Sprintf("%s.%d", net, 10+i)
		fc.startTarget(name)
	}
	fc.waitMembers(fc.origin, n+1, 20*time.Second)
	return fc
}

// startTarget starts (or restarts) a target: restart sleeps as long as
// DATA/restart-sleep says, the slowstage hook as DATA/stage-sleep says.
func (c *faultCluster) startTarget(name string) {
	data := filepath.Join(c.dir, name)
	os.MkdirAll(data, 0o755)
	cfg := fmt.Sprintf(`repos:
  mw:
    actions:
      restart:
        command: [/bin/sh, -c, 'echo "start $SCATTER_RELEASE" >> %[1]s/restarts; sleep $(cat %[1]s/restart-sleep 2>/dev/null || echo 0); echo "done $SCATTER_RELEASE" >> %[1]s/restarts']
        timeout: 30s
      health:
        command: [/bin/true]
      slowstage:
        command: [/bin/sh, -c, 'echo "stage $SCATTER_RELEASE" >> %[1]s/stages; sleep $(cat %[1]s/stage-sleep 2>/dev/null || echo 0)']
        timeout: 50s
`, data)
	path := filepath.Join(c.dir, name+".yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		c.t.Fatal(err)
	}
	c.hosts[name] = c.host(name, c.ips[name], "--config", path, "--gossip-port", "7946")
}

// kill sends SIGKILL to a daemon and reaps it.
func kill(d *daemon) {
	d.cmd.Process.Signal(syscall.SIGKILL)
	d.cmd.Wait()
}

func (c *faultCluster) restartOrigin() time.Duration {
	c.t.Helper()
	start := time.Now()
	c.origin = startDaemon(c.t, c.bin, c.originArgs...)
	c.waitMembers(c.origin, len(c.names)+1, 10*time.Second)
	return time.Since(start)
}

// waitMembers waits until d sees want members; it returns how long that
// took.
func (c *faultCluster) waitMembers(d *daemon, want int, timeout time.Duration) time.Duration {
	c.t.Helper()
	start := time.Now()
	var seen []string
	for {
		seen = seen[:0]
		if s, err := host.DialControl(d.data).Status(context.Background()); err == nil {
			for _, m := range s.Members {
				seen = append(seen, m.Name)
			}
		}
		if len(seen) == want {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			c.t.Fatalf("%s sees %d members %v after %v, want %d", d.data, len(seen), seen, timeout, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *faultCluster) setSleep(name, what, secs string) {
	if err := os.WriteFile(filepath.Join(c.dir, name, what), []byte(secs), 0o644); err != nil {
		c.t.Fatal(err)
	}
}

func (c *faultCluster) clearSleeps() {
	for _, n := range c.names {
		os.Remove(filepath.Join(c.dir, n, "restart-sleep"))
		os.Remove(filepath.Join(c.dir, n, "stage-sleep"))
	}
}

// waitFile waits until the file contains s.
func (c *faultCluster) waitFile(path, s string, timeout time.Duration, log *syncBuffer) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		b, _ := os.ReadFile(path)
		if strings.Contains(string(b), s) {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s never contained %q; deploy output:\n%s", path, s, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// converged deploys rel (a version) and checks that every host runs id.
func (c *faultCluster) converge(version, id string, args ...string) {
	c.t.Helper()
	out, err := c.deployCmd(append([]string{"-m", "converge"}, append(args, "mw", version)...)...).CombinedOutput()
	if err != nil {
		c.t.Fatalf("deploy %s to converge: %v\n%s", version, err, out)
	}
	for _, n := range c.names {
		if got := c.current(n); got != id {
			c.t.Fatalf("%s on %s after converging to %s:\n%s", n, got, id, out)
		}
	}
}

func (c *faultCluster) startDeploy(version string) (*exec.Cmd, *syncBuffer) {
	c.t.Helper()
	d := c.deployCmd("-m", "doomed", "mw", version)
	log := &syncBuffer{}
	d.Stdout, d.Stderr = log, log
	if err := d.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { d.Process.Kill() })
	return d, log
}

// The origin daemon killed with SIGKILL during a deploy's stage, canary
// and batch phases, and stopped (SIGSTOP: alive, answering nothing)
// during a batch: each time the deploy notices within 2 s, exits within
// 5 s with code 6 and says what it last knew of every host, blaming none;
// the daemon restarts and sees every host within 10 s; a deploy of the
// previous release brings every host back to it, a stranded canary
// included.
func TestE2EOriginKilledMidDeploy(t *testing.T) {
	c := newFaultCluster(t, 4, "127.0.77")
	v1 := c.publish("1", faultYAML)
	c.converge("1", v1)
	v2 := c.publish("2", faultYAML)

	for _, phase := range []struct {
		name    string
		host    string // the host whose slow step marks the phase
		sleep   string // which step sleeps
		trigger string // file and line that say the step runs
		hang    bool   // SIGSTOP instead: the daemon stops answering
	}{
		{"stage", "h3", "stage-sleep", "stages", false},
		{"canary", "h1", "restart-sleep", "restarts", false},
		{"batch", "h2", "restart-sleep", "restarts", false},
		{"batch, daemon hung", "h2", "restart-sleep", "restarts", true},
	} {
		func() {
			// The slow step outlives the deploy; the next deploy's step on
			// that host waits for it (one step per repo at a time).
			c.setSleep(phase.host, phase.sleep, "8")
			before, _ := os.ReadFile(filepath.Join(c.dir, phase.host, phase.trigger))
			d, log := c.startDeploy("2")
			line := "start " + v2
			if phase.trigger == "stages" {
				line = "stage " + v2
			}
			// Wait for this deploy's line, not an older one.
			deadline := time.Now().Add(60 * time.Second)
			for {
				b, _ := os.ReadFile(filepath.Join(c.dir, phase.host, phase.trigger))
				if strings.Count(string(b), line) > strings.Count(string(before), line) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s never ran its slow step:\n%s", phase.host, log)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if phase.hang {
				c.origin.cmd.Process.Signal(syscall.SIGSTOP)
			} else {
				kill(c.origin)
			}
			killed := time.Now()
			err := d.Wait()
			took := time.Since(killed)
			if phase.hang {
				kill(c.origin) // SIGKILL ends a stopped process too
			}
			out := log.String()
			t.Logf("origin killed during %s; deploy exited %d after %v:\n%s", phase.name, exitStatus(err), took.Round(time.Millisecond), out)
			if code := exitStatus(err); code != exitOutcomeUnknown {
				t.Fatalf("deploy exited %d, want %d (outcome unknown)", code, exitOutcomeUnknown)
			}
			if took > 5*time.Second {
				t.Fatalf("deploy took %v to exit after its daemon died", took)
			}
			for _, want := range []string{"UNKNOWN", "lost the local daemon", "last known state", "h1", "h4", "scatter rollback"} {
				if !strings.Contains(out, want) {
					t.Fatalf("output lacks %q", want)
				}
			}
			if strings.Contains(out, "no ack") || strings.Contains(out, "failures:") {
				t.Fatal("the deploy blamed hosts for its own daemon's death")
			}
			c.clearSleeps()
			t.Logf("origin back with all %d members in %v", len(c.names)+1, c.restartOrigin().Round(time.Millisecond))
			// The previous release everywhere, stranded canary included.
			c.converge("1", v1)
		}()
	}
}

// `scatter deploy` itself killed with SIGKILL mid-batch: its lock dies
// with it, status on the deploy host shows which host runs which release,
// and the next deploy brings every host to one release.
func TestE2EDeployProcessKilled(t *testing.T) {
	c := newFaultCluster(t, 4, "127.0.78")
	v1 := c.publish("1", faultYAML)
	c.converge("1", v1)
	v2 := c.publish("2", faultYAML)
	c.setSleep("h3", "restart-sleep", "3") // batch 2
	d, log := c.startDeploy("2")
	c.waitFile(filepath.Join(c.dir, "h3", "restarts"), "start "+v2, 60*time.Second, log)
	d.Process.Signal(syscall.SIGKILL)
	d.Wait()
	c.clearSleeps()
	// h1 (canary) and h2 (batch 1) run v2, h4 v1, h3 either.
	deadline := time.Now().Add(30 * time.Second)
	for {
		out := runStatus(t, c.bin, "--data", c.origin.data)
		if strings.Contains(out, "MIXED") && strings.Count(out, "DRIFT") >= 2 {
			t.Logf("status after the deploy was killed:\n%s", out)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status does not show the drift:\n%s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The lock died with its holder: finish the deploy.
	c.converge("2", v2)
	// And back, with `scatter rollback` (no release named).
	out, err := exec.Command(c.bin, "rollback", "--data", c.origin.data, "mw").CombinedOutput()
	if err != nil {
		t.Fatalf("rollback: %v\n%s", err, out)
	}
	for _, n := range c.names {
		if c.current(n) != v1 {
			t.Fatalf("%s on %s after rollback:\n%s", n, c.current(n), out)
		}
	}
}

// Restart every target one by one while the origin stays up, then the
// origin while the targets stay up: each restarted daemon sees every
// member within 10 s, and the others see it again; status says when and
// through whom it joined.
func TestE2ERestartsRejoin(t *testing.T) {
	c := newFaultCluster(t, 4, "127.0.79")
	all := len(c.names) + 1
	for _, name := range c.names {
		kill(c.hosts[name])
		start := time.Now()
		c.startTarget(name)
		c.waitMembers(c.hosts[name], all, 10*time.Second)
		took := time.Since(start)
		c.waitMembers(c.origin, all, 10*time.Second)
		t.Logf("%s back with all %d members in %v", name, all, took.Round(time.Millisecond))
	}
	kill(c.origin)
	// Past GossipToTheDeadTime the targets have forgotten the origin:
	// only the rejoin loops bring it back.
	if os.Getenv("SCATTER_SLOW_FAULTS") != "" {
		time.Sleep(40 * time.Second)
	}
	t.Logf("origin back with all %d members in %v", all, c.restartOrigin().Round(time.Millisecond))
	for _, name := range c.names {
		c.waitMembers(c.hosts[name], all, 10*time.Second)
	}
	out := runStatus(t, c.bin, "--data", c.origin.data)
	if !strings.Contains(out, "origin: joined") || !strings.Contains(out, "remembered") {
		t.Fatalf("status does not say how the origin joined:\n%s", out)
	}
	t.Logf("status:\n%s", out)
}

// The deploy host cut off from the fleet (its namespace's link down) for
// longer than memberlist remembers the dead: the hosts keep their cluster
// among themselves, and when the link returns the origin sees them again
// within 10 s, without a restart. The link stays down 50 s (memberlist
// declares the others dead within ~10 s and forgets them 30 s later);
// SCATTER_SLOW_FAULTS=1 makes it the 90 s of the incident.
func TestE2EOriginPartitioned(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes: skipped under -short")
	}
	down := 50 * time.Second
	if os.Getenv("SCATTER_SLOW_FAULTS") != "" {
		down = 90 * time.Second
	}
	const hosts = 4
	ns := newNetns(t, hosts+1, 0)
	bin, dir, key := ns.keyed()
	ds := []*daemon{ns.seed(bin, dir, key, 0, "origin", "--origin")}
	for i := 1; i <= hosts; i++ {
		ds = append(ds, ns.seed(bin, dir, key, i, fmt.Sprintf("h%d", i), "--join", ns.Addr(0)+":7946"))
	}
	fc := &faultCluster{deployCluster: &deployCluster{e2eCluster: &e2eCluster{t: t}}}
	for _, d := range ds {
		fc.waitMembers(d, hosts+1, 20*time.Second)
	}
	if err := ns.SetLink(0, false); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	// The hosts drop the origin and keep each other.
	for _, d := range ds[1:] {
		fc.waitMembers(d, hosts, 30*time.Second)
	}
	t.Logf("the hosts dropped the origin and keep each other after %v", time.Since(cut).Round(time.Millisecond))
	// The origin, cut off, doubts itself first (memberlist's Lifeguard
	// slows its probes), so it declares the others dead later.
	for time.Since(cut) < down {
		if s, err := host.DialControl(ds[0].data).Status(context.Background()); err == nil && len(s.Members) == 1 {
			t.Logf("the origin was alone after %v", time.Since(cut).Round(time.Millisecond))
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(down - time.Since(cut)) // the scenario's length, not a wait for an outcome
	if err := ns.SetLink(0, true); err != nil {
		t.Fatal(err)
	}
	up := time.Now()
	for _, d := range ds {
		fc.waitMembers(d, hosts+1, 10*time.Second)
	}
	t.Logf("link up: every daemon sees all %d members %v later", hosts+1, time.Since(up).Round(time.Millisecond))
	t.Logf("origin status:\n%s", runStatus(t, bin, "--data", ds[0].data))
}

// The deploy host lost for good in the middle of a deploy: a new deploy
// host with the deploy key joins through any target, sees the fleet and
// its mixed releases, fetches the releases from the hosts, and brings
// every host back to one release, the stranded canary and batch included.
func TestE2EReplaceDeployHost(t *testing.T) {
	c := newFaultCluster(t, 4, "127.0.80")
	v1 := c.publish("1", faultYAML)
	c.converge("1", v1)
	v2 := c.publish("2", faultYAML)
	c.setSleep("h2", "restart-sleep", "3") // batch 1
	d, log := c.startDeploy("2")
	c.waitFile(filepath.Join(c.dir, "h2", "restarts"), "start "+v2, 60*time.Second, log)
	kill(c.origin) // and never back: its disk is gone
	if code := exitStatus(d.Wait()); code != exitOutcomeUnknown {
		t.Fatalf("deploy exited %d, want %d:\n%s", code, exitOutcomeUnknown, log)
	}
	c.clearSleeps()

	// The replacement: a fresh data directory, the deploy key, --origin,
	// joined through one target.
	nd := startDaemon(t, c.bin, append(c.args("deploy2", "127.0.80.2"), "--origin", "--key", c.key, "--gossip-port", "7946",
		"--join", c.ips["h3"]+":7946")...)
	c.waitMembers(nd, len(c.names)+1, 30*time.Second) // the old origin fails out of the count
	// It learns the roster from the targets and shows up pending in it: the
	// operator, holding the deploy key, enrols it by name (an origin is
	// never approved wholesale) and revokes the lost one.
	deadline0 := time.Now().Add(60 * time.Second)
	for !strings.Contains(runBin(t, c.bin, "hosts", "pending", "--data", nd.data), "deploy2") {
		if time.Now().After(deadline0) {
			t.Fatalf("the new deploy host never saw itself pending:\n%s", runBin(t, c.bin, "status", "--data", nd.data))
		}
		time.Sleep(250 * time.Millisecond)
	}
	runBin(t, c.bin, "hosts", "approve", "--data", nd.data, "deploy2")
	runBin(t, c.bin, "hosts", "revoke", "--data", nd.data, "origin")
	deadline := time.Now().Add(60 * time.Second)
	for {
		out := runStatus(t, c.bin, "--data", nd.data)
		// Both releases are known to it (by their announcements, which
		// gossip state carries): enough to deploy them, since the hosts
		// hold them. (It cannot fetch them itself: an origin never dials.)
		if strings.Contains(out, "MIXED mw") && len(regexp.MustCompile(`(?m)^deploy2 +\S+ +origin +\S+ +mw `).FindAllString(out, -1)) == 2 &&
			!strings.Contains(out, "\norigin ") {
			t.Logf("the new deploy host sees:\n%s", out)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the new deploy host does not see the fleet, its drift and both releases:\n%s", out)
		}
		time.Sleep(250 * time.Millisecond)
	}
	// The repo's scatter.yaml travels in the release: take it from there.
	cfg := filepath.Join(c.dir, "h3", "mw", "releases", v1, "scatter.yaml")
	out, err := exec.Command(c.bin, "deploy", "--data", nd.data, "--config", cfg, "-m", "back to 1 after losing the deploy host", "mw", "1").CombinedOutput()
	if err != nil {
		t.Fatalf("deploy from the new deploy host: %v\n%s", err, out)
	}
	for _, n := range c.names {
		if c.current(n) != v1 {
			t.Fatalf("%s on %s after the new deploy host's deploy:\n%s", n, c.current(n), out)
		}
	}
	t.Logf("converged from the new deploy host:\n%s", out)
}
