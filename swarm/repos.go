package swarm

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"scatter/artifact"
	"scatter/artifact/datadir"
)

// Resume re-reads every repo's saved announcements and queues their
// releases again. Call it once the PeerSource can answer: NewNode does not,
// so that a restarted host does not start fetching before its membership
// is up. Until it is called the node lets no host in (allow.go).
func (n *Node) Resume() error {
	// PeerSource may be asked from now on (its owner is up): let the
	// hosts it lists in.
	n.allow.open()
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
	r, opened, err := n.reg.open(a.Repo)
	if err != nil {
		return false, err
	}
	if opened {
		n.wg.Add(1)
		go n.fetcher.fetchLoop(r)
	}
	if !n.reg.add(r, a, signed) {
		return false, nil
	}
	err = writeFileAtomic(r.dir.Announcement(a.Release), signed)
	r.poke()
	if err != nil {
		// Fetched all the same; only a restart forgets it.
		return true, fmt.Errorf("save announcement: %w", err)
	}
	n.cfg.Log.Info("release announced", "repo", a.Repo, "release", a.Release, "version", a.Version)
	n.cfg.OnChange()
	return true, nil
}

// Announcements returns the signed announcements of the retained releases,
// oldest first, for gossip state.
func (n *Node) Announcements() [][]byte { return n.reg.announcements() }
