package host_test

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"scatter/artifact"
	"scatter/artifact/core"
	"scatter/bench"
	"scatter/bench/gen"
	"scatter/orchestrate/host"
	"scatter/orchestrate/host/hosttest"
)

type testCluster struct{ *hosttest.Cluster }

func newTestCluster(t *testing.T) *testCluster { return &testCluster{hosttest.New(t)} }

func (c *testCluster) start(name string, ip int, origin bool) *host.Host {
	return c.Start(name, ip, origin)
}

func (c *testCluster) publish(src, version string) *artifact.Signed {
	return c.Publish("mw", src, version)
}

func (c *testCluster) waitFor(what string, timeout time.Duration, ok func() bool) {
	c.T.Helper()
	c.WaitFor(what, timeout, ok)
}

func (c *testCluster) allStaged(id core.ReleaseID, names ...string) func() bool {
	return func() bool {
		for _, n := range names {
			if !c.Hosts[n].Swarm().Staged("mw", id) {
				return false
			}
		}
		return true
	}
}

func genTree(t *testing.T, size int64, mutate bool) string {
	dir := filepath.Join(t.TempDir(), "src")
	if _, err := gen.Generate(dir, gen.Config{Seed: 21, TotalBytes: size}); err != nil {
		t.Fatal(err)
	}
	if mutate {
		if _, err := gen.MutateCode(dir, 22); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// Hosts joined by gossip stage releases announced on the origin, fetch the
// next one as a delta, and a late joiner learns both from gossip state.
func TestGossipClusterFanOut(t *testing.T) {
	n := 10
	if testing.Short() {
		n = 4
	}
	c := newTestCluster(t)
	c.start("origin", 100, true)
	var names []string
	for i := range n {
		name := fmt.Sprintf("h%02d", i)
		names = append(names, name)
		c.start(name, 101+i, false)
	}
	c.waitFor("full membership", 20*time.Second, func() bool {
		for _, h := range c.Hosts {
			if len(h.Members()) != n+1 {
				return false
			}
		}
		return true
	})
	src1 := genTree(t, 4<<20, false)
	sm1 := c.publish(src1, "1")
	c.waitFor("release 1 staged everywhere", 60*time.Second, c.allStaged(sm1.ID, names...))
	src2 := genTree(t, 4<<20, true)
	sm2 := c.publish(src2, "2")
	c.waitFor("release 2 staged everywhere", 60*time.Second, c.allStaged(sm2.ID, names...))
	for _, name := range names {
		tree := filepath.Join(c.Dirs[name], "mw", "releases", sm2.ID.String())
		if same, err := bench.SameTree(src2, tree); err != nil || !same {
			t.Fatalf("%s: tree differs from the source (%v)", name, err)
		}
		for _, r := range c.Hosts[name].Swarm().Status().Repos[0].Releases {
			if r.Release == sm2.ID && r.Kind != "delta" {
				t.Fatalf("%s fetched release 2 as %s, want delta", name, r.Kind)
			}
		}
	}
	c.start("late", 100+n+1, false)
	c.waitFor("the late joiner to stage both releases", 60*time.Second, c.allStaged(sm1.ID, "late"))
	c.waitFor("the late joiner to stage both releases", 60*time.Second, c.allStaged(sm2.ID, "late"))
}
