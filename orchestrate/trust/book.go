package trust

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
)

// Book keeps the newest roster a host has seen, on disk too, so that a
// restarted host refuses an older roster as well. Safe for concurrent use.
type Book struct {
	deploy ed25519.PublicKey
	path   string

	mu  sync.RWMutex
	raw []byte
	r   *Roster
	gen uint64 // bumped each time r is replaced (Generation)
}

// NewBook returns a book trusting the deploy key, loading the roster saved
// at path ("" for none) if there is one. A saved roster that does not
// verify is an error: starting empty would accept an older roster again.
func NewBook(deploy ed25519.PublicKey, path string) (*Book, error) {
	b := &Book{deploy: deploy, path: path, r: &Roster{}}
	if path == "" {
		return b, nil
	}
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return b, nil
	}
	if err != nil {
		return nil, fmt.Errorf("roster: %w", err)
	}
	r, err := OpenRoster(raw, deploy)
	if err != nil {
		return nil, fmt.Errorf("saved roster %s (remove it to start over from the deploy host's): %w", path, err)
	}
	b.raw, b.r = raw, r
	return b, nil
}

// Offer takes a signed roster from the operator or a peer. It reports
// whether the roster replaced the book's; an older roster than the book's
// is refused with ErrOlderRoster, another roster of the same version with
// ErrConflict, and the same one again is no change.
func (b *Book) Offer(raw []byte) (bool, error) {
	r, err := OpenRoster(raw, b.deploy)
	if err != nil {
		return false, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.raw != nil && r.Version < b.r.Version:
		return false, fmt.Errorf("%w: version %d, have %d", ErrOlderRoster, r.Version, b.r.Version)
	case b.raw != nil && r.Version == b.r.Version && bytes.Equal(raw, b.raw):
		return false, nil
	case b.raw != nil && r.Version == b.r.Version:
		return false, fmt.Errorf("%w: version %d", ErrConflict, r.Version)
	}
	if b.path != "" {
		if err := writeAtomic(b.path, raw); err != nil {
			return false, fmt.Errorf("save roster: %w", err)
		}
	}
	b.raw, b.r = append([]byte(nil), raw...), r
	b.gen++
	return true, nil
}

// Generation changes whenever the roster is replaced, so a caller can keep
// what it derived from Lookup until it moves.
func (b *Book) Generation() uint64 {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.gen
}

// Raw returns the signed roster (nil if none yet).
func (b *Book) Raw() []byte {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.raw
}

// Roster returns a copy of the current roster (version 0, empty, if none).
func (b *Book) Roster() *Roster {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.r.Clone()
}

// Version is the current roster's version.
func (b *Book) Version() uint64 {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.r.Version
}

// Lookup returns the named host's roster entry.
func (b *Book) Lookup(name string) (Entry, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.r.Lookup(name)
}

// Open unseals a statement of kind and verifies it against the signer's
// roster key. Errors wrap ErrMalformed, ErrNotEnrolled or ErrSignature; the
// returned Sealed names the claimed signer whenever the header decoded.
func (b *Book) Open(kind Kind, msg []byte) (Sealed, Entry, error) {
	s, err := Unseal(kind, msg)
	if err != nil {
		return s, Entry{}, err
	}
	e, ok := b.Lookup(s.Name)
	if !ok {
		return s, Entry{}, fmt.Errorf("%w: %s is not on roster v%d", ErrNotEnrolled, s.Name, b.Version())
	}
	if !s.Verify(e.Key) {
		return s, e, fmt.Errorf("%w: not by %s's roster key", ErrSignature, s.Name)
	}
	return s, e, nil
}

func writeAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".roster-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// Tally counts refused statements by reason and says which refusal is the
// first of its sender and reason, so each is logged once. Safe for
// concurrent use.
type Tally struct {
	mu     sync.Mutex
	counts map[string]uint64
	logged map[[2]string]bool
}

// Note counts one refusal and reports whether it is the first from sender
// for reason.
func (t *Tally) Note(sender, reason string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.counts == nil {
		t.counts, t.logged = map[string]uint64{}, map[[2]string]bool{}
	}
	t.counts[reason]++
	k := [2]string{sender, reason}
	if t.logged[k] || len(t.logged) > 10000 {
		return false
	}
	t.logged[k] = true
	return true
}

// Counts returns the refusals by reason.
func (t *Tally) Counts() map[string]uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]uint64, len(t.counts))
	for k, v := range t.counts {
		out[k] = v
	}
	return out
}

// Reason is a short name for why a statement was refused, for counters.
func Reason(err error) string {
	switch {
	case errors.Is(err, ErrNotEnrolled):
		return "not-enrolled"
	case errors.Is(err, ErrSignature):
		return "bad-signature"
	case errors.Is(err, ErrWrongSigner):
		return "speaks-for-another"
	case errors.Is(err, ErrUnknownVersion):
		return "unknown-version"
	case errors.Is(err, ErrMalformed):
		return "malformed"
	}
	return "other"
}

// SortedReasons lists a count map's reasons in order, for printing.
func SortedReasons(m map[string]uint64) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
