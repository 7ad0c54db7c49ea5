package host

import (
	"errors"
	"os"
	"syscall"

	"scatter/artifact/datadir"
	"scatter/orchestrate/command"
)

// A full disk must not stop a rollback. A step that needs no new release
// data (a check, or a stage, promote or rollback to a release already
// staged here) still writes a few small files: the replay guard's record
// (refused if it cannot be written), the deploy step, the promote-pending
// mark, the current and previous links. So the daemon keeps reserveSize
// bytes in a file on the data directory's file system (datadir.Reserve) and
// frees them before such a step when less than lowSpace is left; it takes
// the space back when there is room again.
const (
	reserveSize = 1 << 20
	lowSpace    = 256 << 10
	// roomAgain is the free space above which the reserve is made again.
	roomAgain = 4 << 20
)

// freeSpace is what an unprivileged writer may still use on the data
// directory's file system; -1 if unknown.
func (h *Host) freeSpace() int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(h.cfg.DataDir, &st); err != nil {
		return -1
	}
	return int64(st.Bavail) * st.Bsize
}

// keepReserve makes the reserve if it is missing and there is room.
func (h *Host) keepReserve() {
	path := datadir.Data(h.cfg.DataDir).Reserve()
	if fi, err := os.Stat(path); err == nil && fi.Size() >= reserveSize {
		return
	}
	if free := h.freeSpace(); free >= 0 && free < roomAgain {
		return
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		h.log.Warn("could not make the disk reserve", "path", path, "err", err)
		return
	}
	_, err = f.Write(make([]byte, reserveSize))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		h.log.Warn("could not make the disk reserve", "path", path, "err", err)
	}
}

// useReserve frees the reserve before a step that needs no new release
// data if the disk is (nearly) full.
func (h *Host) useReserve(c *command.Command) {
	if free := h.freeSpace(); free < 0 || free >= lowSpace {
		return
	}
	if c.Kind != command.Check {
		fi, err := os.Stat(datadir.Data(h.cfg.DataDir).Repo(c.Repo).Release(c.Release))
		if err != nil || !fi.IsDir() {
			return // the step needs the release's data: the reserve would not do
		}
	}
	path := datadir.Data(h.cfg.DataDir).Reserve()
	if err := os.Remove(path); err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			h.log.Warn("could not free the disk reserve", "err", err)
		}
		return
	}
	h.log.Warn("disk full: freed the disk reserve so that the step can run", "deploy", c.Deploy, "kind", c.Kind,
		"release", c.Release.Short(), "free_bytes", h.freeSpace())
}
