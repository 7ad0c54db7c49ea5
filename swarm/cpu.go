package swarm

import (
	"syscall"
	"time"
)

// processCPU is the CPU time, user and system, this process has used so
// far. A release's phases are timed with it: in a daemon that fetches one
// release at a time (`scatter seed`), the difference across a phase is
// what the host spent on it, gossip and serving peers included.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
