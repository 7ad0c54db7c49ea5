package host

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Share is how much of the machine the daemon takes when the application
// it shares the host with wants the same CPU or disk: its niceness and its
// I/O scheduling class, applied to the whole process at start. The zero
// value changes nothing. Under systemd the unit's Nice= and
// IOSchedulingClass= do the same before the daemon starts (docs/operations.md).
//
// Children inherit both, and an unprivileged process cannot undo them:
// actions and hooks run with the daemon's share too.
type Share struct {
	// Nice is the niceness, 0 to 19 (a daemon started nicer keeps its
	// own): at 10 a thread weighs about a tenth of a nice-0 thread when
	// both want a core, at 19 about a seventieth.
	Nice int
	// IOClass is "" (unchanged), "best-effort" (the default class, at its
	// lowest priority, 7) or "idle" (disk time only when no one else wants
	// it: a busy application can hold a fetch's writes back indefinitely).
	IOClass string
}

// I/O scheduling classes (linux/ioprio.h).
const (
	ioprioClassBE   = 2
	ioprioClassIdle = 3
	ioprioClassSh   = 13
	ioprioWhoProc   = 1
)

// Validate checks s without applying it.
func (s Share) Validate() error {
	if s.Nice < 0 || s.Nice > 19 {
		return fmt.Errorf("share: nice %d: want 0 to 19", s.Nice)
	}
	switch s.IOClass {
	case "", "best-effort", "idle":
		return nil
	}
	return fmt.Errorf("share: I/O class %q: want best-effort or idle", s.IOClass)
}

// Apply sets s on every thread of this process. Linux keeps niceness and
// I/O priority per thread, and a new thread takes its creator's: once
// every thread has them, threads the Go runtime starts later have them
// too. Apply goes over the threads until it finds none it has not set, for
// the runtime may start one meanwhile.
func (s Share) Apply() error {
	if err := s.Validate(); err != nil {
		return err
	}
	if s.Nice == 0 && s.IOClass == "" {
		return nil
	}
	ioprio := 0
	switch s.IOClass {
	case "best-effort":
		ioprio = ioprioClassBE<<ioprioClassSh | 7
	case "idle":
		ioprio = ioprioClassIdle << ioprioClassSh
	}
	done := map[int]bool{}
	for {
		ents, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return fmt.Errorf("share: %w", err)
		}
		fresh := 0
		for _, e := range ents {
			tid, err := strconv.Atoi(e.Name())
			if err != nil || done[tid] {
				continue
			}
			fresh++
			if err := s.applyThread(tid, ioprio); err != nil && !errors.Is(err, unix.ESRCH) {
				return err
			}
			done[tid] = true
		}
		if fresh == 0 {
			return nil
		}
	}
}

func (s Share) applyThread(tid, ioprio int) error {
	if s.Nice != 0 {
		// The system call answers 20 - nice. An unprivileged process may
		// only raise its niceness: one started nicer stays so.
		cur, err := unix.Getpriority(unix.PRIO_PROCESS, tid)
		if err != nil {
			return fmt.Errorf("share: getpriority: %w", err)
		}
		if s.Nice > 20-cur {
			if err := unix.Setpriority(unix.PRIO_PROCESS, tid, s.Nice); err != nil {
				return fmt.Errorf("share: setpriority: %w", err)
			}
		}
	}
	if ioprio != 0 {
		if _, _, e := unix.Syscall(unix.SYS_IOPRIO_SET, ioprioWhoProc, uintptr(tid), uintptr(ioprio)); e != 0 {
			return fmt.Errorf("share: ioprio_set: %w", e)
		}
	}
	return nil
}
