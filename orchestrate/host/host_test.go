package host

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"scatter/artifact"
	"scatter/artifact/core"
	"scatter/bench"
	"scatter/bench/gen"
	"scatter/swarm"
)

type testCluster struct {
	t     *testing.T
	key   ed25519.PrivateKey
	ckey  []byte
	hosts map[string]*Host
	dirs  map[string]string
	seed  string
}

func newTestCluster(t *testing.T) *testCluster {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	ckey := make([]byte, 32)
	rand.Read(ckey)
	return &testCluster{t: t, key: key, ckey: ckey, hosts: map[string]*Host{}, dirs: map[string]string{}}
}

func (c *testCluster) start(name string, ip int, origin bool) *Host {
	c.t.Helper()
	if c.dirs[name] == "" {
		c.dirs[name] = filepath.Join(c.t.TempDir(), name)
	}
	cfg := Config{
		Name: name, DataDir: c.dirs[name], PubKey: c.key.Public().(ed25519.PublicKey), Origin: origin,
		BindAddr: fmt.Sprintf("127.0.0.%d", ip), ClusterKey: c.ckey, Label: "test",
		PushPullInterval: time.Second,
	}
	if c.seed != "" {
		cfg.Join = []string{c.seed}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	h, err := Start(ctx, cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	if c.seed == "" {
		c.seed = h.GossipAddr()
	}
	c.hosts[name] = h
	c.t.Cleanup(func() { h.Close() })
	return h
}

// publish builds src into the origin's store and publishes it through the
// origin host, as `scatter publish` does.
func (c *testCluster) publish(src, version string) *artifact.Signed {
	c.t.Helper()
	dir := c.dirs["origin"]
	st, err := artifact.OpenStore(filepath.Join(dir, "mw"), nil)
	if err != nil {
		c.t.Fatal(err)
	}
	defer st.Close()
	res, err := artifact.Build(context.Background(), st, src, c.key, artifact.BuildOptions{Repo: "mw", Version: version})
	if err != nil {
		c.t.Fatal(err)
	}
	ann, err := swarm.Prepare(dir, st, res.Signed, c.key)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := c.hosts["origin"].Publish(ann); err != nil {
		c.t.Fatal(err)
	}
	return res.Signed
}

func (c *testCluster) waitFor(what string, timeout time.Duration, ok func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *testCluster) allStaged(id core.ReleaseID, names ...string) func() bool {
	return func() bool {
		for _, n := range names {
			if !c.hosts[n].Swarm().Staged("mw", id) {
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
		for _, h := range c.hosts {
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
		tree := filepath.Join(c.dirs[name], "mw", "releases", sm2.ID.String())
		if same, err := bench.SameTree(src2, tree); err != nil || !same {
			t.Fatalf("%s: tree differs from the source (%v)", name, err)
		}
		for _, r := range c.hosts[name].Swarm().Status().Repos[0].Releases {
			if r.Release == sm2.ID && r.Kind != "delta" {
				t.Fatalf("%s fetched release 2 as %s, want delta", name, r.Kind)
			}
		}
	}
	c.start("late", 100+n+1, false)
	c.waitFor("the late joiner to stage both releases", 60*time.Second, c.allStaged(sm1.ID, "late"))
	c.waitFor("the late joiner to stage both releases", 60*time.Second, c.allStaged(sm2.ID, "late"))
}
