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
	"sync"
	"testing"
	"time"

	"scatter/artifact"
	"scatter/orchestrate/host"
	"scatter/swarm"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// scatterBinary builds the real binary once per test run.
func scatterBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "scatter-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "scatter")
		cmd := exec.Command("go", "build", "-o", binPath, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

type daemon struct {
	cmd  *exec.Cmd
	data string
	log  *syncBuffer
}

// syncBuffer is a bytes.Buffer safe for the process's writer goroutine and
// the test reading it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startDaemon(t *testing.T, bin string, args ...string) *daemon {
	t.Helper()
	data, admin := "", false
	for i, a := range args {
		if a == "--data" {
			data = args[i+1]
		}
		admin = admin || a == "--admin-addr"
	}
	if !admin {
		// Daemons of one test share the machine's loopback: the default
		// admin port would collide.
		args = append(args, "--admin-addr", "")
	}
	return launch(t, data, exec.Command(bin, append([]string{"--log-level", "info", "seed"}, args...)...))
}

// launch starts a daemon's command, kills it when the test ends (showing
// its log if the test failed), and waits until its control socket answers.
func launch(t *testing.T, data string, cmd *exec.Cmd) *daemon {
	t.Helper()
	d := &daemon{log: &syncBuffer{}, data: data, cmd: cmd}
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		var engine string
		if t.Failed() {
			// Before it dies: which connection waits on what.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			var err error
			if engine, err = host.DialControl(d.data).Engine(ctx); err != nil {
				engine = "unavailable: " + err.Error()
			}
			cancel()
		}
		d.cmd.Process.Kill()
		d.cmd.Wait()
		if t.Failed() {
			t.Logf("daemon %s log:\n%s\nengine:\n%s", d.data, d.log.String(), engine)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := host.DialControl(d.data).Status(context.Background()); err == nil {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon %s did not come up:\n%s", d.data, d.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func runBin(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("scatter %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// runStatus runs `scatter status` and returns what it printed. Exit 7
// and 8 (not ready, a fetch stalled) are status reports too, which tests
// polling for a state go through on the way; anything else fails.
func runStatus(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, err := exec.Command(bin, append([]string{"status"}, args...)...).CombinedOutput()
	if code := exitStatus(err); code != 0 && code != exitUnhealthy && code != exitStalled {
		t.Fatalf("scatter status %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// End to end with real processes on loopback: an origin and three hosts
// join by gossip; `scatter publish` builds and announces; every host stages
// a tree identical to the source; `scatter status` shows it.
func TestE2EPublishAndStage(t *testing.T) {
	bin := scatterBinary(t)
	dir := t.TempDir()
	key := filepath.Join(dir, "deploy.key")
	runBin(t, bin, "keygen", "--out", key)
	ckey := filepath.Join(dir, "cluster.key")
	if err := os.WriteFile(ckey, []byte(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))), 0o600); err != nil {
		t.Fatal(err)
	}
	common := func(name, ip string) []string {
		return []string{"--data", filepath.Join(dir, name), "--pubkey", key + ".pub", "--name", name, "--bind", ip,
			"--gossip-port", "0", "--bt-port", "0", "--http-port", "0", "--cluster-key", ckey, "--label", "e2e"}
	}
	origin := startDaemon(t, bin, append(common("origin", "127.0.0.150"), "--origin", "--key", key)...)
	seed := gossipAddr(t, origin)
	var hosts []*daemon
	for i := range 3 {
		name := fmt.Sprintf("h%d", i)
		hosts = append(hosts, startDaemon(t, bin, append(common(name, fmt.Sprintf("127.0.0.%d", 151+i)), "--join", seed)...))
	}
	enrol(t, bin, origin, key, append(hosts, origin)...)
	src := filepath.Join(dir, "src")
	runBin(t, bin, "generate", "--size", "3MiB", "--seed", "5", src)
	id := strings.TrimSpace(runBin(t, bin, "publish", "--data", origin.data, "--repo", "mw", "--version", "1", "--message", "e2e", src))

	deadline := time.Now().Add(60 * time.Second)
	for {
		staged := 0
		for _, h := range hosts {
			if _, err := os.Stat(filepath.Join(h.data, "mw", "releases", id)); err == nil {
				staged++
			}
		}
		if staged == len(hosts) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d hosts staged %s; status:\n%s", staged, len(hosts), id, runStatus(t, bin, "--data", origin.data))
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, h := range hosts {
		if out, err := exec.Command("diff", "-r", "--no-dereference", src, filepath.Join(h.data, "mw", "releases", id)).CombinedOutput(); err != nil {
			t.Fatalf("%s: diff -r: %v\n%s", h.data, err, out)
		}
	}
	out := runStatus(t, bin, "--data", hosts[0].data)
	for _, want := range []string{"origin", "h0", "h1", "h2", id[:12], "staged"} {
		if !strings.Contains(out, want) {
			t.Fatalf("status lacks %q:\n%s", want, out)
		}
	}
	// The engine as anacrolix sees it: the release's torrents (a full one,
	// and no delta: it has no parent) and their connections. Peers that
	// both hold everything drop their connection (DropMutuallyCompletePeers),
	// so by now there may be none; any that is listed shows its flags.
	out = runBin(t, bin, "status", "--engine", "--data", hosts[0].data)
	m := regexp.MustCompile(`(?m)^(\d+) peer conns:`).FindStringSubmatch(out)
	if !strings.Contains(out, "# Torrents: 1 (0 incomplete)") || m == nil {
		t.Fatalf("status --engine lacks the torrent or its connection count:\n%s", out)
	}
	if m[1] != "0" && !strings.Contains(out, "flags:") {
		t.Fatalf("status --engine lists %s connections without their flags:\n%s", m[1], out)
	}
}

// gossipAddr reads the daemon's gossip address from its start-up line.
func gossipAddr(t *testing.T, d *daemon) string {
	t.Helper()
	for _, line := range strings.Split(d.log.String(), "\n") {
		if i := strings.Index(line, " gossip "); i >= 0 && strings.HasPrefix(line, "scatter seed:") {
			return strings.Fields(line[i+len(" gossip "):])[0]
		}
	}
	t.Fatalf("no gossip address in:\n%s", d.log.String())
	return ""
}

// e2eCluster is an origin (upload-capped) plus hosts, as real processes.
type e2eCluster struct {
	t      *testing.T
	bin    string
	dir    string
	key    string
	ckey   string
	origin *daemon
	seed   string
}

func newE2ECluster(t *testing.T, originArgs ...string) *e2eCluster {
	bin := scatterBinary(t)
	dir := t.TempDir()
	c := &e2eCluster{t: t, bin: bin, dir: dir, key: filepath.Join(dir, "deploy.key"), ckey: filepath.Join(dir, "cluster.key")}
	runBin(t, bin, "keygen", "--out", c.key)
	if err := os.WriteFile(c.ckey, []byte(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{9}, 32))), 0o600); err != nil {
		t.Fatal(err)
	}
	c.origin = startDaemon(t, bin, append(c.args("origin", "127.0.0.160"), append([]string{"--origin", "--key", c.key}, originArgs...)...)...)
	c.seed = gossipAddr(t, c.origin)
	return c
}

func (c *e2eCluster) args(name, ip string) []string {
	return []string{"--data", filepath.Join(c.dir, name), "--pubkey", c.key + ".pub", "--name", name, "--bind", ip,
		"--gossip-port", "0", "--bt-port", "0", "--http-port", "0", "--cluster-key", c.ckey, "--label", "e2e"}
}

// host starts a host and enrols it (and the origin, the first time).
func (c *e2eCluster) host(name, ip string, extra ...string) *daemon {
	d := startDaemon(c.t, c.bin, append(append(c.args(name, ip), "--join", c.seed), extra...)...)
	enrol(c.t, c.bin, c.origin, c.key, c.origin, d)
	return d
}

// releaseStatus reads one release's entry from a daemon's own status.
func releaseStatus(t *testing.T, d *daemon, name, id string) (done, total int64, state swarm.State, fromOrigin, fromPeers int64) {
	s, err := host.DialControl(d.data).Status(context.Background())
	if err != nil {
		return 0, 0, swarm.Queued, 0, 0
	}
	for _, m := range s.Members {
		if m.Name != name || m.Status == nil {
			continue
		}
		for _, r := range m.Status.Repos {
			for _, rel := range r.Releases {
				if rel.Release.String() == id {
					return rel.Done, rel.Total, rel.State, m.Status.ReceivedFromOrigin, m.Status.ReceivedFromPeers
				}
			}
		}
	}
	return 0, 0, swarm.Queued, 0, 0
}

// Property 5: kill -9 a daemon mid-fetch and restart it: it resumes
// without fetching again what it had verified, and its store verifies.
func TestE2ECrashAndResume(t *testing.T) {
	c := newE2ECluster(t, "--upload-rate", "1MiB")
	h := c.host("h1", "127.0.0.161")
	src := filepath.Join(c.dir, "src")
	runBin(t, c.bin, "generate", "--size", "16MiB", "--seed", "8", src)
	id := strings.TrimSpace(runBin(t, c.bin, "publish", "--data", c.origin.data, "--repo", "mw", "--version", "1", src))

	var doneAtKill, total int64
	deadline := time.Now().Add(60 * time.Second)
	for {
		done, tot, _, _, _ := releaseStatus(t, h, "h1", id)
		if tot > 0 && done > tot/3 {
			h.cmd.Process.Kill() // SIGKILL: no cleanup runs
			h.cmd.Wait()
			doneAtKill, total = done, tot
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("fetch did not get a third of the way: %d of %d", done, tot)
		}
		time.Sleep(20 * time.Millisecond)
	}
	h2 := startDaemon(t, c.bin, append(c.args("h1", "127.0.0.161"), "--join", c.seed)...)
	deadline = time.Now().Add(90 * time.Second)
	for {
		_, _, state, fromOrigin, fromPeers := releaseStatus(t, h2, "h1", id)
		if state == swarm.Staged {
			got := fromOrigin + fromPeers
			// What a crash may lose: the last second of chunks not yet in a
			// complete pack (1 MiB/s upload cap) plus pieces in flight.
			slack := int64(1<<20) + 256<<10
			t.Logf("killed at %d of %d bytes; after restart received %d", doneAtKill, total, got)
			if got > total-doneAtKill+slack {
				t.Fatalf("after restart received %d bytes; %d were missing at the kill (slack %d)", got, total-doneAtKill, slack)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("restarted host did not stage %s (state %q)", id, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
	out, err := exec.Command(c.bin, "verify", "--store", filepath.Join(h2.data, "mw"), "--pubkey", c.key+".pub", id).CombinedOutput()
	if err != nil {
		t.Fatalf("store inconsistent after the crash: %v\n%s", err, out)
	}
	if diff, err := exec.Command("diff", "-r", "--no-dereference", src, filepath.Join(h2.data, "mw", "releases", id)).CombinedOutput(); err != nil {
		t.Fatalf("diff -r: %v\n%s", err, diff)
	}
}

// A stock BitTorrent client (aria2c, from Debian's packages), given only the
// .torrent that `scatter torrent` writes, finds scatter hosts through the
// daemon's tracker and downloads the release's data over the peer wire
// protocol (the torrent has no web seeds); the bytes match the store's.
func TestE2EStockClientDownloads(t *testing.T) {
	aria, err := exec.LookPath("aria2c")
	if err != nil {
		t.Skip("aria2c not installed (apt-get install aria2); .ci/run installs it")
	}
	// aria2c connects from 127.0.0.1: only hosts are let in unless a
	// daemon opts in with --allow-clients.
	c := newE2ECluster(t, "--allow-clients", "127.0.0.1/32")
	h := c.host("h1", "127.0.0.171", "--allow-clients", "127.0.0.1/32")
	src := filepath.Join(c.dir, "src")
	runBin(t, c.bin, "generate", "--size", "3MiB", "--seed", "4", src)
	id := strings.TrimSpace(runBin(t, c.bin, "publish", "--data", c.origin.data, "--repo", "mw", "--version", "1", src))
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(h.data, "mw", "releases", id)); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("host did not stage the release")
		}
		time.Sleep(50 * time.Millisecond)
	}
	torrentFile := filepath.Join(c.dir, "release.torrent")
	tor, err := exec.Command(c.bin, "torrent", "--data", h.data, "--repo", "mw", id).Output()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(torrentFile, tor, 0o644); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(tor, []byte("url-list")) {
		t.Fatal("the torrent names a web seed; the test must prove peer-wire transfer")
	}
	magnet := runBin(t, c.bin, "torrent", "--store", filepath.Join(h.data, "mw"), "--magnet", id)
	if !strings.HasPrefix(magnet, "magnet:?xt=urn:btih:") || !strings.Contains(magnet, "announce") {
		t.Fatalf("magnet: %q", magnet)
	}

	out := filepath.Join(c.dir, "aria")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, aria, "--dir="+out, "--seed-time=0", "--enable-dht=false", "--enable-dht6=false",
		"--bt-enable-lpd=false", "--enable-peer-exchange=false", "--bt-stop-timeout=60", "--summary-interval=0",
		"--console-log-level=warn", "--listen-port=51400-51500", "--disable-ipv6=true", torrentFile)
	if log, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("aria2c: %v\n%s", err, log)
	}
	got, err := os.ReadFile(filepath.Join(out, id+".full"))
	if err != nil {
		t.Fatal(err)
	}
	// The expected bytes: the release's frames, in layout order, from the store.
	st, err := artifact.OpenStore(filepath.Join(h.data, "mw"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rid, _ := st.Resolve(id)
	sm, err := st.Manifest(rid)
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.ReadFile(filepath.Join(h.data, "mw", "torrents", id+".full"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := swarm.ParseInfo(info, sm.Table())
	if err != nil {
		t.Fatal(err)
	}
	var want []byte
	for s, err := range l.Chunks {
		if err != nil {
			t.Fatal(err)
		}
		z, err := st.ReadCompressedChunk(s.ID)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, z...)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("aria2c got %d bytes that differ from the release's %d", len(got), len(want))
	}
}

// enrol approves the daemons, the origin's included, as an operator would
// after they joined (`scatter hosts approve`), and waits until each holds
// the resulting roster. Daemons already enrolled are left as they are.
func enrol(t *testing.T, bin string, origin *daemon, key string, ds ...*daemon) {
	t.Helper()
	var names []string
	for _, d := range ds {
		names = append(names, filepath.Base(d.data))
	}
	approve(t, bin, origin, names, ds)
}

// approve enrols the members named as enrol does, and waits until each
// daemon of ds holds the resulting roster.
func approve(t *testing.T, bin string, origin *daemon, names []string, ds []*daemon) {
	t.Helper()
	ctl := host.DialControl(origin.data)
	deadline := time.Now().Add(30 * time.Second)
	var pending []string
	for {
		v, err := ctl.Hosts(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		pending = pending[:0]
		known := 0
		for _, name := range names {
			for _, p := range v.Pending {
				if p.Name == name && !p.NewKey {
					pending = append(pending, name)
					known++
				}
			}
			for _, e := range v.Enrolled {
				if e.Name == name && e.Trust == host.TrustEnrolled {
					known++
				}
			}
		}
		if known == len(names) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not every member of %v showed up pending or enrolled: %+v", names, v)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(pending) > 0 {
		runBin(t, bin, append([]string{"hosts", "approve", "--data", origin.data}, pending...)...)
	}
	v, err := ctl.Hosts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		for {
			st, err := host.DialControl(d.data).Status(context.Background())
			if err == nil && st.Roster >= v.Version {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never got roster v%d: %v", d.data, v.Version, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}
