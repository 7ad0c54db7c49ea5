package swarm

import (
	"crypto/ed25519"
	"fmt"
	"os"
	"time"

	"scatter/artifact"
	"scatter/artifact/datadir"
)

// Prepared is a release readied for the swarm.
type Prepared struct {
	Announcement []byte // signed
	Size         int64  // bytes of the full torrent
}

// Prepare readies a release built into the origin's store under dataDir
// for the swarm: it lays out its full torrent (and its delta against the
// parent, when the store holds the parent), saves their info bytes where
// the origin's node serves them, and returns the signed announcement,
// dated at (hosts keep the newest announcements).
func Prepare(dataDir string, st *artifact.Store, sm *artifact.Signed, key ed25519.PrivateKey, at time.Time) (*Prepared, error) {
	m := sm.Manifest
	repo := datadir.Data(dataDir).Repo(m.Repo)
	if err := os.MkdirAll(repo.Torrents(), 0o755); err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	a := &Announcement{Repo: m.Repo, Version: m.Version, Release: sm.ID, Time: at.UTC()}
	save := func(t *Torrent) (InfoHash, error) {
		path := repo.Torrent(sm.ID, t.Layout.Kind.String())
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
	signed, err := SignAnnouncement(a, key)
	if err != nil {
		return nil, err
	}
	return &Prepared{Announcement: signed, Size: full.Layout.Length}, nil
}
