package command

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// ClockSkew is how far in the future a command's issue time may lie by
// default (Guard.MaxSkew). A host whose clock is behind by more refuses
// every command as issued in the future; one ahead by more than a
// command's lifetime (its step's timeout plus a minute) refuses it as
// expired. Either way its ack says so and carries its clock, and the
// deploy names the skew.
const ClockSkew = time.Minute

// Guard admits each validly signed, unexpired command once. It remembers
// (deploy, seq) pairs until their command expires, in memory and, when
// Path is set, in a file rewritten atomically (not fsynced) on every
// admission, so a restarted daemon still refuses a replay. Safe for
// concurrent use.
type Guard struct {
	// MaxSkew is how far in the future a command's issue time may lie;
	// zero means ClockSkew. Set it before the first Open or Admit.
	MaxSkew time.Duration

	key  ed25519.PublicKey
	path string
	now  func() time.Time

	mu   sync.Mutex
	seen map[seenKey]time.Time // -> expiry
}

type seenKey struct {
	Deploy string `json:"d"`
	Seq    uint64 `json:"s"`
}

type seenEntry struct {
	seenKey
	Expires time.Time `json:"e"`
}

// NewGuard returns a Guard trusting key. path ("" for none) keeps the seen
// set across restarts; now (nil: time.Now) is the clock.
func NewGuard(key ed25519.PublicKey, path string, now func() time.Time) (*Guard, error) {
	if now == nil {
		now = time.Now
	}
	g := &Guard{key: key, path: path, now: now, seen: map[seenKey]time.Time{}}
	if path == "" {
		return g, nil
	}
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return g, nil
	}
	if err != nil {
		return nil, fmt.Errorf("command guard: %w", err)
	}
	var entries []seenEntry
	if err := json.Unmarshal(b, &entries); err != nil {
		// A torn file loses the memory of commands at most MaxLifetime
		// old; refusing to start would be worse. Say so.
		return g, fmt.Errorf("command guard: %s unreadable, starting empty: %w", path, err)
	}
	for _, e := range entries {
		g.seen[e.seenKey] = e.Expires
	}
	return g, nil
}

// Open verifies b (see Open), checks that it is fresh and not seen before,
// and records it. The errors wrap ErrMalformed, ErrSignature, ErrExpired or
// ErrReplay; with ErrExpired and ErrReplay the decoded command is returned
// too, so the caller can answer a valid sender.
func (g *Guard) Open(b []byte) (*Command, error) {
	c, err := Open(b, g.key)
	if err != nil {
		return nil, err
	}
	if err := g.Admit(c); err != nil {
		return c, err
	}
	return c, nil
}

// Admit checks that a command already opened (signature verified) is
// fresh and not seen before, and records it. Hosts admit only commands
// addressed to them, so the others cost no disk write. Errors wrap
// ErrMalformed, ErrExpired or ErrReplay.
func (g *Guard) Admit(c *Command) error {
	now := g.now()
	switch {
	case c.Expires.Sub(c.Issued) > MaxLifetime:
		return fmt.Errorf("%w: lifetime %v exceeds %v", ErrMalformed, c.Expires.Sub(c.Issued), MaxLifetime)
	case !now.Before(c.Expires):
		return fmt.Errorf("%w: deploy %s seq %d expired at %s", ErrExpired, c.Deploy, c.Seq, c.Expires.Format(time.RFC3339))
	case c.Issued.After(now.Add(g.maxSkew())):
		return fmt.Errorf("%w: deploy %s seq %d issued in the future (%s, more than %v ahead of this host's clock): check the clocks", ErrExpired, c.Deploy, c.Seq, c.Issued.Format(time.RFC3339), g.maxSkew())
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	k := seenKey{c.Deploy, c.Seq}
	if _, ok := g.seen[k]; ok {
		return fmt.Errorf("%w: deploy %s seq %d", ErrReplay, c.Deploy, c.Seq)
	}
	for k, exp := range g.seen {
		if now.After(exp) {
			delete(g.seen, k)
		}
	}
	g.seen[k] = c.Expires
	if err := g.saveLocked(); err != nil {
		// Refuse what cannot be remembered: running it would open a
		// replay window after a restart.
		delete(g.seen, k)
		return err
	}
	return nil
}

func (g *Guard) maxSkew() time.Duration {
	if g.MaxSkew > 0 {
		return g.MaxSkew
	}
	return ClockSkew
}

func (g *Guard) saveLocked() error {
	if g.path == "" {
		return nil
	}
	entries := make([]seenEntry, 0, len(g.seen))
	for k, exp := range g.seen {
		entries = append(entries, seenEntry{k, exp})
	}
	b, err := json.Marshal(entries)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(g.path), ".seen-*")
	if err != nil {
		return fmt.Errorf("command guard: %w", err)
	}
	defer os.Remove(tmp.Name())
	// Written and renamed but not fsynced: the record survives the daemon
	// dying (kill -9), which is what a restart-then-replay needs; after a
	// power loss a command seen in its last seconds could run again until
	// it expires. An fsync per command cost seconds on a busy disk with
	// hundreds of commands in flight.
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("command guard: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("command guard: %w", err)
	}
	if err := os.Rename(tmp.Name(), g.path); err != nil {
		return fmt.Errorf("command guard: %w", err)
	}
	return nil
}
