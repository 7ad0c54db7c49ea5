package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// netns is a set of network namespaces the test creates and removes: one
// "switch" namespace with a bridge, and one per host joined to it by a veth
// pair, each host with its own address and a tc rate limit on its uplink.
// Traffic stays inside these namespaces.
type netns struct {
	t      *testing.T
	prefix string
	hosts  []string
}

func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

func newNetns(t *testing.T, n int, rate string) *netns {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root; CI runs as root")
	}
	if _, err := exec.LookPath("tc"); err != nil {
		t.Skip("tc not installed (iproute2)")
	}
	ns := &netns{t: t, prefix: fmt.Sprintf("sc%d", os.Getpid()%100000)}
	sw := ns.prefix + "-sw"
	if err := ipCmd("netns", "add", sw); err != nil {
		t.Skipf("cannot create network namespaces here: %v", err)
	}
	t.Cleanup(ns.teardown)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(ipCmd("-n", sw, "link", "add", "br0", "type", "bridge"))
	must(ipCmd("-n", sw, "link", "set", "br0", "up"))
	for i := range n {
		h := fmt.Sprintf("%s-h%d", ns.prefix, i)
		must(ipCmd("netns", "add", h))
		ns.hosts = append(ns.hosts, h)
		v, s := fmt.Sprintf("v%d", i), fmt.Sprintf("s%d", i)
		must(ipCmd("-n", h, "link", "add", v, "type", "veth", "peer", "name", s, "netns", sw))
		must(ipCmd("-n", h, "addr", "add", ns.addr(i)+"/24", "dev", v))
		must(ipCmd("-n", h, "link", "set", v, "up"))
		must(ipCmd("-n", h, "link", "set", "lo", "up"))
		must(ipCmd("-n", sw, "link", "set", s, "master", "br0"))
		must(ipCmd("-n", sw, "link", "set", s, "up"))
		out, err := exec.Command("ip", "netns", "exec", h, "tc", "qdisc", "add", "dev", v, "root", "tbf",
			"rate", rate, "burst", "64kb", "latency", "100ms").CombinedOutput()
		if err != nil {
			t.Fatalf("tc: %v: %s", err, out)
		}
	}
	return ns
}

// addr is host i's address, on a subnet that exists only inside the test's
// namespaces.
func (ns *netns) addr(i int) string { return fmt.Sprintf("10.213.%d.%d", os.Getpid()%200, i+1) }

// keyed builds the binary and makes a deploy key in a fresh directory.
func (ns *netns) keyed() (bin, dir, key string) {
	bin, dir = scatterBinary(ns.t), ns.t.TempDir()
	key = filepath.Join(dir, "deploy.key")
	runBin(ns.t, bin, "keygen", "--out", key)
	return bin, dir, key
}

// seed starts `scatter seed` as host i inside its namespace.
func (ns *netns) seed(bin, dir, key string, i int, name string, extra ...string) *daemon {
	data := filepath.Join(dir, name)
	args := append([]string{"netns", "exec", ns.hosts[i], bin, "--log-level", "info", "seed", "--data", data,
		"--pubkey", key + ".pub", "--name", name, "--bind", ns.addr(i), "--label", "netns"}, extra...)
	return launch(ns.t, data, exec.Command("ip", args...))
}

func (ns *netns) teardown() {
	for _, h := range ns.hosts {
		exec.Command("ip", "netns", "del", h).Run()
	}
	exec.Command("ip", "netns", "del", ns.prefix+"-sw").Run()
}

// End to end on a real network stack: each host is a `scatter seed`
// process in its own namespace with its own address and a tc-shaped
// uplink; the release reaches every host byte-identical.
func TestE2ENetworkNamespaces(t *testing.T) {
	const hosts = 4
	ns := newNetns(t, hosts+1, "40mbit")
	bin, dir, key := ns.keyed()
	start := func(i int, name string, extra ...string) *daemon { return ns.seed(bin, dir, key, i, name, extra...) }
	origin := start(0, "origin", "--origin")
	var ds []*daemon
	for i := 1; i <= hosts; i++ {
		ds = append(ds, start(i, fmt.Sprintf("h%d", i), "--join", ns.addr(0)+":7946"))
	}
	src := filepath.Join(dir, "src")
	runBin(t, bin, "generate", "--size", "8MiB", "--seed", "6", src)
	id := strings.TrimSpace(runBin(t, bin, "publish", "--data", origin.data, "--key", key, "--repo", "mw", "--version", "1", src))
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
	out := runBin(t, bin, "status", "--data", origin.data)
	t.Logf("status:\n%s", out)
}

// Property 4 of the deploy: a host cut off mid-deploy (its namespace's
// link down) is reported unreachable within the action timeout and counted
// against the failure limit; once the link is back, status on the deploy
// host shows it rejoined and flags that it missed the release.
func TestE2EDeployPartition(t *testing.T) {
	const hosts = 4
	ns := newNetns(t, hosts+1, "200mbit")
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
	origin := start(0, "origin", "--origin")
	for i := 1; i <= hosts; i++ {
		start(i, fmt.Sprintf("h%d", i), "--join", ns.addr(0)+":7946")
	}
	yaml := "repo: mw\ncanary: 1\nbatch: 1\nfailure_limit: 1\nchecks: [health]\ntimeouts: {stage: 1m, action: 8s}\n"
	publish := func(version string) string {
		src := filepath.Join(dir, "src"+version)
		runBin(t, bin, "generate", "--size", "1MiB", "--seed", "6", src)
		os.WriteFile(filepath.Join(src, "VERSION"), []byte(version), 0o644)
		os.WriteFile(filepath.Join(src, "scatter.yaml"), []byte(yaml), 0o644)
		return strings.TrimSpace(runBin(t, bin, "publish", "--data", origin.data, "--key", key, "--repo", "mw", "--version", version, src))
	}
	deployArgs := []string{"deploy", "--data", origin.data, "--key", key, "-m", "partition test", "mw"}
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
	if err := ipCmd("-n", ns.hosts[3], "link", "set", "v3", "down"); err != nil {
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
	if err := ipCmd("-n", ns.hosts[3], "link", "set", "v3", "up"); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(90 * time.Second)
	for {
		out := runBin(t, bin, "status", "--data", origin.data)
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
