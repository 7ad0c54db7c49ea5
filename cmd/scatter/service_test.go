package main

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"scatter/artifact/core"
	"scatter/orchestrate/host"
	"scatter/orchestrate/version"
	"scatter/swarm"
)

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"version"}} {
		out := mustRun(t, args...)
		if !strings.HasPrefix(out, "scatter ") || !strings.Contains(out, runtime.Version()) {
			t.Errorf("scatter %v: %q", args, out)
		}
	}
	var in version.Info
	if err := json.Unmarshal([]byte(mustRun(t, "version", "--json")), &in); err != nil || in.Go != runtime.Version() || in.Version == "" {
		t.Fatalf("version --json: %+v, %v", in, err)
	}
	if _, _, code := run(t, "nonsense"); code != exitUsage {
		t.Errorf("an unknown command: exit %d, want %d", code, exitUsage)
	}
}

// Every path and address flag falls back to SCATTER_<FLAG>, and --help says
// so.
func TestEnvFallbacks(t *testing.T) {
	dir := t.TempDir()
	key, store, src := filepath.Join(dir, "deploy.key"), filepath.Join(dir, "store"), filepath.Join(dir, "src")
	mustRun(t, "keygen", "--out", key)
	mustRun(t, "generate", "--size", "1MiB", src)
	t.Setenv("SCATTER_STORE", store)
	t.Setenv("SCATTER_KEY", key)
	mustRun(t, "build", "--repo", "mw", "--version", "1", src)
	if out := mustRun(t, "releases"); !strings.Contains(out, "mw") {
		t.Fatalf("releases with SCATTER_STORE: %s", out)
	}
	// --data: SCATTER_DATA names the socket status dials.
	data := filepath.Join(dir, "data")
	t.Setenv("SCATTER_DATA", data)
	_, errOut, code := run(t, "status")
	if code != exitUnhealthy || !strings.Contains(errOut, filepath.Join(data, "control.sock")) {
		t.Fatalf("status with SCATTER_DATA and no daemon: exit %d, %s", code, errOut)
	}
	help := mustRun(t, "seed", "--help")
	for _, v := range []string{"$SCATTER_DATA", "$SCATTER_CONFIG", "$SCATTER_PUBKEY", "$SCATTER_CLUSTER_KEY", "$SCATTER_BIND",
		"$SCATTER_JOIN", "$SCATTER_ADMIN_ADDR", "/var/lib/scatter", "/etc/scatter/seed.yaml", "127.0.0.1:7948"} {
		if !strings.Contains(help, v) {
			t.Errorf("seed --help does not mention %s", v)
		}
	}
	// SCATTER_CONFIG names the seed config; a bad one is a usage error.
	bad := filepath.Join(dir, "seed.yaml")
	os.WriteFile(bad, []byte("upload_rate: 5 apples\n"), 0o644)
	t.Setenv("SCATTER_CONFIG", bad)
	_, errOut, code = run(t, "seed", "--pubkey", key+".pub", "--insecure-no-encryption")
	if code != exitUsage || !strings.Contains(errOut, "seed.yaml:1: upload_rate") {
		t.Fatalf("seed with a bad SCATTER_CONFIG: exit %d, %s", code, errOut)
	}
}

// A config file that is missing or wrong exits 2, like a bad flag; sizes
// read the same in flags and files.
func TestConfigErrorsAreUsageErrors(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "deploy.key")
	mustRun(t, "keygen", "--out", key)
	for _, c := range []struct{ name, yaml, want string }{
		{"missing", "", "no such file"},
		{"bad key", "uplod_rate: 1MiB\n", "uplod_rate"},
		{"bad size", "download_rate: 1.5 MiBs\n", "download_rate"},
	} {
		path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".yaml")
		if c.yaml != "" {
			os.WriteFile(path, []byte(c.yaml), 0o644)
		}
		_, errOut, code := run(t, "seed", "--config", path, "--data", dir, "--pubkey", key+".pub", "--insecure-no-encryption")
		if code != exitUsage || !strings.Contains(errOut, c.want) {
			t.Errorf("%s: exit %d, %q; want %d naming %q", c.name, code, errOut, exitUsage, c.want)
		}
	}
	_, errOut, code := run(t, "seed", "--data", dir, "--pubkey", key+".pub", "--insecure-no-encryption", "--upload-rate", "lots")
	if code != exitUsage || !strings.Contains(errOut, "--upload-rate") {
		t.Errorf("--upload-rate lots: exit %d, %q", code, errOut)
	}
}

// The daemon's JSON log: every line is a JSON object with time, level and
// msg, and the daemon's lines name the host; the default level is info.
// Then status against it: builds shown, exit 0 when healthy.
func TestSeedJSONLogAndStatus(t *testing.T) {
	dir := t.TempDir()
	key, data := filepath.Join(dir, "deploy.key"), filepath.Join(dir, "data")
	mustRun(t, "keygen", "--out", key)
	_ = os.WriteFile(filepath.Join(dir, "none.yaml"), nil, 0o644)
	var stderr syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- newApp(&syncBuffer{}, &stderr).RunContext(ctx, []string{"scatter", "--log-format", "json", "seed",
			"--config", filepath.Join(dir, "none.yaml"), "--data", data, "--pubkey", key + ".pub", "--name", "j1", "--insecure-no-encryption",
			"--bind", "127.0.0.140", "--gossip-port", "0", "--bt-port", "0", "--http-port", "0", "--admin-addr", "127.0.0.140:0"})
	}()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(stderr.String(), `"msg":"started"`) {
		select {
		case err := <-done:
			t.Fatalf("seed ended: %v\n%s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no start-up record:\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	out, errOut, code := run(t, "status", "--data", data)
	if code != 0 || !strings.Contains(out, "BUILD") || !strings.Contains(out, version.Get().Short()) {
		t.Errorf("status of a healthy daemon: exit %d\n%s%s", code, out, errOut)
	}
	if strings.Contains(out, "different builds") {
		t.Errorf("one daemon, yet a mixed-build warning:\n%s", out)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("seed: %v", err)
	}
	sc := bufio.NewScanner(strings.NewReader(stderr.String()))
	lines := 0
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("not a JSON line: %q", sc.Text())
		}
		for _, k := range []string{"time", "level", "msg"} {
			if rec[k] == nil {
				t.Errorf("line without %s: %q", k, sc.Text())
			}
		}
		if rec["msg"] == "started" && (rec["host"] != "j1" || rec["admin"] == "" || rec["build"] == "") {
			t.Errorf("start-up record: %q", sc.Text())
		}
		if rec["level"] == "DEBUG" {
			t.Errorf("a debug line at the default level: %q", sc.Text())
		}
		lines++
	}
	if lines < 2 { // started, and leaving at info
		t.Errorf("%d log lines; the daemon logs at info by default:\n%s", lines, stderr.String())
	}
}

// status exits 7 when the local daemon is not ready, 8 when a fetch is
// stalled, and warns when members run different builds.
func TestStatusExitAndMixedBuilds(t *testing.T) {
	healthy := host.Health{Ready: true, Joined: true}
	member := func(name, build, stuck string) host.MemberStatus {
		st := &swarm.Status{Repos: []swarm.RepoStatus{{Repo: "mw", Releases: []swarm.ReleaseStatus{
			{Release: core.ReleaseID{1}, State: swarm.Fetching, Stuck: stuck}}}}}
		return host.MemberStatus{Name: name, Build: build, Status: st}
	}
	for _, c := range []struct {
		name string
		s    host.ClusterStatus
		want int
	}{
		{"healthy", host.ClusterStatus{Health: healthy, Members: []host.MemberStatus{member("a", "v1", "")}}, 0},
		{"alone", host.ClusterStatus{Health: host.Health{Store: ""}, Members: []host.MemberStatus{member("a", "v1", "")}}, exitUnhealthy},
		{"store", host.ClusterStatus{Health: host.Health{Joined: true, Store: "permission denied"}}, exitUnhealthy},
		{"stalled elsewhere", host.ClusterStatus{Health: healthy, Members: []host.MemberStatus{
			member("a", "v1", ""), member("b", "v1", "no peers: membership knows no other host")}}, exitStalled},
	} {
		if got := exitCode(statusExit(&c.s)); got != c.want {
			t.Errorf("%s: exit %d, want %d", c.name, got, c.want)
		}
	}
	var b strings.Builder
	printVersions(&b, &host.ClusterStatus{Members: []host.MemberStatus{member("a", "v1", ""), member("b", "v2", ""), member("c", "v1", "")}})
	if !strings.Contains(b.String(), "2 different builds") || !strings.Contains(b.String(), "v2: 1 host(s): b") {
		t.Errorf("mixed builds:\n%s", b.String())
	}
}
