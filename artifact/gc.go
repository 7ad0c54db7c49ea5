package artifact

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"scatter/artifact/core"
)

// GCOptions choose what garbage collection keeps.
type GCOptions struct {
	Keep   int              // newest releases kept per repo; must be at least 1
	Pin    []core.ReleaseID // kept whatever their age (e.g. the current release)
	DryRun bool             // report, delete nothing
}

// GCResult says what was (or, with DryRun, would be) removed.
type GCResult struct {
	Kept            []core.ReleaseID
	RemovedReleases []core.ReleaseID
	RemovedChunks   int
	FreedBytes      int64
}

// GC keeps the newest opt.Keep releases of each repo (plus the pinned ones),
// removes the other manifests and every chunk no kept release uses, and
// clears temp files left by crashed writers. It holds the store's exclusive
// lock, so it fails fast with ErrStoreBusy while a build is writing.
func (s *Store) GC(opt GCOptions) (*GCResult, error) {
	if opt.Keep < 1 {
		return nil, errors.New("gc: keep must be at least 1")
	}
	unlock, err := s.lock(true)
	if err != nil {
		return nil, fmt.Errorf("gc: %w", err)
	}
	defer unlock()
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
	live := map[core.ChunkID]struct{}{}
	for _, r := range rels {
		perRepo[r.Manifest.Repo]++
		if perRepo[r.Manifest.Repo] > opt.Keep && !pinned[r.ID] {
			res.RemovedReleases = append(res.RemovedReleases, r.ID)
			continue
		}
		res.Kept = append(res.Kept, r.ID)
		for _, c := range r.Manifest.Chunks {
			live[c.ID] = struct{}{}
		}
	}
	if !opt.DryRun {
		for _, id := range res.RemovedReleases {
			if err := os.Remove(filepath.Join(s.dir, "manifests", id.String())); err != nil {
				return nil, fmt.Errorf("gc: %w", err)
			}
		}
	}
	err = filepath.WalkDir(filepath.Join(s.dir, "chunks"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		id, perr := core.ParseChunkID(d.Name())
		if _, ok := live[id]; ok && perr == nil {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		res.RemovedChunks++
		res.FreedBytes += info.Size()
		if opt.DryRun {
			return nil
		}
		return os.Remove(p)
	})
	if err != nil {
		return nil, fmt.Errorf("gc: %w", err)
	}
	if !opt.DryRun {
		s.clearStaleTemp()
	}
	return res, nil
}

func (s *Store) clearStaleTemp() {
	dir := filepath.Join(s.dir, "tmp")
	names, err := readDirNames(dir)
	if err != nil {
		s.log.Warn("gc: list temp files", "err", err)
		return
	}
	for _, n := range names {
		p := filepath.Join(dir, n)
		if info, err := os.Lstat(p); err == nil && time.Since(info.ModTime()) > staleTemp {
			if err := os.Remove(p); err != nil {
				s.log.Warn("gc: remove temp file", "file", p, "err", err)
			}
		}
	}
}
