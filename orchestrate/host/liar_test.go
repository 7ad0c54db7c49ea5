package host_test

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"scatter/artifact"
	"scatter/artifact/core"
	"scatter/artifact/datadir"
	"scatter/orchestrate/fleet"
	"scatter/orchestrate/host"
	"scatter/orchestrate/host/hosttest"
	"scatter/orchestrate/membership"
)

// Property: an enrolled liar, signing with its own key, that claims to
// hold every release (before it is even announced) and to be the origin,
// and serves nothing, hurts only itself: every other host still stages the
// release, the origin uploads at most 1.5 copies, and the liar is neither
// the origin nor anything but a host to the deploy. A pending host making
// the same claims is not even believed.
func TestEnrolledLiarHurtsOnlyItself(t *testing.T) {
	n := 6
	if testing.Short() {
		n = 4
	}
	const S = 3 << 20 // about the compressed size of the 8 MiB tree below
	U := int64(S / 4)
	c := hosttest.New(t)
	c.Configure = func(cfg *host.Config) { cfg.UploadRate = U }
	c.Start("origin", 80, true)
	var names []string
	for i := range n {
		name := "h" + strconv.Itoa(i)
		names = append(names, name)
		c.Start(name, 81+i, false)
	}
	claim := func(ip string) membership.Meta {
		p, stop, err := hosttest.DeadEnd(ip)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(stop)
		return membership.Meta{Role: "origin", Ports: map[string]int{"bt": p, "http": p}}
	}
	liar := c.StartHostile("liar", 95, claim("127.0.0.95"), host.SignMeta)
	c.Add(liar.Entry()) // the operator enrolled it as a plain host
	pend := c.StartHostile("pend", 96, claim("127.0.0.96"), host.SignMeta)
	c.WaitMembers(n+3, 30*time.Second)

	// Build first, so that the liars can claim the release before the
	// hosts hear of it.
	b, err := fleet.Build(context.Background(), datadir.Data(c.Dirs["origin"]), genTree(t, 8<<20, false), c.Key,
		artifact.BuildOptions{Repo: "mw", Version: "1"})
	if err != nil {
		t.Fatal(err)
	}
	id, ann := b.Signed.ID, b.Announcement
	for _, hm := range []*hosttest.Hostile{liar, pend} {
		msg, err := host.HoldsMessage(hm.Name, hm.Name, id, hm.Key)
		if err != nil {
			t.Fatal(err)
		}
		if err := hm.Node.Broadcast(msg); err != nil {
			t.Fatal(err)
		}
		state, err := host.StateMessage(hm.Name, []core.ReleaseID{id}, hm.Key)
		if err != nil {
			t.Fatal(err)
		}
		if err := hm.Node.SetState(state); err != nil {
			t.Fatal(err)
		}
	}
	c.WaitFor("every host to believe the enrolled liar holds the release", 20*time.Second, func() bool {
		for _, name := range names {
			if !slices.Contains(c.Hosts[name].Holders(id), "liar") {
				return false
			}
		}
		return true
	})
	if err := c.Hosts["origin"].Publish(ann); err != nil {
		t.Fatal(err)
	}
	c.WaitFor("every honest host to stage the release", 120*time.Second, func() bool {
		for _, name := range names {
			if !c.Hosts[name].Swarm().Staged("mw", id) {
				return false
			}
		}
		return true
	})
	origin := c.Hosts["origin"]
	size := origin.Swarm().Status().Repos[0].Releases[0].Total
	up := origin.Swarm().Engine().Uploaded()
	t.Logf("%d hosts and an enrolled liar: origin uploaded %.2f S (S=%d B)", n, float64(up)/float64(size), size)
	if float64(up) > 1.5*float64(size) {
		t.Fatalf("origin uploaded %.2f copies, want at most 1.5", float64(up)/float64(size))
	}
	for _, name := range append(names, "origin") {
		if slices.Contains(c.Hosts[name].Holders(id), "pend") {
			t.Fatalf("%s believes the pending host's holds", name)
		}
	}
	for _, tg := range origin.Targets("mw") {
		switch {
		case tg.Name == "pend":
			t.Fatal("the pending host is a target")
		case tg.Name == "liar" && tg.Role != "host":
			t.Fatalf("the liar's role is %q, want the roster's host", tg.Role)
		case tg.Role == "origin" && tg.Name != "origin":
			t.Fatalf("%s is taken for the origin", tg.Name)
		}
	}
}
