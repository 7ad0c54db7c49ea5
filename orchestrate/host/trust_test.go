package host_test

import (
	"crypto/ed25519"
	"errors"
	"os"
	"slices"
	"testing"
	"time"

	"scatter/artifact/core"
	"scatter/artifact/datadir"
	"scatter/orchestrate/command"
	"scatter/orchestrate/config"
	"scatter/orchestrate/host"
	"scatter/orchestrate/host/hosttest"
	"scatter/orchestrate/trust"
)

func okRepos(string, string) map[string]config.Repo {
	return map[string]config.Repo{"mw": {Actions: map[string]config.Action{
		"ok": {Command: []string{"/bin/sh", "-c", "true"}, Timeout: 10 * time.Second}}}}
}

func targetNames(h *host.Host) []string {
	var out []string
	for _, t := range h.Targets("mw") {
		out = append(out, t.Name)
	}
	return out
}

// check sends a signed check command to name from the origin and reports
// whether its ack (any outcome) reached the origin's subscribers within wait.
func check(t *testing.T, c *hosttest.Cluster, deploy string, seq uint64, name string, wait time.Duration) bool {
	t.Helper()
	origin := c.Hosts["origin"]
	acks, cancel := origin.Subscribe(deploy)
	defer cancel()
	now := time.Now()
	b, err := command.Sign(&command.Command{Deploy: deploy, Seq: seq, Step: 1, Controller: "origin",
		Issued: now, Expires: now.Add(time.Minute), Repo: "mw", Kind: command.Check,
		Hosts: []string{name}, Checks: []string{"ok"}, Timeout: 10 * time.Second}, c.Key)
	if err != nil {
		t.Fatal(err)
	}
	if err := origin.SendCommand(b, []string{name}); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-acks:
		// Nothing runs there yet, so the check itself fails: what counts
		// here is that the host's answer reached the controller.
		if a.Host != name {
			t.Fatalf("ack from %s, want %s", a.Host, name)
		}
		return true
	case <-time.After(wait):
		return false
	}
}

// Property: an unenrolled host is never a deploy target and its acks are
// ignored; approving it makes it deployable; revoking it removes it and
// drops its later messages.
func TestPendingApproveRevoke(t *testing.T) {
	c := hosttest.New(t)
	c.Repos = okRepos
	origin := c.Start("origin", 60, true)
	c.Start("mw01", 61, false)
	newbie := c.StartPending("newbie", 62)
	c.WaitMembers(3, 30*time.Second)

	c.WaitFor("newbie listed as pending", 10*time.Second, func() bool {
		v := origin.Hosts()
		i := slices.IndexFunc(v.Pending, func(p trust.Candidate) bool { return p.Name == "newbie" })
		return i >= 0 && v.Pending[i].Key.Equal(newbie.HostKey()) && !v.Pending[i].NewKey
	})
	if got := targetNames(origin); !slices.Equal(got, []string{"mw01", "origin"}) {
		t.Fatalf("targets %v: a pending host must never be one", got)
	}
	st := origin.ClusterStatus(t.Context())
	for _, m := range st.Members {
		if m.Name == "newbie" && m.Trust != host.TrustPending {
			t.Fatalf("status shows newbie as %q, want pending", m.Trust)
		}
	}
	if check(t, c, "pending", 1, "newbie", 3*time.Second) {
		t.Fatal("the origin took a pending host's ack")
	}
	if origin.Refused()["ack:not-enrolled"] == 0 {
		t.Fatalf("the pending host's ack was not counted as refused: %v", origin.Refused())
	}

	c.Enroll("newbie")
	c.WaitFor("newbie a target once approved", 10*time.Second, func() bool {
		return slices.Contains(targetNames(origin), "newbie")
	})
	if !check(t, c, "approved", 1, "newbie", 10*time.Second) {
		t.Fatal("no ack from the approved host")
	}

	c.Revoke("newbie")
	if slices.Contains(targetNames(origin), "newbie") {
		t.Fatal("a revoked host is still a target")
	}
	before := origin.Refused()["ack:not-enrolled"]
	if check(t, c, "revoked", 1, "newbie", 3*time.Second) {
		t.Fatal("the origin took a revoked host's ack")
	}
	if origin.Refused()["ack:not-enrolled"] <= before {
		t.Fatalf("the revoked host's ack was not counted as refused: %v", origin.Refused())
	}
}

// Property: a known name showing up with a new key is not trusted, and not
// approved by "approve all", until an operator approves it by name; an
// older roster is refused, after a restart too.
func TestNewKeyAndOlderRoster(t *testing.T) {
	c := hosttest.New(t)
	c.Repos = okRepos
	origin := c.Start("origin", 63, true)
	mw01 := c.Start("mw01", 64, false)
	c.WaitMembers(2, 30*time.Second)
	oldRoster := c.RosterBytes()

	// Reinstalled: same name, its key gone, a new one made at start.
	mw01.Close()
	c.WaitMembers(1, 30*time.Second)
	delete(c.Hosts, "mw01")
	if err := os.Remove(datadir.Data(c.Dirs["mw01"]).HostKey()); err != nil {
		t.Fatal(err)
	}
	mw01 = c.StartPending("mw01", 64)
	c.WaitMembers(2, 30*time.Second)
	var cand trust.Candidate
	c.WaitFor("mw01 flagged with a new key", 10*time.Second, func() bool {
		for _, p := range origin.Hosts().Pending {
			if p.Name == "mw01" && p.NewKey {
				cand = p
				return true
			}
		}
		return false
	})
	if !cand.Key.Equal(mw01.HostKey()) {
		t.Fatal("the candidate's key is not the one the host advertises")
	}
	if slices.Contains(targetNames(origin), "mw01") {
		t.Fatal("a host with a new key is a target")
	}
	if check(t, c, "newkey", 1, "mw01", 3*time.Second) {
		t.Fatal("the origin took an ack signed with a key the roster does not hold")
	}
	r, err := trust.OpenRoster(origin.Roster(), c.Key.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	next := trust.Next(r, time.Now())
	approved, skipped, err := trust.Approve(next, origin.Hosts().Pending, nil, true)
	if err != nil || len(approved) != 0 || len(skipped) != 1 || skipped[0].Name != "mw01" {
		t.Fatalf("approve all: approved %v, skipped %v, %v", approved, skipped, err)
	}
	if _, _, err := trust.Approve(next, origin.Hosts().Pending, []string{"mw01"}, false); err != nil {
		t.Fatal(err)
	}
	raw, err := trust.SignRoster(next, c.Key)
	if err != nil {
		t.Fatal(err)
	}
	if err := origin.SetRoster(raw); err != nil {
		t.Fatal(err)
	}
	c.WaitFor("mw01 trusted once its new key is approved", 10*time.Second, func() bool {
		return slices.Contains(targetNames(origin), "mw01")
	})
	if !check(t, c, "approved", 1, "mw01", 10*time.Second) {
		t.Fatal("no ack after approving the new key")
	}

	if err := origin.SetRoster(oldRoster); !errors.Is(err, trust.ErrOlderRoster) {
		t.Fatalf("an older roster: %v, want ErrOlderRoster", err)
	}
	origin.Close()
	delete(c.Hosts, "origin")
	origin = c.Start("origin", 63, true)
	if got := origin.RosterVersion(); got != next.Version {
		t.Fatalf("restarted origin holds roster v%d, want v%d", got, next.Version)
	}
	if err := origin.SetRoster(oldRoster); !errors.Is(err, trust.ErrOlderRoster) {
		t.Fatalf("an older roster after a restart: %v, want ErrOlderRoster", err)
	}
}

// Property: the peers a host hands its swarm follow each input they are
// built from, although the list is kept between changes: the roster (a
// peer revoked), membership (a peer that left) and holds (a release a peer
// says it holds). Each step changes that input alone.
func TestPeersFollowChanges(t *testing.T) {
	c := hosttest.New(t)
	origin := c.Start("origin", 70, true)
	c.Start("mw01", 71, false)
	c.Start("mw02", 72, false)
	c.Start("mw03", 73, false)
	c.WaitMembers(4, 30*time.Second)
	names := func(h *host.Host) []string {
		var out []string
		for _, p := range h.Peers() {
			out = append(out, p.Name)
		}
		return out
	}
	c.WaitFor("the origin to list every host", 10*time.Second, func() bool {
		return slices.Equal(names(origin), []string{"mw01", "mw02", "mw03"})
	})

	c.Revoke("mw03")
	if got := names(origin); !slices.Equal(got, []string{"mw01", "mw02"}) {
		t.Fatalf("the origin lists %v once mw03 was revoked, want [mw01 mw02]", got)
	}

	if err := c.Hosts["mw02"].Close(); err != nil {
		t.Fatal(err)
	}
	c.WaitFor("the origin to drop mw02 once it left", 30*time.Second, func() bool {
		return slices.Equal(names(origin), []string{"mw01"})
	})

	holds := func(id core.ReleaseID) bool {
		p := origin.Peers()
		return len(p) == 1 && slices.Contains(p[0].Holds, id)
	}
	if holds(core.ReleaseID{}) {
		t.Fatal("mw01 holds the zero release")
	}
	sm := c.Publish("mw", genTree(t, 1<<20, false), "1")
	c.WaitFor("the origin to list mw01 as holding the release", 30*time.Second, func() bool {
		return holds(sm.ID)
	})
}
