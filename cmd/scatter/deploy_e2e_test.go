package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"scatter/artifact/datadir"
	"scatter/orchestrate/agent"
	"scatter/orchestrate/deploy"
)

// deployCluster is an origin and targets as real `scatter seed` processes
// whose seed.yaml defines the repo's actions: restart logs and sleeps as
// long as DATA/restart-sleep says; the health check fails for a release
// while DATA/fail-<release> exists.
type deployCluster struct {
	*e2eCluster
	hosts map[string]*daemon
	names []string
	ips   map[string]string
}

func newDeployCluster(t *testing.T, n int, originArgs ...string) *deployCluster {
	c := &deployCluster{e2eCluster: newE2ECluster(t, append([]string{"--admin-addr", "127.0.0.160:0"}, originArgs...)...), hosts: map[string]*daemon{}, ips: map[string]string{}}
	for i := range n {
		name := fmt.Sprintf("h%d", i+1)
		c.names = append(c.names, name)
		c.ips[name] = fmt.Sprintf("127.0.0.%d", 170+i)
		c.startHost(name)
	}
	return c
}

func (c *deployCluster) startHost(name string, extra ...string) {
	data := filepath.Join(c.dir, name)
	os.MkdirAll(data, 0o755)
	cfg := fmt.Sprintf(`repos:
  mw:
    actions:
      restart:
        command: [/bin/sh, -c, 'echo "start $SCATTER_RELEASE" >> %[1]s/restarts; sleep $(cat %[1]s/restart-sleep 2>/dev/null || echo 0); echo "done $SCATTER_RELEASE" >> %[1]s/restarts']
        timeout: 30s
      health:
        command: [/bin/sh, -c, 'if [ -e %[1]s/fail-$SCATTER_RELEASE ]; then echo "HTTP 503 from /health"; exit 7; fi']
        timeout: 10s
`, data)
	path := filepath.Join(c.dir, name+".yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		c.t.Fatal(err)
	}
	c.hosts[name] = c.host(name, c.ips[name], append([]string{"--config", path}, extra...)...)
}

func (c *deployCluster) publish(version, scatterYAML string) string {
	c.t.Helper()
	src := filepath.Join(c.dir, "src-"+version)
	runBin(c.t, c.bin, "generate", "--size", "1MiB", "--seed", "3", src)
	os.WriteFile(filepath.Join(src, "VERSION"), []byte(version), 0o644)
	// The operator's config travels in the release, and is named: a
	// scatter.yaml inside SRC is obeyed only when named.
	cfg := filepath.Join(src, "scatter.yaml")
	os.WriteFile(cfg, []byte(scatterYAML), 0o644)
	cmd := exec.Command(c.bin, "publish", "--data", c.origin.data, "--repo", "mw", "--version", version, "--config", cfg, src)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	out, err := cmd.Output() // stdout is the release ID; prepare hooks log to stderr
	if err != nil {
		c.t.Fatalf("publish: %v\n%s", err, stderr.String())
	}
	id := strings.TrimSpace(string(out))
	c.waitStaged(id)
	return id
}

func (c *deployCluster) waitStaged(id string) {
	c.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for _, name := range c.names {
		for {
			if _, err := os.Stat(filepath.Join(c.dir, name, "mw", "releases", id)); err == nil {
				break
			}
			if time.Now().After(deadline) {
				c.t.Fatalf("%s did not stage %s", name, id)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func (c *deployCluster) deployCmd(args ...string) *exec.Cmd {
	return exec.Command(c.bin, append([]string{"deploy", "--data", c.origin.data}, args...)...)
}

func (c *deployCluster) current(name string) string {
	return currentOf(c.t, filepath.Join(c.dir, name))
}

// currentOf is the release that repo mw runs in data directory data, ""
// if none.
func currentOf(t *testing.T, data string) string {
	t.Helper()
	id, err := agent.ReadLink(datadir.Data(data).Repo("mw"), datadir.CurrentLink)
	if err != nil {
		t.Fatal(err)
	}
	if id.IsZero() {
		return ""
	}
	return id.String()
}

func (c *deployCluster) audit() []deploy.Event {
	f, err := os.Open(filepath.Join(c.origin.data, "mw", "audit.jsonl"))
	if err != nil {
		c.t.Fatal(err)
	}
	defer f.Close()
	var out []deploy.Event
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var e deploy.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			c.t.Fatalf("audit log line %q: %v", sc.Text(), err)
		}
		out = append(out, e)
	}
	return out
}

// lastDeploy returns the audit events of the newest deploy.
func lastDeploy(events []deploy.Event) []deploy.Event {
	for i := len(events) - 1; i >= 0; i-- {
		if events[i].Event == "start" {
			return events[i:]
		}
	}
	return nil
}

const scatterYAML = `repo: mw
canary: 1
batch: 1
failure_limit: 0
checks: [health]
timeouts: {stage: 1m, action: 20s}
hooks:
  prepare:
    - [/bin/sh, -c, 'echo prepared > PREPARED']
`

func exitStatus(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// The CLI end to end: publish runs the prepare hook and saves scatter.yaml;
// deploy --dry-run prints the plan; deploy promotes canary then batches;
// a failing canary check rolls back (exit 4) with the check's output;
// `scatter rollback` returns the fleet to the previous release.
func TestE2EDeployCanaryRollback(t *testing.T) {
	c := newDeployCluster(t, 3)
	v1 := c.publish("1", scatterYAML)
	if _, err := os.Stat(filepath.Join(c.dir, "h1", "mw", "releases", v1, "PREPARED")); err != nil {
		t.Fatalf("the prepare hook's output is not in the release: %v", err)
	}
	plan := runBin(t, c.bin, "deploy", "--data", c.origin.data, "-m", "plan", "--dry-run", "mw")
	for _, want := range []string{"dry run", "canary: h1", "batch 1: h2", "batch 2: h3", "restart: 3 hosts", "checks: health"} {
		if !strings.Contains(plan, want) {
			t.Fatalf("dry run lacks %q:\n%s", want, plan)
		}
	}
	if c.current("h1") != "" {
		t.Fatal("dry run changed current")
	}
	out, err := c.deployCmd("-m", "first", "mw").CombinedOutput()
	if err != nil {
		t.Fatalf("deploy v1: %v\n%s", err, out)
	}
	for _, name := range c.names {
		if c.current(name) != v1 {
			t.Fatalf("%s not on v1 after deploy:\n%s", name, out)
		}
	}
	ev := lastDeploy(c.audit())
	var ph []string
	for _, e := range ev {
		if e.Event == "phase" {
			ph = append(ph, e.Phase+":"+strings.Join(e.Hosts, ","))
		}
	}
	if got := strings.Join(ph, " "); got != "stage:h1,h2,h3 canary:h1 batch 1:h2 batch 2:h3" {
		t.Fatalf("audit phases %s", got)
	}
	if e := ev[0]; e.User == "" || e.Message != "first" || e.Release.String() != v1 {
		t.Fatalf("audit start %+v", e)
	}

	v2 := c.publish("2", scatterYAML)
	os.WriteFile(filepath.Join(c.dir, "h1", "fail-"+v2), nil, 0o644)
	out, err = c.deployCmd("-m", "second", "mw", "2").CombinedOutput()
	if code := exitStatus(err); code != exitDeployFailed {
		t.Fatalf("deploy with a failing canary: exit %d, want %d\n%s", code, exitDeployFailed, out)
	}
	for _, want := range []string{"ROLLED BACK", "h1  canary  check health  exit 7", "| HTTP 503 from /health"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("summary lacks %q:\n%s", want, out)
		}
	}
	for _, name := range c.names {
		if c.current(name) != v1 {
			t.Fatalf("%s on %s after the canary failed, want v1:\n%s", name, c.current(name), out)
		}
	}
	// Now deploy v2 for real, then roll the fleet back to the previous one.
	os.Remove(filepath.Join(c.dir, "h1", "fail-"+v2))
	if out, err := c.deployCmd("-m", "third", "mw", v2[:10]).CombinedOutput(); err != nil {
		t.Fatalf("deploy v2: %v\n%s", err, out)
	}
	out, err = exec.Command(c.bin, "rollback", "--data", c.origin.data, "mw").CombinedOutput()
	if err != nil {
		t.Fatalf("rollback: %v\n%s", err, out)
	}
	for _, name := range c.names {
		if c.current(name) != v1 {
			t.Fatalf("%s on %s after rollback:\n%s", name, c.current(name), out)
		}
	}
	if e := lastDeploy(c.audit())[0]; e.What != "rollback" {
		t.Fatalf("audit records %q, want rollback", e.What)
	}
	// The origin daemon's metrics counted those deploys, which ran in
	// processes of their own: v1, v2 and the rollback succeeded, one was
	// rolled back; phases begun and the acks it relayed.
	m := scrapeMetrics(t, "http://"+adminAddr(t, c.origin)+"/metrics")
	for _, want := range []string{
		`scatter_deploys_total{outcome="success",repo="mw"} 3`,
		`scatter_deploys_total{outcome="rolled_back",repo="mw"} 1`,
		`scatter_deploy_phases_total{phase="canary",repo="mw"} 4`,
	} {
		if !strings.Contains(m, want+"\n") {
			t.Errorf("origin metrics lack %s:\n%s", want, grepLines(m, "scatter_deploy"))
		}
	}
	if !strings.Contains(m, `scatter_acks_received_total{repo="mw",result="ok"}`) {
		t.Errorf("origin metrics count no acks:\n%s", grepLines(m, "scatter_acks"))
	}
}

// adminAddr reads the daemon's admin listener from its start-up line.
func adminAddr(t *testing.T, d *daemon) string {
	t.Helper()
	for _, line := range strings.Split(d.log.String(), "\n") {
		if i := strings.Index(line, ", admin "); i >= 0 && strings.HasPrefix(line, "scatter seed:") {
			return strings.TrimSpace(line[i+len(", admin "):])
		}
	}
	t.Fatalf("no admin address in:\n%s", d.log.String())
	return ""
}

func scrapeMetrics(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %v %s", url, err, resp.Status)
	}
	return string(b)
}

func grepLines(s, prefix string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// Property 7 and the lock: a second deploy is refused naming the holder;
// `scatter abort` (SIGINT to the deploy) mid-batch starts no further batch,
// rolls back, exits 130, and the audit log records it.
func TestE2EDeployLockAndAbort(t *testing.T) {
	c := newDeployCluster(t, 3)
	v1 := c.publish("1", scatterYAML)
	if out, err := c.deployCmd("-m", "first", "mw").CombinedOutput(); err != nil {
		t.Fatalf("deploy v1: %v\n%s", err, out)
	}
	v2 := c.publish("2", scatterYAML)
	for _, name := range c.names {
		os.WriteFile(filepath.Join(c.dir, name, "restart-sleep"), []byte("2"), 0o644)
	}
	d := c.deployCmd("-m", "slow one", "mw", "2")
	log := &syncBuffer{}
	d.Stdout, d.Stderr = log, log
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(log.String(), "batch 1:") {
		if time.Now().After(deadline) {
			d.Process.Kill()
			t.Fatalf("deploy never reached batch 1:\n%s", log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	out, err := c.deployCmd("-m", "impatient", "mw", "2").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "deploy lock held by") || !strings.Contains(string(out), `"slow one"`) {
		t.Fatalf("second deploy: %v\n%s", err, out)
	}
	if out, err := exec.Command(c.bin, "abort", "--data", c.origin.data, "mw").CombinedOutput(); err != nil {
		t.Fatalf("abort: %v\n%s", err, out)
	}
	err = d.Wait()
	if code := exitStatus(err); code != exitInterrupted {
		t.Fatalf("aborted deploy exited %d, want 130:\n%s", code, log)
	}
	ev := lastDeploy(c.audit())
	aborted := false
	for _, e := range ev {
		aborted = aborted || e.Event == "abort"
		if e.Event == "phase" && e.Phase == "batch 2" {
			t.Fatalf("batch 2 started after the abort:\n%s", log)
		}
	}
	if last := ev[len(ev)-1]; !aborted || last.Event != "done" || last.Result != "aborted" {
		t.Fatalf("audit log: aborted %v, last %+v", aborted, last)
	}
	for _, name := range c.names {
		if c.current(name) != v1 {
			t.Fatalf("%s on %s after abort with rollback, want v1", name, c.current(name))
		}
	}
	_ = v2
}

// Property 6: kill -9 of a target daemon while it promotes: `current`
// names a complete release afterwards; the deploy reports the host
// unreachable and rolls back the others; once the host is back, status
// flags its drift.
func TestE2EKillDuringPromote(t *testing.T) {
	c := newDeployCluster(t, 2)
	v1 := c.publish("1", scatterYAML)
	if out, err := c.deployCmd("-m", "first", "mw").CombinedOutput(); err != nil {
		t.Fatalf("deploy v1: %v\n%s", err, out)
	}
	v2 := c.publish("2", strings.Replace(scatterYAML, "action: 20s", "action: 6s", 1))
	os.WriteFile(filepath.Join(c.dir, "h1", "restart-sleep"), []byte("30"), 0o644)
	d := c.deployCmd("-m", "doomed", "mw", "2")
	log := &syncBuffer{}
	d.Stdout, d.Stderr = log, log
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	restarts := filepath.Join(c.dir, "h1", "restarts")
	deadline := time.Now().Add(60 * time.Second)
	for {
		b, _ := os.ReadFile(restarts)
		if strings.Contains(string(b), "start "+v2) {
			break
		}
		if time.Now().After(deadline) {
			d.Process.Kill()
			t.Fatalf("h1 never started restarting into v2:\n%s", log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	h1 := c.hosts["h1"]
	_, gossipPort, _ := strings.Cut(strings.TrimSuffix(gossipAddr(t, h1), ","), ":")
	h1.cmd.Process.Signal(syscall.SIGKILL)
	h1.cmd.Wait()
	cur := c.current("h1")
	if cur != v1 && cur != v2 {
		t.Fatalf("current names %q, neither release", cur)
	}
	src := filepath.Join(c.dir, "src-2")
	if cur == v1 {
		src = filepath.Join(c.dir, "src-1")
	}
	// The canary is h1; prepare hooks wrote PREPARED into each source.
	if out, err := exec.Command("diff", "-r", "--no-dereference", src, filepath.Join(c.dir, "h1", "mw", "current")+"/").CombinedOutput(); err != nil {
		t.Fatalf("current is not a complete release: %v\n%s", err, out)
	}
	err := d.Wait()
	if code := exitStatus(err); code != exitDeployFailed && code != exitRollbackFailed {
		t.Fatalf("deploy exited %d:\n%s", code, log)
	}
	if !strings.Contains(log.String(), "h1") || !strings.Contains(log.String(), "no ack") {
		t.Fatalf("summary does not report h1 unreachable:\n%s", log)
	}
	if c.current("h2") != v1 {
		t.Fatalf("h2 left on %s", c.current("h2"))
	}
	// Back up: status on the deploy host shows h1's state and flags drift
	// from v1 if h1 was left on v2.
	os.Remove(filepath.Join(c.dir, "h1", "restart-sleep"))
	// Back on its old gossip address: memberlist lets a name come back
	// at the same address at once.
	c.startHost("h1", "--gossip-port", gossipPort)
	if c.current("h1") == v2 {
		deadline := time.Now().Add(30 * time.Second)
		for {
			out := runStatus(t, c.bin, "--data", c.origin.data)
			if strings.Contains(out, "DRIFT") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("status does not flag h1's drift:\n%s", out)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// A source tree cannot configure its own deploy: its scatter.yaml, whose
// prepare hook would copy the deploy key and whose empty checks and
// generous failure limit would pass anything, is reported and ignored.
// The hook does not run, the installed config stays, and its check still
// fails the canary.
func TestE2ESourceConfigNotObeyed(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes; skipped under -short")
	}
	c := newDeployCluster(t, 2)
	c.publish("1", scatterYAML)
	installed := filepath.Join(c.origin.data, "mw", "scatter.yaml")
	before, err := os.ReadFile(installed)
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(c.dir, "src-evil")
	runBin(t, c.bin, "generate", "--size", "1MiB", "--seed", "5", src)
	stolen := filepath.Join(c.dir, "stolen.key")
	evil := fmt.Sprintf("repo: mw\ncanary: 0\nfailure_limit: 100%%\nchecks: []\nhooks:\n  prepare:\n    - [/bin/sh, -c, 'cp %s %s; touch RAN']\n", c.key, stolen)
	os.WriteFile(filepath.Join(src, "scatter.yaml"), []byte(evil), 0o644)
	cmd := exec.Command(c.bin, "publish", "--data", c.origin.data, "--repo", "mw", "--version", "2", src)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("publish: %v\n%s", err, stderr.String())
	}
	v2 := strings.TrimSpace(string(out))
	if !strings.Contains(stderr.String(), "was not used") || strings.Contains(stderr.String(), "prepare: /bin/sh -c cp") {
		t.Fatalf("publish does not report the source's config, or ran a hook:\n%s", stderr.String())
	}
	for _, p := range []string{stolen, filepath.Join(src, "RAN")} {
		if _, err := os.Stat(p); err == nil {
			t.Fatalf("the source's prepare hook ran: %s exists", p)
		}
	}
	if after, _ := os.ReadFile(installed); string(after) != string(before) {
		t.Fatalf("the source's scatter.yaml replaced the installed one:\n%s", after)
	}
	c.waitStaged(v2)
	os.WriteFile(filepath.Join(c.dir, "h1", "fail-"+v2), nil, 0o644)
	out, err = c.deployCmd("-m", "evil", "mw", v2).CombinedOutput()
	if code := exitStatus(err); code != exitDeployFailed || !strings.Contains(string(out), "check health") {
		t.Fatalf("deploy of the release: exit %d, want %d with the installed check failing:\n%s", code, exitDeployFailed, out)
	}
}

// A host whose clock is 5 minutes behind refuses the deploy's commands as
// issued in the future; its ack carries its clock, so the deploy names the
// skew as the cause, and status shows each host's clock against the deploy
// host's.
func TestE2EClockSkew(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes; skipped under -short")
	}
	c := newDeployCluster(t, 1)
	c.names = append(c.names, "h2")
	c.ips["h2"] = "127.0.0.179"
	c.startHost("h2", "--clock-offset", "-5m")
	c.publish("1", scatterYAML)
	deadline := time.Now().Add(30 * time.Second)
	for {
		out := runBin(t, c.bin, "status", "--data", c.origin.data)
		h1, h2 := statusLine(out, "h1"), statusLine(out, "h2")
		if strings.Contains(h2, " -5m0") && strings.Contains(h1, " +0") && strings.Contains(out, "CLOCK") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status does not show h2 5 minutes behind:\n%s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	out, err := c.deployCmd("-m", "skewed", "mw").CombinedOutput()
	if code := exitStatus(err); code != exitDeployFailed {
		t.Fatalf("deploy: exit %d, want %d:\n%s", code, exitDeployFailed, out)
	}
	if !strings.Contains(string(out), "clock skew: h2's clock is 5m0s behind the deploy host's") {
		t.Fatalf("the deploy does not name the skew:\n%s", out)
	}
	t.Logf("deploy:\n%s", out)
}

// statusLine is the first line of status output about host.
func statusLine(out, host string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, host+" ") {
			return l
		}
	}
	return ""
}
