package swarm

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"scatter/artifact"
	"scatter/artifact/datadir"
	"scatter/bench"
	"scatter/bench/gen"
)

type testRelease struct {
	src string
	sm  *artifact.Signed
}

// buildReleases generates a tree, builds it, applies the code mutation and
// builds again, all into one (origin) store.
func buildReleases(t testing.TB, st *artifact.Store, size int64) (r1, r2 testRelease) {
	t.Helper()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	dir := t.TempDir()
	for i, r := range []*testRelease{&r1, &r2} {
		r.src = filepath.Join(dir, fmt.Sprint(i))
		if _, err := gen.Generate(r.src, gen.Config{Seed: 5, TotalBytes: size}); err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			if _, err := gen.MutateCode(r.src, 9); err != nil {
				t.Fatal(err)
			}
		}
		res, err := artifact.Build(context.Background(), st, r.src, key, artifact.BuildOptions{
			Repo: "mw", Version: fmt.Sprint(i + 1), Time: time.Unix(int64(1e9+i), 0)})
		if err != nil {
			t.Fatal(err)
		}
		r.sm = res.Signed
	}
	return r1, r2
}

func newEngine(t *testing.T, ip string) *Engine {
	t.Helper()
	e, err := NewEngine(EngineConfig{ListenAddr: ip + ":0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func openStore(t testing.TB) *artifact.Store {
	t.Helper()
	st, err := artifact.OpenStore(filepath.Join(t.TempDir(), "store"), nil)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func fetch(t *testing.T, e *Engine, st *artifact.Store, tor *Torrent, peers ...string) *Transfer {
	t.Helper()
	x, err := e.Add(st, tor.Layout, tor.Info, datadir.Repo(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	x.AddPeers(peers)
	x.Download()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := x.Wait(ctx); err != nil {
		done, total := x.Progress()
		t.Fatalf("transfer: %v (%d of %d bytes)", err, done, total)
	}
	return x
}

func checkMaterialized(t *testing.T, st *artifact.Store, r testRelease) {
	t.Helper()
	dest := filepath.Join(t.TempDir(), "tree")
	if _, err := artifact.Materialize(context.Background(), st, r.sm, dest, artifact.MaterializeOptions{}); err != nil {
		t.Fatal(err)
	}
	same, err := bench.SameTree(r.src, dest)
	if err != nil || !same {
		t.Fatalf("fetched tree differs from the source (%v)", err)
	}
}

// A host with an empty store fetches a full release from the origin, and
// then only the delta of the next release.
func TestFetchFullThenDelta(t *testing.T) {
	origin := openStore(t)
	r1, r2 := buildReleases(t, origin, 8<<20)
	full1, err := MakeTorrent(origin, r1.sm, nil, Full)
	if err != nil {
		t.Fatal(err)
	}
	delta2, err := MakeTorrent(origin, r2.sm, r1.sm.Manifest, Delta)
	if err != nil {
		t.Fatal(err)
	}
	oe := newEngine(t, "127.0.0.21")
	for _, tor := range []*Torrent{full1, delta2} {
		if _, err := oe.Add(origin, tor.Layout, tor.Info, datadir.Repo(t.TempDir())); err != nil {
			t.Fatal(err)
		}
	}

	host := openStore(t)
	he := newEngine(t, "127.0.0.22")
	for _, r := range []testRelease{r1, r2} {
		if err := host.PutManifest(r.sm); err != nil {
			t.Fatal(err)
		}
	}
	fetch(t, he, host, full1, oe.Addr())
	checkMaterialized(t, host, r1)
	got1 := he.ReceivedFrom()[mustAddr("127.0.0.21")]
	if got1 != full1.Layout.Length {
		t.Fatalf("received %d bytes for a %d-byte release", got1, full1.Layout.Length)
	}

	fetch(t, he, host, delta2, oe.Addr())
	checkMaterialized(t, host, r2)
	got2 := he.ReceivedFrom()[mustAddr("127.0.0.21")] - got1
	if got2 > delta2.Layout.Length || delta2.Layout.Length == 0 {
		t.Fatalf("delta: received %d bytes, the delta is %d", got2, delta2.Layout.Length)
	}
	t.Logf("full %d bytes, delta %d bytes (%d chunks), received %d", full1.Layout.Length, delta2.Layout.Length, delta2.Layout.Len(), got2)
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
