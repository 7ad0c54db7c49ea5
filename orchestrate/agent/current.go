package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"scatter/artifact/core"
	"scatter/orchestrate/command"
)

// Names in a repo directory that the agent owns.
const (
	CurrentLink  = "current"  // -> releases/<id>, what runs
	PreviousLink = "previous" // -> releases/<id>, what ran before
	// pendingFile marks a promote whose switch happened but whose restart
	// has not finished: a retried step after a crash must restart again
	// rather than see the release current and do nothing.
	pendingFile = ".promote-pending"
	// stepFile records the newest step of the newest deploy run here.
	stepFile = ".deploy-step"
)

// ReadLink returns the release a repo link (current, previous) names; zero
// if the link does not exist.
func ReadLink(repoDir, name string) (core.ReleaseID, error) {
	target, err := os.Readlink(filepath.Join(repoDir, name))
	if errors.Is(err, os.ErrNotExist) {
		return core.ReleaseID{}, nil
	}
	if err != nil {
		return core.ReleaseID{}, err
	}
	id, err := core.ParseReleaseID(filepath.Base(target))
	if err != nil || filepath.Dir(target) != "releases" {
		return core.ReleaseID{}, fmt.Errorf("%s/%s -> %q is not a release link", repoDir, name, target)
	}
	return id, nil
}

// setLink points repoDir/name at releases/<id> atomically: a new symlink
// renamed over the old one, so the name always resolves to a complete
// release, even across a crash, and the directory is synced.
func setLink(repoDir, name string, id core.ReleaseID) error {
	rel := filepath.Join("releases", id.String())
	if fi, err := os.Stat(filepath.Join(repoDir, rel)); err != nil || !fi.IsDir() {
		return fmt.Errorf("release %s is not staged in %s", id.Short(), repoDir)
	}
	tmp := filepath.Join(repoDir, "."+name+".new")
	os.Remove(tmp)
	if err := os.Symlink(rel, tmp); err != nil {
		return fmt.Errorf("switch %s: %w", name, err)
	}
	if err := os.Rename(tmp, filepath.Join(repoDir, name)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("switch %s: %w", name, err)
	}
	return syncDir(repoDir)
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
func switchCurrent(repoDir string, id core.ReleaseID) (core.ReleaseID, error) {
	old, err := ReadLink(repoDir, CurrentLink)
	if err != nil {
		return core.ReleaseID{}, err
	}
	if err := setLink(repoDir, CurrentLink, id); err != nil {
		return old, err
	}
	if !old.IsZero() && old != id {
		if err := setLink(repoDir, PreviousLink, old); err != nil {
			// current switched; a missing previous link only costs the
			// default of `scatter rollback` on this host.
			return old, fmt.Errorf("record previous release: %w", err)
		}
	}
	return old, nil
}

func readPending(repoDir string) core.ReleaseID {
	b, err := os.ReadFile(filepath.Join(repoDir, pendingFile))
	if err != nil {
		return core.ReleaseID{}
	}
	id, _ := core.ParseReleaseID(strings.TrimSpace(string(b)))
	return id
}

func writePending(repoDir string, id core.ReleaseID) error {
	p := filepath.Join(repoDir, pendingFile)
	if err := os.WriteFile(p+".tmp", []byte(id.String()+"\n"), 0o644); err != nil {
		return err
	}
	if err := os.Rename(p+".tmp", p); err != nil {
		return err
	}
	return syncDir(repoDir)
}

func clearPending(repoDir string) { os.Remove(filepath.Join(repoDir, pendingFile)) }

// checkStepOrder refuses a step older than one this host already ran for
// the same deploy, and records the step otherwise. Steps of a deploy only
// grow, and a retry reuses its step; so an older one arriving late (a
// resend stuck behind a partition, landing after the rollback that
// superseded it) must not undo what came after. The record is on disk: a
// restarted daemon keeps the order too. Callers hold the repo's lock.
func checkStepOrder(repoDir string, c *command.Command) error {
	p := filepath.Join(repoDir, stepFile)
	if b, err := os.ReadFile(p); err == nil {
		var deploy string
		var step int
		if _, err := fmt.Sscanf(string(b), "%s %d", &deploy, &step); err == nil && deploy == c.Deploy && c.Step < step {
			return fmt.Errorf("step %d of deploy %s is older than step %d already run here; not run", c.Step, c.Deploy, step)
		} else if err == nil && deploy == c.Deploy && c.Step == step {
			return nil
		}
	}
	if err := os.MkdirAll(repoDir, 0o755); err != nil {
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
