package hostcost

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
)

// Config sizes a run. The zero value of each field means its default.
type Config struct {
	Dir    string // work directory (must exist): the tree, the daemons' data, every round's copies
	Binary string // the scatter binary: the daemons, publish, torrent, materialize and the stand-in app
	Size   int64  // generated tree bytes; default 256 MiB
	Rounds int    // default 5
	Seed   uint64 // generator seed; default 1
	// Aria2c is the aria2c binary; "" looks it up in PATH, and if it is not
	// there the aria2c part is skipped with a message in the report.
	Aria2c string
	// KeepTrees keeps every round's trees and data directories; by default
	// they are removed when the run ends, not round by round (checkSpace
	// says why; a 2 GiB round keeps about 8 GiB).
	KeepTrees bool
	// AppLoad adds the stand-in application's part to each round: alone,
	// during a default host's fetch, during a fetch by a host run with Share.
	AppLoad bool
	// AppWorkers is the stand-in application's CPU workers; default the
	// machine's cores.
	AppWorkers int
	// Share is the extra `scatter seed` flags of the host that keeps out of
	// the application's way (with AppLoad); default DefaultShare.
	Share    []string
	Log      *slog.Logger // nil: discard
	Progress io.Writer    // a line per step; nil: none
}

// DefaultShare is the share setting AppLoad measures unless told another:
// what the shipped unit suggests (packaging/scatter-seed.service).
var DefaultShare = []string{"--nice", "10", "--io-class", "idle"}

func (c *Config) setDefaults() {
	if c.Size <= 0 {
		c.Size = 256 << 20
	}
	if c.Rounds <= 0 {
		c.Rounds = 5
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.AppWorkers <= 0 {
		c.AppWorkers = runtime.NumCPU()
	}
	if c.Share == nil {
		c.Share = DefaultShare
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
}

// Validate checks the configuration without changing it.
func (c Config) Validate() error {
	switch {
	case c.Dir == "":
		return errors.New("hostcost: Dir is required")
	case c.Binary == "":
		return errors.New("hostcost: the scatter Binary is required")
	case c.Size < 0 || c.Size > 0 && c.Size < 1<<20:
		return fmt.Errorf("hostcost: size %d: want at least 1 MiB", c.Size)
	case c.Rounds < 0 || c.Rounds > 100:
		return fmt.Errorf("hostcost: %d rounds: want 1 to 100", c.Rounds)
	case c.AppWorkers < 0 || c.AppWorkers > 256:
		return fmt.Errorf("hostcost: %d app workers: want 1 to 256", c.AppWorkers)
	}
	return nil
}
