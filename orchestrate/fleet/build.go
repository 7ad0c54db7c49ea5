package fleet

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"time"

	"scatter/artifact"
	"scatter/artifact/datadir"
	"scatter/swarm"
)

// Built is a release built into the origin's store and readied for the
// swarm.
type Built struct {
	*artifact.BuildResult
	// Announcement is the signed announcement to hand to the origin daemon.
	Announcement []byte
	// Size is the bytes of the release's full torrent: S, what one host
	// receives when it has nothing of the release yet.
	Size int64
}

// Build builds src (a directory or tarball) into the store of the repo
// that bo names under the origin's data directory, lays out its torrents
// (full, and delta against its parent when the store has it) where the
// origin's daemon serves them, and signs the announcement. It announces
// nothing: see Publish.
func Build(ctx context.Context, data datadir.Data, src string, key ed25519.PrivateKey, bo artifact.BuildOptions) (*Built, error) {
	st, err := artifact.OpenStore(data.Repo(bo.Repo).Dir(), bo.Log)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	res, err := artifact.Build(ctx, st, src, key, bo)
	if err != nil {
		return nil, err
	}
	p, err := swarm.Prepare(data.Dir(), st, res.Signed, key, time.Now())
	if err != nil {
		return nil, fmt.Errorf("prepare %s: %w", bo.Version, err)
	}
	return &Built{BuildResult: res, Announcement: p.Announcement, Size: p.Size}, nil
}
