package swarm

import (
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/anacrolix/torrent/metainfo"

	"scatter/artifact"
)

// Prepare readies a release built into the origin's store under dataDir
// for the swarm: it lays out its full torrent (and its delta against the
// parent, when the store holds the parent), saves their info bytes where
// the origin's node serves them, and returns the signed announcement.
func Prepare(dataDir string, st *artifact.Store, sm *artifact.Signed, key ed25519.PrivateKey) ([]byte, error) {
	m := sm.Manifest
	dir := filepath.Join(dataDir, m.Repo, "torrents")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	a := &Announcement{Repo: m.Repo, Version: m.Version, Release: sm.ID, Time: time.Now().UTC()}
	save := func(t *Torrent) (metainfo.Hash, error) {
		path := filepath.Join(dir, sm.ID.String()+"."+t.Layout.Kind.String())
		return t.InfoHash(), writeFileAtomic(path, t.Info)
	}
	full, err := MakeTorrent(st, sm, nil, Full)
	if err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	if a.Full, err = save(full); err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	if !m.Parent.IsZero() {
		if parent, err := st.Manifest(m.Parent); err == nil {
			delta, err := MakeTorrent(st, sm, parent.Manifest, Delta)
			if err != nil {
				return nil, fmt.Errorf("prepare: %w", err)
			}
			if a.Delta, err = save(delta); err != nil {
				return nil, fmt.Errorf("prepare: %w", err)
			}
			a.Parent = m.Parent
		}
	}
	return SignAnnouncement(a, key)
}
