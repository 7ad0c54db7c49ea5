package swarm

import (
	"encoding/hex"
	"fmt"

	"github.com/anacrolix/torrent/metainfo"
)

// State is where a release stands on one host. Its text form ("queued",
// "fetching", "staged", "failed") is what status and its JSON show.
type State uint8

const (
	// Queued: announced, waiting its turn (a repo fetches one release at a
	// time, oldest first, so each can be the next one's delta base).
	Queued State = iota
	// Fetching: metadata, pieces and staging in progress.
	Fetching
	// Staged: every chunk is in the store and the tree is materialized
	// under releases/<id> (on the origin: seeded). The host serves it.
	Staged
	// Failed: the last attempt failed; it is queued again after a while.
	Failed
)

var stateNames = [...]string{Queued: "queued", Fetching: "fetching", Staged: "staged", Failed: "failed"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", s)
}

// MarshalText encodes the state as its name.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText parses a state's name.
func (s *State) UnmarshalText(b []byte) error {
	for i, name := range stateNames {
		if string(b) == name {
			*s = State(i)
			return nil
		}
	}
	return fmt.Errorf("unknown release state %q", b)
}

// InfoHash names a torrent: the SHA-1 of its bencoded info dictionary
// (BitTorrent v1). It is our own type so that announcements, which other
// packages read, carry no anacrolix type; its text form is the same 40 hex
// digits as anacrolix's.
type InfoHash [20]byte

// InfoHashOf returns the info hash of info bytes.
func InfoHashOf(info []byte) InfoHash { return InfoHash(metainfo.HashBytes(info)) }

func (h InfoHash) String() string { return hex.EncodeToString(h[:]) }

// IsZero reports whether h is the zero hash ("no such torrent").
func (h InfoHash) IsZero() bool { return h == InfoHash{} }

// MarshalText encodes the hash as 40 hex digits.
func (h InfoHash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText parses 40 hex digits.
func (h *InfoHash) UnmarshalText(b []byte) error {
	if len(b) != 2*len(h) {
		return fmt.Errorf("info hash: want %d hex digits, got %d", 2*len(h), len(b))
	}
	_, err := hex.Decode(h[:], b)
	return err
}

func (h InfoHash) anacrolix() metainfo.Hash { return metainfo.Hash(h) }
