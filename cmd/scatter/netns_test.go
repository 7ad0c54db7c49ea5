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
	bin := scatterBinary(t)
	dir := t.TempDir()
	key := filepath.Join(dir, "deploy.key")
	runBin(t, bin, "keygen", "--out", key)
	start := func(i int, name string, extra ...string) *daemon {
		data := filepath.Join(dir, name)
		args := append([]string{"netns", "exec", ns.hosts[i], bin, "--log-level", "info", "seed", "--data", data,
			"--pubkey", key + ".pub", "--name", name, "--bind", ns.addr(i), "--label", "netns"}, extra...)
		return launch(t, data, exec.Command("ip", args...))
	}
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
