package swarm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"scatter/artifact"
	"sync"
	"time"
)

// fetcher fetches, verifies, stages and seeds the releases announced for
// a node's repos. Each repo has one fetch loop (fetchLoop), the one writer
// of its releases' State; for each release in turn it gets the metadata
// from peers (metaClient), the pieces (a pieceFetch: this host's stripe
// from the origin and the rest over the peer wire), and stages the tree.
// What others read of a fetch it records in the registry.
type fetcher struct {
	cfg    *Config // the node's, read only
	reg    *registry
	e      *Engine
	meta   *metaClient
	peers  peerView
	stalls *stalls
	self   netip.Addr      // this host's address, which stripes are fetched from
	ctx    context.Context // the node's: every fetch ends with it
	wg     *sync.WaitGroup // the node's: counts the fetch loops
}

// fetchLoop fetches a repo's releases one at a time, oldest first, so each
// can use the previous one as its delta base.
//
// A failed fetch is tried again RetryAfter later (peers may come, a
// partition may heal); the loop itself keeps that time, so the release
// shows Failed, with its error, until then.
func (fr *fetcher) fetchLoop(r *repo) {
	defer fr.wg.Done()
	for {
		rel, retryAt := fr.reg.next(r, fr.cfg.Clock.Now())
		if rel == nil {
			var retry <-chan time.Time
			if !retryAt.IsZero() {
				retry = fr.cfg.Clock.After(retryAt.Sub(fr.cfg.Clock.Now()))
			}
			select {
			case <-r.wake:
			case <-retry:
			case <-fr.ctx.Done():
				return
			}
			continue
		}
		err := fr.fetch(r, rel)
		fr.reg.finish(rel, fr.cfg.Clock.Now(), err, RetryAfter)
		if err != nil {
			if fr.ctx.Err() != nil {
				return
			}
			fr.cfg.Log.Error("fetch failed; trying again later", "repo", r.name, "release", rel.ann.Release,
				"retry_in", RetryAfter, "err", err)
		} else {
			fr.reg.collect(r)
		}
		fr.cfg.OnChange()
	}
}

// RetryAfter is how long a failed fetch waits before it is tried again.
const RetryAfter = 5 * time.Second

// fetch gets, verifies, stages and starts seeding one release.
func (fr *fetcher) fetch(r *repo, rel *release) error {
	a := rel.ann
	// A local publisher may have added packs since the store was opened.
	if err := r.st.Refresh(); err != nil {
		return err
	}
	t, err := fr.manifest(r, a)
	if err != nil {
		return err
	}
	kind := Full
	if !a.Parent.IsZero() && fr.reg.holds(r, a.Parent) {
		kind = Delta
	}
	tor, err := fr.torrent(r, a, t, kind)
	if err != nil {
		return err
	}
	x, err := fr.e.Add(r.st, tor.Layout, tor.Info, r.dir)
	if err != nil {
		return err
	}
	fr.reg.transferring(rel, x, kind)
	if err := fr.fetchPieces(rel, x, kind); err != nil {
		x.Drop()
		return err
	}
	fr.reg.holding(rel, fr.cfg.Clock.Now())
	fr.cfg.OnChange()
	seeds := []*Transfer{x}
	// Serve the other torrent too, from the same chunks.
	other := Full
	if kind == Full {
		other = Delta
	}
	if other == Full || !a.Parent.IsZero() {
		if parentOK := other == Full || fr.reg.holds(r, a.Parent); parentOK {
			if t2, err := fr.torrent(r, a, t, other); err != nil {
				fr.cfg.Log.Warn("cannot serve the other torrent", "release", a.Release, "kind", other, "err", err)
			} else if x2, err := fr.e.Add(r.st, t2.Layout, t2.Info, r.dir); err == nil {
				seeds = append(seeds, x2)
			} else {
				fr.cfg.Log.Warn("cannot serve the other torrent", "release", a.Release, "kind", other, "err", err)
			}
		}
	}
	if !fr.cfg.Origin && !fr.cfg.SkipStage {
		if err := fr.stage(r, t); err != nil {
			for _, s := range seeds {
				s.Drop()
			}
			return err
		}
	}
	fr.reg.seeding(rel, seeds)
	fr.cfg.Log.Info("release staged", "repo", r.name, "release", a.Release, "kind", kind)
	return nil
}

// fetchPieces gets every piece of the release's torrent x: this host's
// stripe straight from the origin, the rest over the peer wire.
func (fr *fetcher) fetchPieces(rel *release, x *Transfer, kind Kind) error {
	a := rel.ann
	x.Download()
	f := &pieceFetch{fr: fr, rel: rel, x: x}
	stripeCtx, stopStripe := context.WithCancel(fr.ctx)
	defer stopStripe()
	slot, slots := fr.peers.stripe(a, kind)
	if origin, ok := fr.peers.originHost(); ok && !fr.cfg.Origin && slots > 1 {
		stripe := make(chan error, 1)
		f.stripe, f.hadStripe = stripe, true
		go func() { stripe <- fr.fetchStripe(stripeCtx, x, a, kind, origin, slot, slots) }()
		defer func() {
			// follow may end before the stripe does (the peers were
			// faster): the stripe's goroutine ends before x is dropped.
			stopStripe()
			if f.stripe != nil {
				<-f.stripe
			}
		}()
	} else if slots == 1 || fr.cfg.Origin {
		// The origin itself, or a host alone in fetching this torrent:
		// stripes would save nothing, and the peer wire is faster. (slots
		// 0: a host outside the origin's datacenter waits for its
		// neighbours, unless it stalls.)
		f.fallback = true
	}
	return f.follow()
}

// stage materializes the release under releases/<id>, reusing the newest
// staged tree. Both manifests are read from the store as the tree is
// written, not decoded whole.
func (fr *fetcher) stage(r *repo, t *artifact.Table) error {
	id := t.ID
	dest := r.dir.Release(id)
	if _, err := os.Stat(dest); err == nil {
		return nil
	}
	opt := artifact.MaterializeOptions{Log: fr.cfg.Log}
	if prev := fr.reg.newestStaged(r, id); prev != nil {
		opt.Previous = prev
	}
	_, err := artifact.MaterializeStored(fr.ctx, r.st, t, dest, opt)
	return err
}

// manifest returns the release's chunk table from the store or, failing
// that, from a peer, verified by the deploy key and the release ID. The
// entries are checked but not kept: staging reads them again from the
// stored manifest (artifact.MaterializeStored), and holding them for the
// whole fetch was most of a large release's memory.
func (fr *fetcher) manifest(r *repo, a *Announcement) (*artifact.Table, error) {
	if t, err := r.st.Table(a.Release, fr.cfg.PubKey); err == nil {
		return t, nil
	}
	var t *artifact.Table
	// The envelope goes to disk as it arrives: PutFetched checks it from
	// there.
	err := fr.meta.fromPeers(fmt.Sprintf("/v1/repos/%s/releases/%s/manifest", a.Repo, a.Release), func(body io.Reader) error {
		got, err := r.st.PutFetched(body, fr.cfg.PubKey, a.Release)
		t = got
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("fetch manifest: %w", err)
	}
	return t, nil
}

// torrent returns the release's torrent of the given kind from disk or a
// peer, checked against the signed info hash.
func (fr *fetcher) torrent(r *repo, a *Announcement, t *artifact.Table, kind Kind) (*Torrent, error) {
	want := a.Full
	if kind == Delta {
		want = a.Delta
	}
	path := r.dir.Torrent(a.Release, kind.String())
	info, err := os.ReadFile(path)
	if err != nil || InfoHashOf(info) != want {
		err = fr.meta.fromPeers(fmt.Sprintf("/v1/repos/%s/releases/%s/torrent/%s", a.Repo, a.Release, kind), func(body io.Reader) error {
			b, err := readAtMost(body, maxInfoSize)
			if err != nil {
				return err
			}
			if InfoHashOf(b) != want {
				return errors.New("info hash does not match the announcement")
			}
			info = b
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("fetch %s torrent: %w", kind, err)
		}
		if err := writeFileAtomic(path, info); err != nil {
			return nil, err
		}
	}
	l, err := ParseInfo(info, t)
	if err != nil {
		return nil, err
	}
	if l.Kind != kind {
		return nil, fmt.Errorf("torrent is a %s layout, want %s", l.Kind, kind)
	}
	return &Torrent{Layout: l, Info: info}, nil
}
