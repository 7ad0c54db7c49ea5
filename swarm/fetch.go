package swarm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"scatter/artifact"
	"scatter/artifact/core"
	"time"
)

// fetchLoop fetches a repo's releases one at a time, oldest first, so each
// can use the previous one as its delta base.
func (n *Node) fetchLoop(r *repo) {
	defer n.wg.Done()
	for {
		rel := n.nextQueued(r)
		if rel == nil {
			select {
			case <-r.wake:
				continue
			case <-n.ctx.Done():
				return
			}
		}
		err := n.fetch(r, rel)
		n.mu.Lock()
		rel.x = nil
		if err != nil {
			rel.state, rel.err = Failed, err
		} else {
			rel.state, rel.err, rel.stuck = Staged, nil, ""
		}
		rel.done = time.Now()
		n.mu.Unlock()
		if err != nil {
			if n.ctx.Err() != nil {
				return
			}
			n.cfg.Log.Error("fetch failed", "repo", r.name, "release", rel.ann.Release, "err", err)
			// Retry later: peers may come, a partition may heal.
			go func() {
				select {
				case <-time.After(5 * time.Second):
					n.mu.Lock()
					if rel.state == Failed {
						rel.state = Queued
					}
					n.mu.Unlock()
					select {
					case r.wake <- struct{}{}:
					default:
					}
				case <-n.ctx.Done():
				}
			}()
		} else {
			n.collect(r)
		}
		n.cfg.OnChange()
	}
}

func (n *Node) nextQueued(r *repo) *release {
	n.mu.Lock()
	defer n.mu.Unlock()
	var next *release
	for _, rel := range r.rels {
		if rel.state == Queued && (next == nil || rel.ann.Time.Before(next.ann.Time)) {
			next = rel
		}
	}
	if next != nil {
		next.state, next.started = Fetching, time.Now()
	}
	return next
}

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
	if !a.Parent.IsZero() && n.holds(r, a.Parent) {
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
	n.mu.Lock()
	rel.x, rel.kind, rel.total = x, kind, tor.Layout.Length
	n.mu.Unlock()
	x.Download()
	stripeDone := make(chan struct{})
	stripeCtx, stopStripe := context.WithCancel(n.ctx)
	defer stopStripe()
	slot, slots := n.stripe(a, kind)
	if origin, ok := n.originPeer(); ok && !n.cfg.Origin && slots > 1 {
		go func() {
			defer close(stripeDone)
			if err := n.fetchStripe(stripeCtx, x, a, kind, origin, slot, slots); err != nil && stripeCtx.Err() == nil {
				n.cfg.Log.Warn("stripe from the origin failed; fetching it from the swarm", "release", a.Release, "err", err)
				n.setFallback(rel)
			}
		}()
	} else {
		close(stripeDone)
		if slots == 1 || n.cfg.Origin {
			// The origin itself, or a host alone in fetching this
			// torrent: stripes would save nothing, and the peer wire is
			// faster. (slots 0: a host outside the origin's datacenter
			// waits for its neighbours, unless it stalls.)
			n.setFallback(rel)
		}
	}
	hadStripe := slots > 1 && !n.cfg.Origin
	err = n.wait(rel, x, stripeDone, hadStripe)
	stopStripe()
	<-stripeDone
	if err != nil {
		x.Drop()
		return err
	}
	n.mu.Lock()
	rel.held, rel.heldAt = true, time.Now()
	n.mu.Unlock()
	n.cfg.OnChange()
	seeds := []*Transfer{x}
	// Serve the other torrent too, from the same chunks.
	other := Full
	if kind == Full {
		other = Delta
	}
	if other == Full || !a.Parent.IsZero() {
		if parentOK := other == Full || n.holds(r, a.Parent); parentOK {
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
	n.mu.Lock()
	rel.seeds = seeds
	n.mu.Unlock()
	n.cfg.Log.Info("release staged", "repo", r.name, "release", a.Release, "kind", kind)
	return nil
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
	if prev := n.newestStaged(r, id); prev != nil {
		opt.Previous = prev
	}
	_, err := artifact.MaterializeStored(n.ctx, r.st, t, dest, opt)
	return err
}

func (n *Node) newestStaged(r *repo, except core.ReleaseID) *artifact.Previous {
	n.mu.Lock()
	var best *release
	for id, rel := range r.rels {
		if id != except && (rel.state == Staged) && (best == nil || rel.ann.Time.After(best.ann.Time)) {
			best = rel
		}
	}
	n.mu.Unlock()
	if best == nil {
		return nil
	}
	return &artifact.Previous{Release: best.ann.Release, Dir: r.dir.Release(best.ann.Release)}
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
	err := n.fromPeers(fmt.Sprintf("/v1/repos/%s/releases/%s/manifest", a.Repo, a.Release), func(body io.Reader) error {
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
		err = n.fromPeers(fmt.Sprintf("/v1/repos/%s/releases/%s/torrent/%s", a.Repo, a.Release, kind), func(body io.Reader) error {
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
