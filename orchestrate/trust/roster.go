package trust

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"scatter/artifact/keys"
)

// Role names on the roster.
const (
	RoleHost   = "host"
	RoleOrigin = "origin" // the deploy host: serves its build store
)

// Entry is one enrolled host: its name, its key, and the labels the
// operator vouches for. Nothing a host advertises about itself overrides
// them.
type Entry struct {
	Name string            `json:"name"`
	Key  ed25519.PublicKey `json:"key"`
	DC   string            `json:"dc,omitempty"`
	Rack string            `json:"rack,omitempty"`
	Role string            `json:"role,omitempty"` // RoleHost ("" too) or RoleOrigin
}

// IsOrigin reports whether the roster names this host the origin.
func (e Entry) IsOrigin() bool { return e.Role == RoleOrigin }

// Roster is the deploy-signed list of enrolled hosts.
type Roster struct {
	// Version orders rosters: a host never accepts one older than the
	// newest it has seen.
	Version uint64    `json:"version"`
	Issued  time.Time `json:"issued"`
	Hosts   []Entry   `json:"hosts"` // sorted by name, names unique
}

// Lookup returns the entry of the named host.
func (r *Roster) Lookup(name string) (Entry, bool) {
	i, ok := slices.BinarySearchFunc(r.Hosts, name, func(e Entry, n string) int { return strings.Compare(e.Name, n) })
	if !ok {
		return Entry{}, false
	}
	return r.Hosts[i], true
}

// Clone returns a deep copy.
func (r *Roster) Clone() *Roster {
	c := *r
	c.Hosts = make([]Entry, len(r.Hosts))
	for i, e := range r.Hosts {
		e.Key = slices.Clone(e.Key)
		c.Hosts[i] = e
	}
	return &c
}

// nameRE is a host name: what memberlist, commands and file names accept.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$`)

// labelRE bounds a label: short, printable, no separators that status
// tables use.
var labelRE = regexp.MustCompile(`^[A-Za-z0-9._-]{0,64}$`)

// Validate checks the roster's shape.
func (r *Roster) Validate() error {
	for i, e := range r.Hosts {
		switch {
		case !nameRE.MatchString(e.Name):
			return fmt.Errorf("roster: bad host name %q", e.Name)
		case len(e.Key) != ed25519.PublicKeySize:
			return fmt.Errorf("roster: host %s: key is %d bytes, want %d", e.Name, len(e.Key), ed25519.PublicKeySize)
		case !labelRE.MatchString(e.DC) || !labelRE.MatchString(e.Rack):
			return fmt.Errorf("roster: host %s: bad dc or rack label", e.Name)
		case e.Role != "" && e.Role != RoleHost && e.Role != RoleOrigin:
			return fmt.Errorf("roster: host %s: unknown role %q (want %s or %s)", e.Name, e.Role, RoleHost, RoleOrigin)
		case i > 0 && r.Hosts[i-1].Name >= e.Name:
			return fmt.Errorf("roster: host names not sorted or not unique at %q", e.Name)
		}
	}
	return nil
}

// Wire form: magic | deploy-key signature (64) | JSON body.
const (
	rosterMagic   = "SCATRST1"
	rosterContext = "scatter roster v1\x00"
	// MaxRosterSize bounds an encoded roster: some 5000 hosts.
	MaxRosterSize = 1 << 20
)

// Errors, for errors.Is.
var (
	ErrMalformed   = errors.New("malformed")
	ErrSignature   = errors.New("signature does not verify")
	ErrOlderRoster = errors.New("roster older than one already seen")
	ErrConflict    = errors.New("roster conflicts with one of the same version")
	ErrNotEnrolled = errors.New("not enrolled")
	ErrWrongSigner = errors.New("signed by another host")
	// ErrUnknownVersion: a statement or roster in a format version this
	// build does not read, most likely from a newer scatter. It is refused
	// whole, never read as the version this build knows.
	ErrUnknownVersion = errors.New("unknown format version")
)

// unknownVersion reports whether b starts with prefix (a magic without its
// trailing version digit) followed by a version other than want.
func unknownVersion(b []byte, prefix string, want byte) (byte, bool) {
	if len(b) <= len(prefix) || !bytes.HasPrefix(b, []byte(prefix)) || b[len(prefix)] == want {
		return 0, false
	}
	return b[len(prefix)], true
}

// RosterContext starts every message a roster signature covers; the JSON
// body follows it. The origin daemon signs such a message for a deployer
// only after ParseRosterRequest accepts it.
const RosterContext = rosterContext

// ParseRosterRequest decodes and validates the body of a roster to be
// signed (the bytes after RosterContext), as OpenRoster would.
func ParseRosterRequest(body []byte) (*Roster, error) {
	if len(rosterMagic)+ed25519.SignatureSize+len(body) > MaxRosterSize {
		return nil, fmt.Errorf("roster: %w: %d bytes", ErrMalformed, len(body))
	}
	return decodeRoster(body)
}

// decodeRoster decodes and validates a roster's signed body, strictly.
func decodeRoster(body []byte) (*Roster, error) {
	var r Roster
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("roster: %w: %v", ErrMalformed, err)
	}
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return &r, nil
}

// SignRoster sorts, validates, encodes and signs r with the deploy key: in
// hand, or a signer that asks the origin daemon, which keeps it.
func SignRoster(r *Roster, deploy crypto.Signer) ([]byte, error) {
	r = r.Clone()
	slices.SortFunc(r.Hosts, func(a, b Entry) int { return strings.Compare(a.Name, b.Name) })
	for i := range r.Hosts {
		if r.Hosts[i].Role == RoleHost {
			r.Hosts[i].Role = ""
		}
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	body, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("roster: %w", err)
	}
	if n := len(rosterMagic) + ed25519.SignatureSize + len(body); n > MaxRosterSize {
		return nil, fmt.Errorf("roster: %d bytes exceeds %d", n, MaxRosterSize)
	}
	out, err := keys.SealEnvelope(deploy, rosterMagic, rosterContext, body)
	if err != nil {
		return nil, fmt.Errorf("roster: %w", err)
	}
	return out, nil
}

// OpenRoster verifies b against the deploy public key and decodes it. It
// never panics (FuzzOpenRoster).
func OpenRoster(b []byte, deploy ed25519.PublicKey) (*Roster, error) {
	if len(b) > MaxRosterSize {
		return nil, fmt.Errorf("roster: %w: %d bytes", ErrMalformed, len(b))
	}
	if v, ok := unknownVersion(b, rosterMagic[:len(rosterMagic)-1], rosterMagic[len(rosterMagic)-1]); ok {
		return nil, fmt.Errorf("roster: %w %q; this build reads %q", ErrUnknownVersion, v, rosterMagic[len(rosterMagic)-1])
	}
	body, err := keys.OpenEnvelope(b, rosterMagic, rosterContext, deploy)
	if errors.Is(err, keys.ErrEnvelopeHeader) {
		return nil, fmt.Errorf("roster: %w: bad header", ErrMalformed)
	} else if err != nil {
		return nil, fmt.Errorf("roster: %w (trusted deploy key %s)", ErrSignature, keys.Fingerprint(deploy))
	}
	return decodeRoster(body)
}
