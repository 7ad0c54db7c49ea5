package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"scatter/artifact/core"
	"scatter/artifact/datadir"
	"scatter/orchestrate/command"
)

// The agent owns these names of a repo directory (package datadir names
// them): the current and previous links; the promote-pending mark, set when
// a promote's switch happened but its restart has not finished, so that a
// retried step after a crash restarts again rather than see the release
// current and do nothing; and the record of the newest deploy step run here.

// ReadLink returns the release a repo link (current, previous) names; zero
// if the link does not exist.
func ReadLink(repo datadir.Repo, name string) (core.ReleaseID, error) {
	target, err := os.Readlink(repo.Link(name))
	if errors.Is(err, os.ErrNotExist) {
		return core.ReleaseID{}, nil
	}
	if err != nil {
		return core.ReleaseID{}, err
	}
	id, err := core.ParseReleaseID(filepath.Base(target))
	if err != nil || filepath.Clean(target) != datadir.ReleaseLinkTarget(id) {
		return core.ReleaseID{}, fmt.Errorf("%s -> %q is not a release link", repo.Link(name), target)
	}
	return id, nil
}

// setLink points the repo's link name at releases/<id> atomically: a new symlink
// renamed over the old one, so the name always resolves to a complete
// release, even across a crash, and the directory is synced.
func setLink(repo datadir.Repo, name string, id core.ReleaseID) error {
	if fi, err := os.Stat(repo.Release(id)); err != nil || !fi.IsDir() {
		return fmt.Errorf("release %s is not staged in %s", id.Short(), repo.Dir())
	}
	tmp := repo.LinkTemp(name)
	os.Remove(tmp)
	if err := os.Symlink(datadir.ReleaseLinkTarget(id), tmp); err != nil {
		return fmt.Errorf("switch %s: %w", name, err)
	}
	if err := os.Rename(tmp, repo.Link(name)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("switch %s: %w", name, err)
	}
	return syncDir(repo.Dir())
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// switchCurrent makes id current and the old current previous. It returns
// the release that was current before.
func switchCurrent(repo datadir.Repo, id core.ReleaseID) (core.ReleaseID, error) {
	old, err := ReadLink(repo, datadir.CurrentLink)
	if err != nil {
		return core.ReleaseID{}, err
	}
	if err := setLink(repo, datadir.CurrentLink, id); err != nil {
		return old, err
	}
	if !old.IsZero() && old != id {
		if err := setLink(repo, datadir.PreviousLink, old); err != nil {
			// current switched; a missing previous link only costs the
			// default of `scatter rollback` on this host.
			return old, fmt.Errorf("record previous release: %w", err)
		}
	}
	return old, nil
}

func readPending(repo datadir.Repo) core.ReleaseID {
	b, err := os.ReadFile(repo.PromotePending())
	if err != nil {
		return core.ReleaseID{}
	}
	id, _ := core.ParseReleaseID(strings.TrimSpace(string(b)))
	return id
}

func writePending(repo datadir.Repo, id core.ReleaseID) error {
	p := repo.PromotePending()
	if err := os.WriteFile(p+".tmp", []byte(id.String()+"\n"), 0o644); err != nil {
		return err
	}
	if err := os.Rename(p+".tmp", p); err != nil {
		return err
	}
	return syncDir(repo.Dir())
}

func clearPending(repo datadir.Repo) { os.Remove(repo.PromotePending()) }

// checkStepOrder refuses a step older than one this host already ran for
// the same deploy, and records the step otherwise. Steps of a deploy only
// grow, and a retry reuses its step; so an older one arriving late (a
// resend stuck behind a partition, landing after the rollback that
// superseded it) must not undo what came after. The record is on disk: a
// restarted daemon keeps the order too. Callers hold the repo's lock.
func checkStepOrder(repo datadir.Repo, c *command.Command) error {
	p := repo.DeployStep()
	if b, err := os.ReadFile(p); err == nil {
		var deploy string
		var step int
		if _, err := fmt.Sscanf(string(b), "%s %d", &deploy, &step); err == nil && deploy == c.Deploy && c.Step < step {
			return fmt.Errorf("step %d of deploy %s is older than step %d already run here; not run", c.Step, c.Deploy, step)
		} else if err == nil && deploy == c.Deploy && c.Step == step {
			return nil
		}
	}
	if err := os.MkdirAll(repo.Dir(), 0o755); err != nil {
		return fmt.Errorf("record deploy step: %w", err)
	}
	if err := os.WriteFile(p+".tmp", fmt.Appendf(nil, "%s %d\n", c.Deploy, c.Step), 0o644); err != nil {
		return fmt.Errorf("record deploy step: %w", err)
	}
	if err := os.Rename(p+".tmp", p); err != nil {
		return fmt.Errorf("record deploy step: %w", err)
	}
	return nil
}
