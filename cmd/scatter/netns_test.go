package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"scatter/bench/netns"
)

// netnsCluster is a bench/netns network for a test: removed when the test
// ends, skipped with the reason when namespaces cannot be made here.
type netnsCluster struct {
	t *testing.T
	*netns.Net
}

func newNetns(t *testing.T, n int, rate int64) *netnsCluster {
	t.Helper()
	nw, err := netns.New(context.Background(), netns.Config{Hosts: n, Rate: rate})
	if errors.Is(err, netns.ErrUnavailable) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nw.Close() })
	return &netnsCluster{t: t, Net: nw}
}

// keyed builds the binary and makes a deploy key in a fresh directory.
func (ns *netnsCluster) keyed() (bin, dir, key string) {
	bin, dir = scatterBinary(ns.t), ns.t.TempDir()
	key = filepath.Join(dir, "deploy.key")
	runBin(ns.t, bin, "keygen", "--out", key)
	return bin, dir, key
}

// seed starts `scatter seed` as host i inside its namespace.
func (ns *netnsCluster) seed(bin, dir, key string, i int, name string, extra ...string) *daemon {
	data := filepath.Join(dir, name)
	ckey := filepath.Join(dir, "cluster.key")
	if _, err := os.Stat(ckey); err != nil {
		if err := os.WriteFile(ckey, []byte(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{13}, 32))), 0o600); err != nil {
			ns.t.Fatal(err)
		}
	}
	args := append([]string{"--log-level", "info", "seed", "--data", data, "--cluster-key", ckey,
		"--pubkey", key + ".pub", "--name", name, "--bind", ns.Addr(i), "--label", "netns"}, extra...)
	return launch(ns.t, data, ns.Command(i, bin, args...))
}

// End to end on a real network stack: each host is a `scatter seed`
// process in its own namespace with its own address and a tc-shaped
// uplink; the release reaches every host byte-identical.
func TestE2ENetworkNamespaces(t *testing.T) {
	const hosts = 4
	ns := newNetns(t, hosts+1, 5e6)
	bin, dir, key := ns.keyed()
	start := func(i int, name string, extra ...string) *daemon { return ns.seed(bin, dir, key, i, name, extra...) }
	origin := start(0, "origin", "--origin", "--key", key)
	var ds []*daemon
	for i := 1; i <= hosts; i++ {
		ds = append(ds, start(i, fmt.Sprintf("h%d", i), "--join", ns.Addr(0)+":7946"))
	}
	enrol(t, bin, origin, key, append(ds, origin)...)
	src := filepath.Join(dir, "src")
	runBin(t, bin, "generate", "--size", "8MiB", "--seed", "6", src)
	id := strings.TrimSpace(runBin(t, bin, "publish", "--data", origin.data, "--repo", "mw", "--version", "1", src))
	deadline := time.Now().Add(120 * time.Second)
	for {
		staged := 0
		for _, d := range ds {
			if _, err := os.Stat(filepath.Join(d.data, "mw", "releases", id)); err == nil {
				staged++
			}
		}
		if staged == hosts {
			break
		}
		if time.Now().After(deadline) {
			out, _ := exec.Command(bin, "status", "--data", origin.data).CombinedOutput()
			t.Fatalf("%d of %d hosts staged the release; status:\n%s", staged, hosts, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, d := range ds {
		if out, err := exec.Command("diff", "-r", "--no-dereference", src, filepath.Join(d.data, "mw", "releases", id)).CombinedOutput(); err != nil {
			t.Fatalf("%s: diff -r: %v\n%s", d.data, err, out)
		}
	}
	out := runStatus(t, bin, "--data", origin.data)
	t.Logf("status:\n%s", out)
}

// Property 4 of the deploy: a host cut off mid-deploy (its namespace's
// link down) is reported unreachable within the action timeout and counted
// against the failure limit; once the link is back, status on the deploy
// host shows it rejoined and flags that it missed the release.
func TestE2EDeployPartition(t *testing.T) {
	const hosts = 4
	ns := newNetns(t, hosts+1, 25e6)
	bin, dir, key := ns.keyed()
	start := func(i int, name string, extra ...string) *daemon {
		cfg := filepath.Join(dir, name+".yaml")
		os.WriteFile(cfg, []byte(`repos:
  mw:
    actions:
      restart: {command: [/bin/sh, -c, 'sleep 1']}
      health: {command: [/bin/true]}
`), 0o644)
		return ns.seed(bin, dir, key, i, name, append([]string{"--config", cfg}, extra...)...)
	}
	origin := start(0, "origin", "--origin", "--key", key)
	all := []*daemon{origin}
	for i := 1; i <= hosts; i++ {
		all = append(all, start(i, fmt.Sprintf("h%d", i), "--join", ns.Addr(0)+":7946"))
	}
	enrol(t, bin, origin, key, all...)
	yaml := "repo: mw\ncanary: 1\nbatch: 1\nfailure_limit: 1\nchecks: [health]\ntimeouts: {stage: 1m, action: 8s}\n"
	publish := func(version string) string {
		src := filepath.Join(dir, "src"+version)
		runBin(t, bin, "generate", "--size", "1MiB", "--seed", "6", src)
		os.WriteFile(filepath.Join(src, "VERSION"), []byte(version), 0o644)
		cfg := filepath.Join(dir, "scatter.yaml")
		os.WriteFile(cfg, []byte(yaml), 0o644)
		return strings.TrimSpace(runBin(t, bin, "publish", "--data", origin.data, "--repo", "mw", "--version", version, "--config", cfg, src))
	}
	deployArgs := []string{"deploy", "--data", origin.data, "-m", "partition test", "mw"}
	publish("1")
	if out, err := exec.Command(bin, deployArgs...).CombinedOutput(); err != nil {
		t.Fatalf("deploy 1: %v\n%s", err, out)
	}
	v2 := publish("2")
	d := exec.Command(bin, append(deployArgs, "2")...)
	log := &syncBuffer{}
	d.Stdout, d.Stderr = log, log
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	// h3 is batch 2: cut it off while batch 1 runs.
	deadline := time.Now().Add(90 * time.Second)
	for !strings.Contains(log.String(), "batch 1:") {
		if time.Now().After(deadline) {
			d.Process.Kill()
			t.Fatalf("deploy never reached batch 1:\n%s", log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := ns.SetLink(3, false); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	err := d.Wait()
	took := time.Since(cut)
	if err != nil {
		t.Fatalf("deploy with one unreachable host within the limit of 1 should succeed: %v\n%s", err, log)
	}
	if !strings.Contains(log.String(), "h3  batch 2  no ack") || !strings.Contains(log.String(), "no ack within 8s") {
		t.Fatalf("summary does not report h3 unreachable:\n%s", log)
	}
	if took > 40*time.Second {
		t.Fatalf("the deploy took %v after the cut: the unreachable host held it up", took)
	}
	t.Logf("deploy ended %v after the cut:\n%s", took.Round(time.Millisecond), log)
	if err := ns.SetLink(3, true); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(90 * time.Second)
	for {
		out := runStatus(t, bin, "--data", origin.data)
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) > 3 && f[0] == "h3" && f[1] == "mw" && strings.Contains(line, "DRIFT: the fleet was deployed to "+v2[:12]) {
				t.Logf("status after the partition healed:\n%s", out)
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("status does not show h3 back with its drift:\n%s", out)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
