package main

import (
	"context"
	"crypto/ed25519"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"scatter/artifact/core"
	"scatter/artifact/keys"
	"scatter/orchestrate/command"
	"scatter/orchestrate/host"
	"scatter/orchestrate/host/hosttest"
	"scatter/orchestrate/membership"
	"scatter/swarm"
)

// hostileEnv, set in the environment of this test binary, makes it the
// hostile daemon of TestE2EHostile (hostileMain) instead of running tests.
const hostileEnv = "SCATTER_TEST_HOSTILE"

// hostileMain runs the hostile daemon until killed: a gossip member
// holding exactly what an attacker on a compromised host holds — the
// cluster key, its own host key, the deploy public key — and enrolled on
// the roster like any host. It advertises meta signed with its own key
// claiming to be the origin (its ports lead nowhere), claims to hold
// every release announced, in its own name and in every other member's,
// and for every deploy command it sees forges acks for every other target
// of the deploy, every step, in every form (hosttest.Hostile.ForgeAcks):
// successes or failures as the file -mode says ("ok" or "fail"). It acks
// its own steps OK without doing anything: a host may lie about itself.
func hostileMain(args []string) int {
	fs := flag.NewFlagSet("hostile", flag.ContinueOnError)
	name := fs.String("name", "mallory", "member name")
	addr := fs.String("addr", "", "address to bind")
	join := fs.String("join", "", "gossip address to join")
	ckeyFile := fs.String("cluster-key", "", "cluster key file")
	pubFile := fs.String("pubkey", "", "deploy public key")
	label := fs.String("label", "netns", "gossip label")
	modeFile := fs.String("mode", "", `file saying "ok" or "fail": the acks to forge`)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := runHostile(log, *name, *addr, *join, *ckeyFile, *pubFile, *label, *modeFile); err != nil {
		log.Error("hostile", "err", err)
		return 1
	}
	return 0
}

func runHostile(log *slog.Logger, name, addr, join, ckeyFile, pubFile, label, modeFile string) error {
	ckey, _, err := membership.LoadKeyFile(ckeyFile)
	if err != nil {
		return err
	}
	pub, err := keys.LoadPublic(pubFile)
	if err != nil {
		return err
	}
	port, _, err := hosttest.DeadEnd(addr)
	if err != nil {
		return err
	}
	msgs := make(chan []byte, 4096)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	meta := membership.Meta{Role: "host", Ports: map[string]int{"bt": port, "http": port}}
	h, err := hosttest.JoinHostile(ctx, hosttest.HostileConfig{Name: name, Addr: addr, ClusterKey: ckey, Label: label,
		Seeds: []string{join}, Sign: host.SignMeta, Meta: meta,
		OnMessage: func(msg []byte) {
			select {
			case msgs <- msg:
			default:
			}
		}})
	cancel()
	if err != nil {
		return err
	}
	log.Info("joined", "name", name, "key", keys.Fingerprint(h.Key.Public().(ed25519.PublicKey)))
	l := &liar{h: h, pub: pub, log: log, modeFile: modeFile}
	tick := time.NewTicker(200 * time.Millisecond)
	for {
		select {
		case msg := <-msgs:
			l.handle(msg)
		case <-tick.C:
			if !l.turned {
				l.turn(addr, meta)
			}
			l.forge()
		}
	}
}

// turn makes the member hostile once the mode file exists (the test
// writes it once the operator has approved the member as a plain host):
// from then on its advertisement, signed with its own key, claims the
// origin role and a datacenter of its own.
func (l *liar) turn(addr string, m membership.Meta) {
	if _, err := os.Stat(l.modeFile); err != nil {
		return
	}
	m.Role, m.DC = "origin", "forged"
	err := l.h.Node.UpdateMeta(host.SignMeta(l.h.Name, addr, m, l.h.Key))
	l.turned = err == nil
	l.log.Info("claims the origin role", "err", err)
}

// liar is the hostile daemon's state, owned by its one loop.
type liar struct {
	h        *hosttest.Hostile
	pub      ed25519.PublicKey
	log      *slog.Logger
	modeFile string
	turned   bool // advertising the origin role
	holds    []core.ReleaseID
	f        hosttest.Forgery // for the newest deploy seen; Deploy "" before one
	last     time.Time        // when a command of it last came
	logged   string           // the forgery last logged
}

func (l *liar) handle(msg []byte) {
	if b, ok := host.SignedAnnouncement(msg); ok {
		a, err := swarm.OpenAnnouncement(b, l.pub)
		if err != nil || slices.Contains(l.holds, a.Release) {
			return
		}
		l.holds = append(l.holds, a.Release)
		l.claim(a.Release)
		return
	}
	b, ok := host.SignedCommand(msg)
	if !ok {
		return
	}
	c, err := command.Open(b, l.pub)
	if err != nil {
		l.log.Warn("command", "err", err)
		return
	}
	if c.Deploy != l.f.Deploy {
		l.f = hosttest.Forgery{Controller: c.Controller, Deploy: c.Deploy, Repo: c.Repo, Release: c.Release, Steps: 6}
	}
	for _, v := range c.Hosts {
		if v != l.h.Name && !slices.Contains(l.f.Victims, v) {
			l.f.Victims = append(l.f.Victims, v)
		}
	}
	l.last = time.Now()
	if !c.For(l.h.Name) {
		return
	}
	a := &command.Ack{Deploy: c.Deploy, Step: c.Step, Host: l.h.Name, Repo: c.Repo, Kind: c.Kind, Release: c.Release,
		OK: true, Current: c.Release, Duration: time.Millisecond, Clock: time.Now()}
	if c.Kind == command.Stage {
		a.Current = core.ReleaseID{}
	}
	m, err := host.AckMessage(l.h.Name, a, l.h.Key)
	if err == nil {
		err = l.h.Node.SendTo(c.Controller, m)
	}
	l.log.Info("acked its own step", "deploy", c.Deploy, "step", c.Step, "kind", c.Kind, "err", err)
}

// claim says that this member, and every other, holds release id: in
// gossip, and in its push/pull state.
func (l *liar) claim(id core.ReleaseID) {
	for _, m := range l.h.Node.Members() {
		msg, err := host.HoldsMessage(l.h.Name, m.Name, id, l.h.Key)
		if err == nil {
			err = l.h.Node.Broadcast(msg)
		}
		if err != nil {
			l.log.Warn("holds", "about", m.Name, "err", err)
		}
	}
	state, err := host.StateMessage(l.h.Name, l.holds, l.h.Key)
	if err == nil {
		err = l.h.Node.SetState(state)
	}
	l.log.Info("claims to hold", "release", id.Short(), "err", err)
}

// forge sends a round of forged acks for the newest deploy, for a while
// after its last command: its steps come in that time.
func (l *liar) forge() {
	if l.f.Deploy == "" || time.Since(l.last) > 20*time.Second {
		return
	}
	mode, _ := os.ReadFile(l.modeFile)
	l.f.OK = strings.TrimSpace(string(mode)) == "ok"
	sent, err := l.h.ForgeAcks(l.f)
	if key := fmt.Sprintf("%s ok=%v victims=%v", l.f.Deploy, l.f.OK, l.f.Victims); key != l.logged && sent > 0 {
		l.logged = key
		l.log.Info("forging acks", "deploy", l.f.Deploy, "ok", l.f.OK, "victims", strings.Join(l.f.Victims, ","), "sent", sent, "err", err)
	}
}

// refusedCounts reads the "refused messages:" line of `scatter status`.
func refusedCounts(t *testing.T, status string) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	for _, line := range strings.Split(status, "\n") {
		rest, ok := strings.CutPrefix(line, "refused messages: ")
		if !ok {
			continue
		}
		for _, kv := range strings.Fields(rest) {
			k, v, _ := strings.Cut(kv, "=")
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				t.Fatalf("status line %q: %v", line, err)
			}
			out[k] = n
		}
	}
	return out
}

// Issue 11's end-to-end property: with a hostile daemon active — a real
// process in its own namespace, enrolled like any host, holding the
// cluster key and its own host key — a good release still succeeds while
// it forges failure acks for every other host, a failing canary is still
// rolled back (exit 4, every honest host on the old release) while it
// forges successes, and the honest hosts fetch every release
// byte-identical despite its claims to hold them and to be the origin.
// The origin's status counts the forged acks it refused.
func TestE2EHostile(t *testing.T) {
	if testing.Short() {
		t.Skip("eight network namespaces and two deploys: run without -short")
	}
	const hosts = 6
	const evil = hosts + 1 // its namespace
	ns := newNetns(t, hosts+2, 25e6)
	bin, dir, key := ns.keyed()
	start := func(i int, name string, extra ...string) *daemon {
		data := filepath.Join(dir, name)
		cfg := filepath.Join(dir, name+".yaml")
		os.WriteFile(cfg, []byte(fmt.Sprintf(`repos:
  mw:
    actions:
      restart: {command: [/bin/sh, -c, 'sleep 1']}
      health: {command: [/bin/sh, -c, 'if [ -e %s/fail-$SCATTER_RELEASE ]; then echo "HTTP 503"; exit 7; fi']}
`, data)), 0o644)
		return ns.seed(bin, dir, key, i, name, append([]string{"--config", cfg}, extra...)...)
	}
	origin := start(0, "origin", "--origin", "--key", key)
	var honest []*daemon
	names := []string{"origin"}
	for i := 1; i <= hosts; i++ {
		name := fmt.Sprintf("h%d", i)
		honest = append(honest, start(i, name, "--join", ns.Addr(0)+":7946"))
		names = append(names, name)
	}

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	mode := filepath.Join(dir, "mallory.mode")
	mallory := ns.Command(evil, exe, "-name", "mallory", "-addr", ns.Addr(evil), "-join", ns.Addr(0)+":7946",
		"-cluster-key", filepath.Join(dir, "cluster.key"), "-pubkey", key+".pub", "-mode", mode)
	mallory.Env = append(os.Environ(), hostileEnv+"=1")
	evilLog := &syncBuffer{}
	mallory.Stdout, mallory.Stderr = evilLog, evilLog
	if err := mallory.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		mallory.Process.Kill()
		mallory.Wait()
		if t.Failed() {
			t.Logf("hostile daemon log:\n%s", evilLog)
		}
	})
	// The operator approves every host that joined, mallory included as
	// the plain host it claimed to be; then it turns.
	approve(t, bin, origin, append(names, "mallory"), append(honest, origin))
	if err := os.WriteFile(mode, []byte("fail"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctl := host.DialControl(origin.data)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		v, err := ctl.Hosts(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(v.Enrolled, func(e host.EnrolledHost) bool { return e.Name == "mallory" })
		if i >= 0 && v.Enrolled[i].Trust == host.TrustEnrolled && strings.Contains(evilLog.String(), "claims the origin role") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mallory never turned while enrolled: %+v", v)
		}
	}
	targets, err := ctl.Targets(context.Background(), "mw")
	if err != nil {
		t.Fatal(err)
	}
	for _, tg := range targets {
		if tg.Name == "mallory" && (tg.Role != "host" || tg.DC == "forged") {
			t.Fatalf("mallory's self-declared role and dc count: %+v", tg)
		}
	}

	publish := func(version string) string {
		src := filepath.Join(dir, "src"+version)
		runBin(t, bin, "generate", "--size", "1MiB", "--seed", version, src)
		cfg := filepath.Join(dir, "scatter.yaml")
		os.WriteFile(cfg, []byte("repo: mw\ncanary: 1\nbatch: 3\nfailure_limit: 0\nchecks: [health]\n"+
			"timeouts: {stage: 1m, action: 10s}\n"), 0o644)
		id := strings.TrimSpace(runBin(t, bin, "publish", "--data", origin.data, "--repo", "mw", "--version", version, "--config", cfg, src))
		deadline := time.Now().Add(90 * time.Second)
		for _, d := range honest {
			rel := filepath.Join(d.data, "mw", "releases", id)
			for {
				if _, err := os.Stat(rel); err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s did not stage %s; status:\n%s", d.data, id, runStatus(t, bin, "--data", origin.data))
				}
				time.Sleep(100 * time.Millisecond)
			}
			if out, err := exec.Command("diff", "-r", "--no-dereference", src, rel).CombinedOutput(); err != nil {
				t.Fatalf("%s: diff -r: %v\n%s", d.data, err, out)
			}
		}
		return id
	}
	// deploy runs `scatter deploy` with mallory forging acks of the kind
	// given, and checks that the forgeries reached the origin and were
	// refused.
	deploy := func(version, forge string, wantExit int) string {
		if err := os.WriteFile(mode, []byte(forge), 0o644); err != nil {
			t.Fatal(err)
		}
		before := refusedCounts(t, runStatus(t, bin, "--data", origin.data))
		out, err := exec.Command(bin, "deploy", "--data", origin.data, "-m", "forged "+forge+" acks", "mw", version).CombinedOutput()
		if code := exitStatus(err); code != wantExit {
			t.Fatalf("deploy %s with mallory forging %s acks: exit %d, want %d\n%s", version, forge, code, wantExit, out)
		}
		if !strings.Contains(evilLog.String(), "ok="+strconv.FormatBool(forge == "ok")) {
			t.Fatalf("mallory forged no %s acks during deploy %s:\n%s", forge, version, evilLog)
		}
		after := refusedCounts(t, runStatus(t, bin, "--data", origin.data))
		for _, reason := range []string{"ack:malformed", "ack:bad-signature", "ack:speaks-for-another"} {
			if after[reason] <= before[reason] {
				t.Fatalf("deploy %s: the origin refused no more %s (%d before, %d after): the forgeries did not reach it\n%s",
					version, reason, before[reason], after[reason], out)
			}
		}
		t.Logf("deploy %s, mallory forging %s acks: exit %d; refused %v\n%s", version, forge, wantExit, after, out)
		return string(out)
	}

	v1 := publish("1")
	deploy("1", "fail", 0)
	for _, d := range honest {
		if got := currentOf(t, d.data); got != v1 {
			t.Fatalf("%s runs %.12s after a good deploy with forged failures, want %.12s", d.data, got, v1)
		}
	}

	v2 := publish("2")
	if err := os.WriteFile(filepath.Join(honest[0].data, "fail-"+v2), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	out := deploy("2", "ok", exitDeployFailed)
	if !strings.Contains(out, "ROLLED BACK") || !strings.Contains(out, "h1  canary  check health  exit 7") {
		t.Fatalf("the summary does not name the canary's failed check:\n%s", out)
	}
	for _, d := range honest {
		if got := currentOf(t, d.data); got != v1 {
			t.Fatalf("%s runs %.12s after a failed canary with forged successes, want %.12s", d.data, got, v1)
		}
	}
	refused := refusedCounts(t, runStatus(t, bin, "--data", origin.data))
	t.Logf("the origin refused: %v", refused)
	if refused["holds:speaks-for-another"] == 0 {
		t.Errorf("mallory's holds claims in others' names were not refused: %v", slices.Sorted(maps.Keys(refused)))
	}
}
