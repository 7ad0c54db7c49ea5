package trust

import (
	"crypto/ed25519"
	"fmt"
	"slices"
	"strings"
	"time"

	"scatter/artifact/keys"
)

// Candidate is a host seen in gossip whose key the roster does not hold:
// a pending host, or (NewKey) a roster name advertising another key.
// Labels are what it claims; approving one vouches for them.
type Candidate struct {
	Name     string            `json:"name"`
	Key      ed25519.PublicKey `json:"key"`
	DC       string            `json:"dc,omitempty"`
	Rack     string            `json:"rack,omitempty"`
	Role     string            `json:"role,omitempty"`
	NewKey   bool              `json:"new_key,omitempty"`
	Rostered ed25519.PublicKey `json:"rostered,omitempty"` // the roster's key when NewKey
}

// Fingerprint is the candidate key's fingerprint.
func (c Candidate) Fingerprint() string { return keys.Fingerprint(c.Key) }

// Next returns a copy of r as the base of its successor: version one up,
// issued now.
func Next(r *Roster, now time.Time) *Roster {
	n := r.Clone()
	n.Version++
	n.Issued = now.UTC()
	return n
}

// Put adds or replaces an entry.
func (r *Roster) Put(e Entry) {
	i, ok := slices.BinarySearchFunc(r.Hosts, e.Name, func(x Entry, n string) int { return strings.Compare(x.Name, n) })
	if ok {
		r.Hosts[i] = e
		return
	}
	r.Hosts = slices.Insert(r.Hosts, i, e)
}

// Remove drops the named host; it reports whether it was there.
func (r *Roster) Remove(name string) bool {
	i, ok := slices.BinarySearchFunc(r.Hosts, name, func(x Entry, n string) int { return strings.Compare(x.Name, n) })
	if ok {
		r.Hosts = slices.Delete(r.Hosts, i, i+1)
	}
	return ok
}

// Skipped is a candidate Approve left out, and why.
type Skipped struct {
	Name, Why string
}

// Approve puts candidates on r: those named, or every plain pending one
// with all. A known name with a new key, or a host claiming the origin
// role, is approved only when named: all skips it, for an operator to
// decide. Naming a host that is not a
// candidate is an error.
func Approve(r *Roster, cands []Candidate, names []string, all bool) (approved []string, skipped []Skipped, err error) {
	byName := map[string]Candidate{}
	for _, c := range cands {
		byName[c.Name] = c
	}
	if all {
		for _, c := range cands {
			if c.NewKey {
				skipped = append(skipped, Skipped{c.Name, fmt.Sprintf("advertises a new key %s (roster has %s): approve it by name if the host was reinstalled",
					keys.Fingerprint(c.Key), keys.Fingerprint(c.Rostered))})
				continue
			}
			if c.Role == RoleOrigin {
				skipped = append(skipped, Skipped{c.Name, "claims the origin role: approve it by name if it is the deploy host"})
				continue
			}
			names = append(names, c.Name)
		}
	}
	for _, n := range names {
		c, ok := byName[n]
		if !ok {
			return nil, nil, fmt.Errorf("approve %s: not pending (see `scatter hosts pending`)", n)
		}
		r.Put(Entry{Name: c.Name, Key: c.Key, DC: c.DC, Rack: c.Rack, Role: c.Role})
		approved = append(approved, n)
	}
	return approved, skipped, nil
}
