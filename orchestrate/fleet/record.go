package fleet

import (
	"fmt"
	"os"
	"strings"

	"scatter/artifact/core"
	"scatter/artifact/datadir"
)

// RecordDeployed records the release the last successful deploy put on
// the fleet: status compares every host's current with it to flag drift.
func RecordDeployed(repo datadir.Repo, id core.ReleaseID, deployID string) error {
	p := repo.Deployed()
	if err := os.WriteFile(p+".tmp", []byte(id.String()+" "+deployID+"\n"), 0o644); err != nil {
		return fmt.Errorf("record deployed release: %w", err)
	}
	return os.Rename(p+".tmp", p)
}

// Deployed is the release the last successful deploy of the repo put on
// the fleet; zero if none is recorded (not the deploy host, or never
// deployed).
func Deployed(repo datadir.Repo) core.ReleaseID {
	b, err := os.ReadFile(repo.Deployed())
	if err != nil {
		return core.ReleaseID{}
	}
	id, _ := core.ParseReleaseID(strings.Fields(string(b) + " x")[0])
	return id
}
