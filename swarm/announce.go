package swarm

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"scatter/artifact/core"
	"scatter/artifact/keys"
)

// Announcement tells every host that a release exists and how to fetch it.
// The deploy key signs it: a host acts on an announcement only if the
// signature verifies, and then only fetches — the manifest and every chunk
// are verified again on their own.
type Announcement struct {
	Repo    string         `json:"repo"`
	Version string         `json:"version"`
	Release core.ReleaseID `json:"release"`
	Parent  core.ReleaseID `json:"parent"`
	// Full and Delta are the info hashes of the release's torrents; Delta is
	// zero when the release has no parent.
	Full  InfoHash  `json:"full"`
	Delta InfoHash  `json:"delta"`
	Time  time.Time `json:"time"` // when it was published
}

// Signed announcement wire form: magic | signature (64) | JSON body.
const announceMagic = "SCATANN1"

// announceContext separates announcement signatures from the deploy key's
// other uses.
const announceContext = "scatter announcement v1\x00"

// maxAnnouncement bounds the encoded form; gossip packets are ~1400 bytes.
const maxAnnouncement = 1024

// Errors from OpenAnnouncement.
var (
	ErrBadAnnouncement = errors.New("malformed announcement")
	ErrUnsigned        = errors.New("announcement signature does not verify")
)

// SignAnnouncement encodes and signs a.
func SignAnnouncement(a *Announcement, priv ed25519.PrivateKey) ([]byte, error) {
	body, err := json.Marshal(a)
	if err != nil {
		return nil, err
	}
	out := append([]byte(announceMagic), ed25519.Sign(priv, append([]byte(announceContext), body...))...)
	out = append(out, body...)
	if len(out) > maxAnnouncement {
		return nil, fmt.Errorf("announcement of %d bytes exceeds %d", len(out), maxAnnouncement)
	}
	return out, nil
}

// OpenAnnouncement checks the signature with the trusted key, then decodes
// and validates the body. It never panics on any input (FuzzAnnouncement).
func OpenAnnouncement(b []byte, trusted ed25519.PublicKey) (*Announcement, error) {
	if len(b) > maxAnnouncement {
		return nil, fmt.Errorf("%w: %d bytes exceeds %d", ErrBadAnnouncement, len(b), maxAnnouncement)
	}
	if len(b) < len(announceMagic)+ed25519.SignatureSize || !bytes.HasPrefix(b, []byte(announceMagic)) {
		return nil, fmt.Errorf("%w: bad header", ErrBadAnnouncement)
	}
	sig := b[len(announceMagic) : len(announceMagic)+ed25519.SignatureSize]
	body := b[len(announceMagic)+ed25519.SignatureSize:]
	if !ed25519.Verify(trusted, append([]byte(announceContext), body...), sig) {
		return nil, fmt.Errorf("%w (trusted key %s)", ErrUnsigned, keys.Fingerprint(trusted))
	}
	var a Announcement
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadAnnouncement, err)
	}
	if a.Repo == "" || a.Release.IsZero() || a.Full.IsZero() {
		return nil, fmt.Errorf("%w: missing repo, release or info hash", ErrBadAnnouncement)
	}
	if a.Parent.IsZero() != a.Delta.IsZero() {
		return nil, fmt.Errorf("%w: a delta torrent needs a parent and vice versa", ErrBadAnnouncement)
	}
	return &a, nil
}
