package swarm

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	g "github.com/anacrolix/generics"
	"github.com/anacrolix/torrent/metainfo"
	"github.com/anacrolix/torrent/storage"

	"scatter/artifact/core"
	"scatter/bench/gen"
)

// failingReads wraps a transfer's storage so that, once armed, its next
// reads fail: what a peer whose disk hiccups does. anacrolix answers a
// request it cannot read with a reject.
type failingReads struct {
	storage.ClientImpl
	left *atomic.Int32
}

func (f failingReads) OpenTorrent(ctx context.Context, info *metainfo.Info, ih metainfo.Hash) (storage.TorrentImpl, error) {
	t, err := f.ClientImpl.OpenTorrent(ctx, info, ih)
	if err != nil {
		return t, err
	}
	inner := t.PieceWithHash
	t.PieceWithHash = func(p metainfo.Piece, h g.Option[[]byte]) storage.PieceImpl {
		return failingPiece{inner(p, h), f.left}
	}
	return t, nil
}

type failingPiece struct {
	storage.PieceImpl
	left *atomic.Int32
}

func (p failingPiece) ReadAt(b []byte, off int64) (int, error) {
	if p.left.Add(-1) >= 0 {
		return 0, errors.New("injected read failure")
	}
	return p.PieceImpl.ReadAt(b, off)
}

// A host that starts a one-piece delta after every peer holds it, and
// whose first request is rejected (the peer's read failed), still gets
// it. anacrolix v1.59.1 asks no other peer after a reject until something
// changes, and here nothing would: the peers already said what they hold,
// and the origin has stopped uploading. This is how a host hung for a
// minute on a 10-byte delta in CI; the node now reconnects to its peers
// when it makes no progress while they hold what it lacks.
func TestRejectedRequestIsAskedAgain(t *testing.T) {
	c := newCluster(t)
	origin := c.start("origin", 140, true, 0)
	names := []string{"host1", "host2"}
	fails := map[string]*atomic.Int32{}
	for i, name := range append(names, "late") {
		n := c.start(name, 141+i, false, 0)
		left := &atomic.Int32{}
		fails[name] = left
		n.e.wrapStorage = func(s storage.ClientImpl) storage.ClientImpl { return failingReads{s, left} }
	}
	src := filepath.Join(t.TempDir(), "src")
	if _, err := gen.Generate(src, gen.Config{Seed: 7, TotalBytes: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	sm1, _ := c.publish(src, "1")
	c.waitStaged(sm1, append(names, "late"), 30*time.Second)

	// Release 2 changes one small file: its delta is one piece.
	if err := os.WriteFile(filepath.Join(src, "VERSION"), []byte("2"), 0o644); err != nil {
		t.Fatal(err)
	}
	sm2, ann := c.prepare(src, "2")
	for _, name := range append(names, "origin") {
		if _, err := c.nodes[name].Announce(ann); err != nil {
			t.Fatal(err)
		}
	}
	c.waitStaged(sm2, names, 30*time.Second)
	for deadline := time.Now().Add(10 * time.Second); !offloaded(origin, sm2.ID); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the origin still uploads release 2 with two hosts holding it")
		}
	}
	// Each host now fails the next read a peer asks of it.
	for _, name := range names {
		fails[name].Store(1)
	}
	late := c.nodes["late"]
	if _, err := late.Announce(ann); err != nil {
		t.Fatal(err)
	}
	c.waitStaged(sm2, []string{"late"}, 30*time.Second)
	if fails["host1"].Load() >= 0 && fails["host2"].Load() >= 0 {
		t.Fatal("no peer failed a read: the test did not exercise a reject")
	}
	late.mu.Lock()
	x := late.repos["mw"].rels[sm2.ID].seeds[0] // the delta it fetched
	late.mu.Unlock()
	if x.Rejected() == 0 {
		t.Fatal("the late host saw no reject")
	}
}

func offloaded(n *Node, id core.ReleaseID) bool {
	for _, r := range n.Status().Repos[0].Releases {
		if r.Release == id {
			return r.Offloaded
		}
	}
	return false
}
