package swarm

import (
	"os"
	"path/filepath"
	"scatter/artifact"
	"scatter/artifact/core"
	"scatter/artifact/datadir"
	"sort"
)

// collect keeps the newest Keep releases of the repo and removes the rest:
// their torrents, trees, announcements, and chunks no kept release uses.
// Neither a release being fetched nor one the current or previous link
// names is removed.
func (g *registry) collect(r *repo) {
	g.mu.Lock()
	var rels []*release
	for _, rel := range r.rels {
		rels = append(rels, rel)
	}
	sort.Slice(rels, func(i, j int) bool { return rels[i].ann.Time.After(rels[j].ann.Time) })
	var drop []*release
	live := linkedReleases(r.dir)
	for i, rel := range rels {
		if i >= g.keep && rel.state != Fetching && !live[rel.ann.Release.String()] {
			drop = append(drop, rel)
			delete(r.rels, rel.ann.Release)
			delete(g.layouts, rel.ann.Release.String()+".full")
			delete(g.layouts, rel.ann.Release.String()+".delta")
		}
	}
	g.mu.Unlock()
	if len(drop) == 0 {
		return
	}
	for _, rel := range drop {
		for _, s := range rel.seeds {
			s.Drop()
		}
		rid := rel.ann.Release
		for _, kind := range []Kind{Full, Delta} {
			os.Remove(r.dir.PartialFile(rid, kind.String(), "partial"))
			os.Remove(r.dir.PartialFile(rid, kind.String(), "done"))
			os.Remove(r.dir.Torrent(rid, kind.String()))
		}
		os.Remove(r.dir.Announcement(rid))
		if err := artifact.RemoveTree(r.dir.Release(rid)); err != nil {
			g.log.Warn("remove old release tree", "release", rid, "err", err)
		}
	}
	// Keep what the node keeps (the newest announcements, one announced
	// meanwhile included), whatever the build times say: on the origin,
	// newer builds may not be announced yet.
	g.mu.Lock()
	var pin []core.ReleaseID
	for id := range r.rels {
		pin = append(pin, id)
	}
	g.mu.Unlock()
	res, err := r.st.GC(artifact.GCOptions{Pin: pin, PinnedOnly: true})
	if err != nil {
		g.log.Warn("gc", "repo", r.name, "err", err)
		return
	}
	g.log.Info("collected old releases", "repo", r.name, "releases", len(drop), "freed_bytes", res.FreedBytes)
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
