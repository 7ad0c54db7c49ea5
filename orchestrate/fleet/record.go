package fleet

import (
	"scatter/artifact/core"
	"scatter/artifact/datadir"
	"scatter/orchestrate/deploy"
)

// Deployed is the release the last successful deploy of the repo put on
// the fleet; zero if none is recorded (not the deploy host, or never
// deployed).
func Deployed(repo datadir.Repo) core.ReleaseID { return deploy.Deployed(repo) }
