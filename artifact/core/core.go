// Package core holds scatter's value types: the identifiers that every other
// package passes around (chunks, releases, hosts). It is a leaf: it imports
// nothing of ours, so any package may depend on it without cycles.
package core

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// HashSize is the size in bytes of every scatter content hash (SHA-256).
const HashSize = sha256.Size

// ChunkID names a chunk by the SHA-256 of its uncompressed bytes. Compressed
// encodings may differ between zstd versions; the ID never does.
type ChunkID [HashSize]byte

// ChunkIDOf returns the ID of the given uncompressed chunk bytes.
func ChunkIDOf(b []byte) ChunkID { return sha256.Sum256(b) }

func (c ChunkID) String() string { return hex.EncodeToString(c[:]) }

// Short is the first 12 hex digits, for messages meant for people.
func (c ChunkID) Short() string { return c.String()[:12] }

// ParseChunkID parses the 64-digit hex form.
func ParseChunkID(s string) (ChunkID, error) {
	var c ChunkID
	err := parseHash(c[:], s)
	if err != nil {
		return c, fmt.Errorf("chunk id %q: %w", s, err)
	}
	return c, nil
}

// ReleaseID names a release by the SHA-256 of its canonical manifest body, the
// bytes the deploy key signs. The same tree with the same metadata always
// yields the same ID.
type ReleaseID [HashSize]byte

func (r ReleaseID) String() string { return hex.EncodeToString(r[:]) }

// Short is the first 12 hex digits, for messages meant for people.
func (r ReleaseID) Short() string { return r.String()[:12] }

// IsZero reports whether r is the zero ID ("no release").
func (r ReleaseID) IsZero() bool { return r == ReleaseID{} }

// ParseReleaseID parses the 64-digit hex form.
func ParseReleaseID(s string) (ReleaseID, error) {
	var r ReleaseID
	err := parseHash(r[:], s)
	if err != nil {
		return r, fmt.Errorf("release id %q: %w", s, err)
	}
	return r, nil
}

func parseHash(dst []byte, s string) error {
	if len(s) != 2*len(dst) {
		return fmt.Errorf("want %d hex digits, got %d", 2*len(dst), len(s))
	}
	if s != strings.ToLower(s) {
		return fmt.Errorf("want lower-case hex")
	}
	if _, err := hex.Decode(dst, []byte(s)); err != nil {
		return err
	}
	return nil
}

// HostID names a target host in the cluster (its gossip member name).
type HostID string

// MarshalText encodes the ID as hex, for JSON and logs.
func (r ReleaseID) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText parses the hex form; the empty string is the zero ID.
func (r *ReleaseID) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*r = ReleaseID{}
		return nil
	}
	id, err := ParseReleaseID(string(b))
	if err != nil {
		return err
	}
	*r = id
	return nil
}

// MarshalText encodes the ID as hex.
func (c ChunkID) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// UnmarshalText parses the hex form.
func (c *ChunkID) UnmarshalText(b []byte) error {
	id, err := ParseChunkID(string(b))
	if err != nil {
		return err
	}
	*c = id
	return nil
}
