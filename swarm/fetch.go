package swarm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"scatter/artifact"
	"time"
)

// fetchLoop fetches a repo's releases one at a time, oldest first, so each
// can use the previous one as its delta base.
//
// A failed fetch is tried again RetryAfter later (peers may come, a
// partition may heal); the loop itself keeps that time, so the release
// shows Failed, with its error, until then.
func (n *Node) fetchLoop(r *repo) {
	defer n.wg.Done()
	for {
		rel, retryAt := n.reg.next(r, n.cfg.Clock.Now())
		if rel == nil {
			var retry <-chan time.Time
			if !retryAt.IsZero() {
				retry = n.cfg.Clock.After(retryAt.Sub(n.cfg.Clock.Now()))
			}
			select {
			case <-r.wake:
			case <-retry:
			case <-n.ctx.Done():
				return
			}
			continue
		}
		err := n.fetch(r, rel)
		n.reg.finish(rel, n.cfg.Clock.Now(), err, RetryAfter)
		if err != nil {
			if n.ctx.Err() != nil {
				return
			}
			n.cfg.Log.Error("fetch failed; trying again later", "repo", r.name, "release", rel.ann.Release,
				"retry_in", RetryAfter, "err", err)
		} else {
			n.reg.collect(r)
		}
		n.cfg.OnChange()
	}
}

// RetryAfter is how long a failed fetch waits before it is tried again.
const RetryAfter = 5 * time.Second

// fetch gets, verifies, stages and starts seeding one release.
func (n *Node) fetch(r *repo, rel *release) error {
	a := rel.ann
	// A local publisher may have added packs since the store was opened.
	if err := r.st.Refresh(); err != nil {
		return err
	}
	t, err := n.manifest(r, a)
	if err != nil {
		return err
	}
	kind := Full
	if !a.Parent.IsZero() && n.reg.holds(r, a.Parent) {
		kind = Delta
	}
	tor, err := n.torrent(r, a, t, kind)
	if err != nil {
		return err
	}
	x, err := n.e.Add(r.st, tor.Layout, tor.Info, r.dir)
	if err != nil {
		return err
	}
	n.reg.transferring(rel, x, kind)
	if err := n.fetchPieces(rel, x, kind); err != nil {
		x.Drop()
		return err
	}
	n.reg.holding(rel, n.cfg.Clock.Now())
	n.cfg.OnChange()
	seeds := []*Transfer{x}
	// Serve the other torrent too, from the same chunks.
	other := Full
	if kind == Full {
		other = Delta
	}
	if other == Full || !a.Parent.IsZero() {
		if parentOK := other == Full || n.reg.holds(r, a.Parent); parentOK {
			if t2, err := n.torrent(r, a, t, other); err != nil {
				n.cfg.Log.Warn("cannot serve the other torrent", "release", a.Release, "kind", other, "err", err)
			} else if x2, err := n.e.Add(r.st, t2.Layout, t2.Info, r.dir); err == nil {
				seeds = append(seeds, x2)
			} else {
				n.cfg.Log.Warn("cannot serve the other torrent", "release", a.Release, "kind", other, "err", err)
			}
		}
	}
	if !n.cfg.Origin && !n.cfg.SkipStage {
		if err := n.stage(r, t); err != nil {
			for _, s := range seeds {
				s.Drop()
			}
			return err
		}
	}
	n.reg.seeding(rel, seeds)
	n.cfg.Log.Info("release staged", "repo", r.name, "release", a.Release, "kind", kind)
	return nil
}

// fetchPieces gets every piece of the release's torrent x: this host's
// stripe straight from the origin, the rest over the peer wire.
func (n *Node) fetchPieces(rel *release, x *Transfer, kind Kind) error {
	a := rel.ann
	x.Download()
	f := &pieceFetch{n: n, rel: rel, x: x}
	stripeCtx, stopStripe := context.WithCancel(n.ctx)
	defer stopStripe()
	slot, slots := n.stripe(a, kind)
	if origin, ok := n.originPeer(); ok && !n.cfg.Origin && slots > 1 {
		stripe := make(chan error, 1)
		f.stripe, f.hadStripe = stripe, true
		go func() { stripe <- n.fetchStripe(stripeCtx, x, a, kind, origin, slot, slots) }()
		defer func() {
			// follow may end before the stripe does (the peers were
			// faster): the stripe's goroutine ends before x is dropped.
			stopStripe()
			if f.stripe != nil {
				<-f.stripe
			}
		}()
	} else if slots == 1 || n.cfg.Origin {
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
func (n *Node) stage(r *repo, t *artifact.Table) error {
	id := t.ID
	dest := r.dir.Release(id)
	if _, err := os.Stat(dest); err == nil {
		return nil
	}
	opt := artifact.MaterializeOptions{Log: n.cfg.Log}
	if prev := n.reg.newestStaged(r, id); prev != nil {
		opt.Previous = prev
	}
	_, err := artifact.MaterializeStored(n.ctx, r.st, t, dest, opt)
	return err
}

// manifest returns the release's chunk table from the store or, failing
// that, from a peer, verified by the deploy key and the release ID. The
// entries are checked but not kept: staging reads them again from the
// stored manifest (artifact.MaterializeStored), and holding them for the
// whole fetch was most of a large release's memory.
func (n *Node) manifest(r *repo, a *Announcement) (*artifact.Table, error) {
	if t, err := r.st.Table(a.Release, n.cfg.PubKey); err == nil {
		return t, nil
	}
	var t *artifact.Table
	// The envelope goes to disk as it arrives: PutFetched checks it from
	// there.
	err := n.meta.fromPeers(fmt.Sprintf("/v1/repos/%s/releases/%s/manifest", a.Repo, a.Release), func(body io.Reader) error {
		got, err := r.st.PutFetched(body, n.cfg.PubKey, a.Release)
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
func (n *Node) torrent(r *repo, a *Announcement, t *artifact.Table, kind Kind) (*Torrent, error) {
	want := a.Full
	if kind == Delta {
		want = a.Delta
	}
	path := r.dir.Torrent(a.Release, kind.String())
	info, err := os.ReadFile(path)
	if err != nil || InfoHashOf(info) != want {
		err = n.meta.fromPeers(fmt.Sprintf("/v1/repos/%s/releases/%s/torrent/%s", a.Repo, a.Release, kind), func(body io.Reader) error {
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
