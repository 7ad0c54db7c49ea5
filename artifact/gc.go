package artifact

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"scatter/artifact/core"
)

// GCOptions choose what garbage collection keeps.
type GCOptions struct {
	Keep   int              // newest releases kept per repo; must be at least 1
	Pin    []core.ReleaseID // kept whatever their age (e.g. the current release)
	DryRun bool             // report, delete nothing
	// PinnedOnly keeps exactly the pinned releases and ignores Keep: for a
	// daemon, which knows which releases it retains better than build
	// times do.
	PinnedOnly bool
}

// GCResult says what was (or, with DryRun, would be) removed.
type GCResult struct {
	Kept            []core.ReleaseID
	RemovedReleases []core.ReleaseID
	RemovedChunks   int
	FreedBytes      int64 // compressed chunk bytes no longer stored
	RewrittenPacks  int   // packs whose live chunks were copied to a new pack
}

// repackBelow is the live fraction under which gc rewrites a pack's live
// chunks into a new one instead of keeping the dead bytes.
const repackBelow = 0.5

// GC keeps the newest opt.Keep releases of each repo (plus the pinned ones),
// removes the other manifests, and frees every chunk no kept release uses:
// packs with no live chunk are deleted, packs less than half live are
// rewritten. It also clears temp files left by crashed writers. It holds
// the store's exclusive lock, so it fails fast with ErrStoreBusy while a
// build is writing.
func (s *Store) GC(opt GCOptions) (*GCResult, error) {
	if opt.Keep < 1 && !opt.PinnedOnly {
		return nil, errors.New("gc: keep must be at least 1")
	}
	unlock, err := s.lock(true)
	if err != nil {
		return nil, fmt.Errorf("gc: %w", err)
	}
	defer unlock()
	if err := s.loadPacks(); err != nil {
		return nil, fmt.Errorf("gc: %w", err)
	}
	rels, err := s.Releases() // newest first
	if err != nil {
		return nil, fmt.Errorf("gc: %w", err)
	}
	pinned := map[core.ReleaseID]bool{}
	for _, id := range opt.Pin {
		pinned[id] = true
	}
	res := &GCResult{}
	perRepo := map[string]int{}
	live := map[core.ChunkID]bool{}
	for _, r := range rels {
		perRepo[r.Manifest.Repo]++
		if (opt.PinnedOnly || perRepo[r.Manifest.Repo] > opt.Keep) && !pinned[r.ID] {
			res.RemovedReleases = append(res.RemovedReleases, r.ID)
			continue
		}
		res.Kept = append(res.Kept, r.ID)
		for _, c := range r.Manifest.Chunks {
			live[c.ID] = true
		}
	}

	// Tally every pack's entries (not only the index's choice among
	// duplicates) to decide what happens to each pack.
	s.mu.RLock()
	packs := make([]*packFile, 0, len(s.packs))
	for _, p := range s.packs {
		packs = append(packs, p)
	}
	s.mu.RUnlock()
	type plan struct {
		p         *packFile
		entries   []packEntry
		liveBytes int64
		deadBytes int64
	}
	var plans []plan
	seen := map[core.ChunkID]bool{} // a chunk held twice counts once as live
	for _, p := range packs {
		entries, err := readPackIndex(p.f, p.size)
		if err != nil {
			return nil, fmt.Errorf("gc: pack %s: %w", p.name, err)
		}
		pl := plan{p: p, entries: entries}
		for _, e := range entries {
			if live[e.id] && !seen[e.id] {
				pl.liveBytes += int64(e.csize)
				seen[e.id] = true
			} else {
				pl.deadBytes += int64(e.csize)
				if !live[e.id] {
					res.RemovedChunks++
				}
			}
		}
		plans = append(plans, pl)
	}
	if opt.DryRun {
		for _, pl := range plans {
			res.FreedBytes += pl.deadBytes
		}
		return res, nil
	}

	for _, id := range res.RemovedReleases {
		if err := os.Remove(s.dir.Manifest(id)); err != nil {
			return nil, fmt.Errorf("gc: %w", err)
		}
	}
	var (
		drop    []*packFile
		entries [][]packEntry
	)
	for _, pl := range plans {
		total := pl.liveBytes + pl.deadBytes
		switch {
		case pl.deadBytes == 0:
			continue
		case pl.liveBytes > 0 && float64(pl.liveBytes) >= repackBelow*float64(total):
			continue // mostly live: keep the dead bytes for now
		}
		if pl.liveBytes > 0 {
			res.RewrittenPacks++
		}
		res.FreedBytes += pl.deadBytes
		drop, entries = append(drop, pl.p), append(entries, pl.entries)
	}
	if err := s.repackLocked(drop, entries, func(e packEntry) bool { return live[e.id] }); err != nil {
		return nil, fmt.Errorf("gc: %w", err)
	}
	s.clearTemp()
	return res, nil
}

// repackLocked copies the entries of packs (entries[i] is packs[i]'s index)
// that keep accepts into new packs, synced, then removes packs and rebuilds
// the index from the packs left. The caller holds the exclusive lock.
func (s *Store) repackLocked(packs []*packFile, entries [][]packEntry, keep func(packEntry) bool) error {
	w := &Writer{st: s, force: true, queued: map[core.ChunkID]bool{}}
	for i, p := range packs {
		for _, e := range entries[i] {
			if !keep(e) || w.queued[e.id] {
				continue
			}
			z, err := chunkLoc{pack: p, off: e.off, csize: e.csize, size: e.size}.readFrame()
			if err == nil {
				_, err = w.PutCompressed(e.id, z, int(e.size))
			}
			if err != nil {
				w.Abort()
				return fmt.Errorf("rewrite pack %s: %w", p.name, err)
			}
		}
	}
	// The rewritten chunks are synced in their new packs before the old
	// packs go.
	if err := w.Close(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, p := range packs {
		delete(s.packs, p.name)
		p.f.Close()
		// Another process may have rewritten and removed it already.
		if err := os.Remove(s.dir.Pack(p.name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	// Rebuild the index from the remaining packs, whatever failed above, so
	// it never points at a closed pack.
	s.index = chunkIndex{}
	for name, p := range s.packs {
		entries, err := readPackIndex(p.f, p.size)
		if err != nil {
			errs = append(errs, fmt.Errorf("pack %s: %w", name, err))
			delete(s.packs, name)
			p.f.Close()
			continue
		}
		s.addPackLocked(p, entries)
	}
	return errors.Join(errs...)
}

// DropChunk removes chunk id, which a read found corrupt, from the store,
// so that nothing reuses it and the next fetch stores it again. The store
// forgets it at once; its pack is rewritten without it under the exclusive
// lock, so that it stays gone after a restart. While a build or fetch
// holds the store (ErrStoreBusy) only the forgetting is done, and a later
// read that finds it corrupt again drops it then.
func (s *Store) DropChunk(id core.ChunkID) error {
	s.mu.Lock()
	l, ok := s.index.get(id)
	s.index.remove(id)
	s.mu.Unlock()
	if !ok {
		return nil
	}
	unlock, err := s.lock(true)
	if err != nil {
		return fmt.Errorf("drop chunk %s: %w", id.Short(), err)
	}
	defer unlock()
	s.mu.RLock()
	p := s.packs[l.pack.name]
	s.mu.RUnlock()
	if p != l.pack {
		return fmt.Errorf("drop chunk %s: pack %s was rewritten meanwhile", id.Short(), l.pack.name)
	}
	entries, err := readPackIndex(p.f, p.size)
	if err != nil {
		return fmt.Errorf("drop chunk %s: pack %s: %w", id.Short(), p.name, err)
	}
	// Only the bad copy goes: another pack may hold the chunk too.
	bad := func(e packEntry) bool { return e.id == id && e.off == l.off }
	if err := s.repackLocked([]*packFile{p}, [][]packEntry{entries}, func(e packEntry) bool { return !bad(e) }); err != nil {
		return fmt.Errorf("drop chunk %s: %w", id.Short(), err)
	}
	return nil
}

// clearTemp removes everything in tmp/. Only gc calls it, under the
// exclusive lock: no writer of any process is alive, so every temp file is
// a crashed writer's.
func (s *Store) clearTemp() {
	dir := s.dir.Tmp()
	names, err := readDirNames(dir)
	if err != nil {
		s.log.Warn("gc: list temp files", "err", err)
		return
	}
	for _, n := range names {
		if err := os.Remove(filepath.Join(dir, n)); err != nil {
			s.log.Warn("gc: remove temp file", "file", n, "err", err)
		}
	}
}
