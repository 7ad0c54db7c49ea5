package swarm

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"scatter/artifact"
	"scatter/artifact/core"
	"scatter/artifact/datadir"
	"sort"
	"time"
)

type repo struct {
	name string
	dir  datadir.Repo
	st   *artifact.Store
	rels map[core.ReleaseID]*release
	wake chan struct{} // pokes the repo's fetch loop
}

// release is what a node knows about one announced release.
type release struct {
	ann     *Announcement
	signed  []byte
	state   State
	err     error
	kind    Kind
	total   int64       // bytes of the torrent fetched
	x       *Transfer   // the fetch, while it runs
	seeds   []*Transfer // torrents served once complete
	started time.Time
	done    time.Time
	stuck   string
	reason  StallReason // stuck's kind, for counting
	// retryAt: when a failed fetch is tried again.
	retryAt time.Time
	// offloaded: the origin has stopped uploading this release.
	offloaded bool
	// fallback: the origin is a peer-wire peer for this fetch (its stripe
	// could not come over HTTP, or the fetch stalled).
	fallback bool
	// held: every chunk is in the store (set before staging finishes).
	held   bool
	heldAt time.Time
	// The process's CPU time when the fetch started, when every chunk was
	// in the store, and when staging ended (processCPU).
	cpuStart, cpuHeld, cpuDone time.Duration
}

// Resume re-reads every repo's saved announcements and queues their
// releases again. Call it once the PeerSource can answer: NewNode does not,
// so that a restarted host does not start fetching before its membership
// is up. Until it is called the node lets no host in (allow.go).
func (n *Node) Resume() error {
	// PeerSource may be asked from now on (its owner is up): let the
	// hosts it lists in.
	n.live.Store(true)
	n.refreshAllow()
	if n.cfg.Origin && n.cfg.OffloadAfter > 0 {
		n.wg.Add(1)
		go n.offloadLoop()
	}
	entries, err := os.ReadDir(n.cfg.DataDir)
	if errors.Is(err, fs.ErrNotExist) {
		return os.MkdirAll(n.cfg.DataDir, 0o755)
	}
	if err != nil {
		return fmt.Errorf("swarm: %w", err)
	}
	for _, de := range entries {
		if !de.IsDir() || artifact.ValidName("repo", de.Name()) != nil {
			continue
		}
		dir := datadir.Data(n.cfg.DataDir).Repo(de.Name()).Announcements()
		names, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, f := range names {
			b, err := os.ReadFile(filepath.Join(dir, f.Name()))
			if err == nil {
				_, err = n.Announce(b)
			}
			if err != nil {
				n.cfg.Log.Warn("dropping saved announcement", "repo", de.Name(), "file", f.Name(), "err", err)
			}
		}
	}
	return nil
}

// Announce takes a signed announcement from gossip, a peer's state or the
// local publisher. It reports whether the release is new to this node; a
// new release is queued for fetching. Anything that does not verify is
// refused with an error and changes nothing.
func (n *Node) Announce(signed []byte) (bool, error) {
	a, err := OpenAnnouncement(signed, n.cfg.PubKey)
	if err != nil {
		return false, err
	}
	if err := artifact.ValidName("repo", a.Repo); err != nil {
		return false, fmt.Errorf("%w: %v", ErrBadAnnouncement, err)
	}
	n.mu.Lock()
	r, err := n.repoLocked(a.Repo)
	if err != nil {
		n.mu.Unlock()
		return false, err
	}
	if _, ok := r.rels[a.Release]; ok {
		n.mu.Unlock()
		return false, nil
	}
	if n.retiredLocked(r, a) {
		n.mu.Unlock()
		return false, nil
	}
	r.rels[a.Release] = &release{ann: a, signed: signed, state: Queued}
	n.mu.Unlock()
	path := r.dir.Announcement(a.Release)
	err = writeFileAtomic(path, signed)
	select {
	case r.wake <- struct{}{}:
	default:
	}
	if err != nil {
		// Fetched all the same; only a restart forgets it.
		return true, fmt.Errorf("save announcement: %w", err)
	}
	n.cfg.Log.Info("release announced", "repo", a.Repo, "release", a.Release, "version", a.Version)
	n.cfg.OnChange()
	return true, nil
}

// retiredLocked reports whether a is older than the newest Keep releases
// the node already knows of: a late joiner needs only what is retained.
func (n *Node) retiredLocked(r *repo, a *Announcement) bool {
	newer := 0
	for _, rel := range r.rels {
		if rel.ann.Time.After(a.Time) {
			newer++
		}
	}
	return newer >= n.cfg.Keep
}

func (n *Node) repoLocked(name string) (*repo, error) {
	if r, ok := n.repos[name]; ok {
		return r, nil
	}
	dir := datadir.Data(n.cfg.DataDir).Repo(name)
	for _, sub := range []string{dir.Announcements(), dir.Torrents(), dir.Releases()} {
		if err := os.MkdirAll(sub, 0o755); err != nil {
			return nil, fmt.Errorf("swarm: repo %s: %w", name, err)
		}
	}
	st, err := artifact.OpenStore(dir.Dir(), n.cfg.Log.With("repo", name))
	if err != nil {
		return nil, err
	}
	// A crash during materialize leaves a hidden partial tree: remove it.
	for _, err := range artifact.RemovePartialTrees(dir.Releases()) {
		n.cfg.Log.Warn("startup cleanup", "err", err)
	}
	r := &repo{name: name, dir: dir, st: st, rels: map[core.ReleaseID]*release{}, wake: make(chan struct{}, 1)}
	n.repos[name] = r
	n.wg.Add(1)
	go n.fetchLoop(r)
	return r, nil
}

// Announcements returns the signed announcements of the retained releases,
// oldest first, for gossip state.
func (n *Node) Announcements() [][]byte {
	n.mu.Lock()
	defer n.mu.Unlock()
	var rels []*release
	for _, r := range n.repos {
		for _, rel := range r.rels {
			rels = append(rels, rel)
		}
	}
	sort.Slice(rels, func(i, j int) bool { return rels[i].ann.Time.Before(rels[j].ann.Time) })
	out := make([][]byte, len(rels))
	for i, rel := range rels {
		out[i] = rel.signed
	}
	return out
}

// holds reports whether the store has the manifest and every chunk of id.
func (n *Node) holds(r *repo, id core.ReleaseID) bool {
	n.mu.Lock()
	rel := r.rels[id]
	held := rel != nil && rel.held
	n.mu.Unlock()
	if held {
		// Kept releases' chunks are pinned: no need to decode a manifest
		// of megabytes to ask the store about each of them.
		return true
	}
	t, err := r.st.Table(id, n.cfg.PubKey)
	if err != nil {
		return false
	}
	defer t.Close()
	for i := range t.Len() {
		if c, err := t.Ref(i); err != nil || !r.st.HasChunk(c.ID) {
			return false
		}
	}
	return true
}

// collect keeps the newest Keep releases of the repo and removes the rest:
// their torrents, trees, announcements, and chunks no kept release uses.
func (n *Node) collect(r *repo) {
	n.mu.Lock()
	var rels []*release
	for _, rel := range r.rels {
		rels = append(rels, rel)
	}
	sort.Slice(rels, func(i, j int) bool { return rels[i].ann.Time.After(rels[j].ann.Time) })
	var drop []*release
	live := linkedReleases(r.dir)
	for i, rel := range rels {
		if i >= n.cfg.Keep && rel.state != Fetching && !live[rel.ann.Release.String()] {
			drop = append(drop, rel)
			delete(r.rels, rel.ann.Release)
		}
	}
	n.mu.Unlock()
	if len(drop) == 0 {
		return
	}
	for _, rel := range drop {
		for _, s := range rel.seeds {
			s.Drop()
		}
		rid := rel.ann.Release
		id := rid.String()
		n.mu.Lock()
		delete(n.layouts, id+".full")
		delete(n.layouts, id+".delta")
		n.mu.Unlock()
		for _, kind := range []Kind{Full, Delta} {
			os.Remove(r.dir.PartialFile(rid, kind.String(), "partial"))
			os.Remove(r.dir.PartialFile(rid, kind.String(), "done"))
			os.Remove(r.dir.Torrent(rid, kind.String()))
		}
		os.Remove(r.dir.Announcement(rid))
		if err := artifact.RemoveTree(r.dir.Release(rid)); err != nil {
			n.cfg.Log.Warn("remove old release tree", "release", id, "err", err)
		}
	}
	// Keep what the node keeps (the newest announcements), whatever the
	// build times say: on the origin, newer builds may not be announced yet.
	n.mu.Lock()
	var pin []core.ReleaseID
	for id := range r.rels {
		pin = append(pin, id)
	}
	n.mu.Unlock()
	res, err := r.st.GC(artifact.GCOptions{Pin: pin, PinnedOnly: true})
	if err != nil {
		n.cfg.Log.Warn("gc", "repo", r.name, "err", err)
		return
	}
	n.cfg.Log.Info("collected old releases", "repo", r.name, "releases", len(drop), "freed_bytes", res.FreedBytes)
}

// linkedReleases names the releases that the repo's current and previous
// links point at (set by the deploy agent): collection never removes what
// runs, or what a rollback returns to.
func linkedReleases(repo datadir.Repo) map[string]bool {
	out := map[string]bool{}
	for _, link := range []string{datadir.CurrentLink, datadir.PreviousLink} {
		if t, err := os.Readlink(repo.Link(link)); err == nil {
			out[filepath.Base(t)] = true
		}
	}
	return out
}
