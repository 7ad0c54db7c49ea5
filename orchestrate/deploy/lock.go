package deploy

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Holder says who holds a repo's deploy lock.
type Holder struct {
	User    string    `json:"user"`
	Host    string    `json:"host"`
	PID     int       `json:"pid"`
	Deploy  string    `json:"deploy"`
	Message string    `json:"message"`
	Since   time.Time `json:"since"`
}

func (h Holder) String() string {
	return fmt.Sprintf("%s (pid %d on %s) since %s, deploy %s: %q", h.User, h.PID, h.Host,
		h.Since.Format(time.RFC3339), h.Deploy, h.Message)
}

// ErrLocked is returned when another deploy of the repo runs.
var ErrLocked = errors.New("deploy lock held")

// Lock is a held deploy lock: an flock on <dir>/deploy.lock, which the
// kernel releases if the process dies, with the holder written inside so
// that a refused deploy can say who holds it and since when.
type Lock struct {
	f *os.File
}

// Acquire takes the lock at path or fails with ErrLocked naming the
// holder. It does not wait.
func Acquire(path string, me Holder) (*Lock, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("deploy lock: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("deploy lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			if h, herr := ReadHolder(path); herr == nil {
				return nil, fmt.Errorf("%w by %s", ErrLocked, h)
			}
			return nil, fmt.Errorf("%w (holder unknown)", ErrLocked)
		}
		return nil, fmt.Errorf("deploy lock: %w", err)
	}
	b, _ := json.Marshal(me)
	err = f.Truncate(0)
	if err == nil {
		_, err = f.WriteAt(append(b, '\n'), 0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("deploy lock: %w", err)
	}
	return &Lock{f: f}, nil
}

// ReadHolder reads who holds (or last held) the lock.
func ReadHolder(path string) (Holder, error) {
	var h Holder
	b, err := os.ReadFile(path)
	if err != nil {
		return h, err
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return h, fmt.Errorf("deploy lock %s: %w", path, err)
	}
	return h, nil
}

// Held reports whether some process holds the lock at path now.
func Held(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		return true
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}

// Release frees the lock.
func (l *Lock) Release() error {
	l.f.Truncate(0)
	return l.f.Close()
}
