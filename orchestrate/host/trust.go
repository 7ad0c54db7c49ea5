package host

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"scatter/artifact/core"
	"scatter/artifact/keys"
	"scatter/orchestrate/membership"
	"scatter/orchestrate/trust"
)

// Trust states of a member, as status and the hosts list show them.
const (
	TrustEnrolled = "enrolled" // on the roster, advertising the roster's key, signed meta
	TrustPending  = "pending"  // not on the roster: nothing it says counts
	TrustNewKey   = "new-key"  // a roster name advertising another key: not trusted until approved
	TrustBadMeta  = "bad-meta" // a roster name whose advertised meta does not verify
)

// msgRoster carries a deploy-signed roster by gossip when it fits one
// broadcast; push/pull state carries it always.
const msgRoster = 'R'

// metaClaim is what a host signs about its own advertisement: the address
// and ports others reach it on, its key, and the labels it claims (which
// count only where the roster has none to say).
type metaClaim struct {
	Addr string `json:"addr"`
	BT   int    `json:"bt"`
	HTTP int    `json:"http"`
	Role string `json:"role,omitempty"`
	DC   string `json:"dc,omitempty"`
	Rack string `json:"rack,omitempty"`
	// Build is signed too: status shows it, and it must not be
	// forgeable by another member.
	Build string `json:"build,omitempty"`
	Key   string `json:"key"`
}

func claimOf(addr string, m membership.Meta) []byte {
	b, _ := json.Marshal(metaClaim{Addr: addr, BT: m.Ports["bt"], HTTP: m.Ports["http"],
		Role: m.Role, DC: m.DC, Rack: m.Rack, Build: m.Build, Key: m.Key})
	return b
}

// signMeta adds the host key and its signature to m.
func (h *Host) signMeta(m membership.Meta) membership.Meta {
	return SignMeta(h.cfg.Name, h.cfg.BindAddr, m, h.key)
}

func encodeKey(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// metaKey decodes the key a member advertises (nil if none or garbage).
func metaKey(m membership.Member) ed25519.PublicKey {
	k, err := base64.StdEncoding.DecodeString(m.Meta.Key)
	if err != nil || len(k) != ed25519.PublicKeySize {
		return nil
	}
	return k
}

// metaSigned reports whether m's advertisement is signed by pub. Results
// are cached by (name, signature, key): Peers asks often.
func (h *Host) metaSigned(m membership.Member, pub ed25519.PublicKey) bool {
	ck := m.Name + "\x00" + m.Meta.Sig + "\x00" + string(pub) + "\x00" + m.Addr.String()
	h.metaMu.Lock()
	ok, hit := h.metaOK[ck]
	h.metaMu.Unlock()
	if hit {
		return ok
	}
	sig, err := base64.StdEncoding.DecodeString(m.Meta.Sig)
	ok = err == nil && trust.Verify(trust.KindMeta, m.Name, claimOf(m.Addr.String(), m.Meta), sig, pub)
	h.metaMu.Lock()
	if len(h.metaOK) > 1<<14 {
		clear(h.metaOK)
	}
	h.metaOK[ck] = ok
	h.metaMu.Unlock()
	return ok
}

// classify says how far a member is trusted, with its roster entry when it
// is enrolled.
func (h *Host) classify(m membership.Member) (trust.Entry, string) {
	e, ok := h.book.Lookup(m.Name)
	mk := metaKey(m)
	if !ok {
		return trust.Entry{}, TrustPending
	}
	if mk == nil || !bytes.Equal(mk, e.Key) {
		return e, TrustNewKey
	}
	if !h.metaSigned(m, e.Key) {
		return e, TrustBadMeta
	}
	return e, TrustEnrolled
}

// enrolled returns the live members whose advertisement the roster
// vouches for, with their entries, this host included if it is enrolled.
func (h *Host) enrolled() []enrolledMember {
	var out []enrolledMember
	for _, m := range h.ml.Members() {
		if !m.Alive {
			continue
		}
		if e, st := h.classify(m); st == TrustEnrolled {
			out = append(out, enrolledMember{m, e})
		}
	}
	return out
}

type enrolledMember struct {
	membership.Member
	trust.Entry
}

func roleOf(e trust.Entry) string {
	if e.IsOrigin() {
		return trust.RoleOrigin
	}
	return trust.RoleHost
}

// refuse counts a refused statement and logs it once per sender and
// reason.
func (h *Host) refuse(what, sender string, err error) {
	reason := what + ":" + trust.Reason(err)
	if h.tally.Note(sender, reason) {
		h.log.Warn("refused "+what+" (logged once per sender and reason)", "from", sender, "reason", trust.Reason(err), "err", err)
	}
}

// SetRoster takes a deploy-signed roster (from the operator over the
// control socket, or a test helper), keeps it if it is newer than the one
// held, and spreads it. An older roster is refused (trust.ErrOlderRoster).
func (h *Host) SetRoster(raw []byte) error {
	changed, err := h.book.Offer(raw)
	if err != nil {
		return err
	}
	if !changed {
		return nil
	}
	h.rosterChanged()
	if len(raw)+1 <= membership.MaxBroadcastLimit(h.cfg.Label) && len(raw)+1 <= 1024 {
		if err := h.ml.Broadcast(append([]byte{msgRoster}, raw...)); err != nil && !errors.Is(err, membership.ErrDuplicate) {
			h.log.Warn("broadcast roster", "err", err)
		}
	}
	return nil
}

// offerRoster takes a roster a peer passed on.
func (h *Host) offerRoster(raw []byte, from string) {
	changed, err := h.book.Offer(raw)
	switch {
	case errors.Is(err, trust.ErrOlderRoster):
		// Routine: a peer that has not caught up yet.
	case err != nil:
		h.refuse("roster", from, err)
	case changed:
		h.rosterChanged()
	}
}

// rosterChanged forgets what hosts no longer enrolled said, reports new
// keys and pending hosts, and republishes the state blob (which carries
// the roster on).
func (h *Host) rosterChanged() {
	r := h.book.Roster()
	h.log.Info("roster", "version", r.Version, "hosts", len(r.Hosts))
	h.mu.Lock()
	for name := range h.holds {
		if _, ok := r.Lookup(name); !ok {
			delete(h.holds, name)
			h.holdsGen++
		}
	}
	for name := range h.states {
		if _, ok := r.Lookup(name); !ok && name != h.cfg.Name {
			delete(h.states, name)
		}
	}
	h.mu.Unlock()
	for _, m := range h.ml.Members() {
		h.checkMember(m)
	}
	h.changed()
}

// checkMember logs, once per name and key, a member that is not trusted:
// loudly for a known name with a new key.
func (h *Host) checkMember(m membership.Member) {
	e, st := h.classify(m)
	if st == TrustEnrolled {
		return
	}
	fp := keys.Fingerprint(metaKey(m))
	h.metaMu.Lock()
	k := m.Name + "\x00" + fp + "\x00" + st
	seen := h.warned[k]
	h.warned[k] = true
	h.metaMu.Unlock()
	if seen {
		return
	}
	switch st {
	case TrustNewKey:
		h.log.Error("KNOWN HOST ADVERTISES A NEW KEY: nothing it says counts until an operator approves the key (scatter hosts approve NAME) or revokes the host",
			"member", m.Name, "advertised", fp, "roster", keys.Fingerprint(e.Key))
	case TrustBadMeta:
		h.log.Warn("member's advertisement does not verify against its roster key: ignored", "member", m.Name)
	case TrustPending:
		h.log.Info("pending host in gossip: not on the roster, nothing it says counts (scatter hosts approve NAME)",
			"member", m.Name, "key", fp)
	}
}

// HostKey returns this host's public key.
func (h *Host) HostKey() ed25519.PublicKey { return h.key.Public().(ed25519.PublicKey) }

// Roster returns the signed roster this host holds (nil if none).
func (h *Host) Roster() []byte { return h.book.Raw() }

// RosterVersion is the version of the roster this host holds.
func (h *Host) RosterVersion() uint64 { return h.book.Version() }

// Refused returns the counts of refused statements by kind and reason.
func (h *Host) Refused() map[string]uint64 { return h.tally.Counts() }

// HostsView is what `scatter hosts` shows: the roster's hosts, and the
// members gossip sees that the roster does not vouch for.
type HostsView struct {
	Version  uint64            `json:"version"`
	Enrolled []EnrolledHost    `json:"enrolled"`
	Pending  []trust.Candidate `json:"pending"`
	Refused  map[string]uint64 `json:"refused,omitempty"`
}

// EnrolledHost is a roster entry and how gossip sees that host now.
type EnrolledHost struct {
	trust.Entry
	Fingerprint string `json:"fingerprint"`
	Alive       bool   `json:"alive"`
	Trust       string `json:"trust,omitempty"` // as classified, when alive
}

// Hosts lists the roster's hosts and the pending members (new keys
// included), with their keys.
func (h *Host) Hosts() HostsView {
	r := h.book.Roster()
	v := HostsView{Version: r.Version, Refused: h.tally.Counts()}
	alive := map[string]string{}
	for _, m := range h.ml.Members() {
		if !m.Alive {
			continue
		}
		e, st := h.classify(m)
		alive[m.Name] = st
		if st != TrustPending && st != TrustNewKey {
			continue
		}
		mk := metaKey(m)
		if mk == nil {
			// An older daemon, or one whose key does not decode: nothing
			// to approve.
			continue
		}
		sig, err := base64.StdEncoding.DecodeString(m.Meta.Sig)
		if err != nil || !trust.Verify(trust.KindMeta, m.Name, claimOf(m.Addr.String(), m.Meta), sig, mk) {
			continue // it cannot show it holds the key it advertises
		}
		c := trust.Candidate{Name: m.Name, Key: mk, DC: m.Meta.DC, Rack: m.Meta.Rack, Role: m.Meta.Role}
		if c.Role == trust.RoleHost {
			c.Role = ""
		}
		if st == TrustNewKey {
			c.NewKey, c.Rostered = true, e.Key
		}
		v.Pending = append(v.Pending, c)
	}
	for _, e := range r.Hosts {
		st, ok := alive[e.Name]
		v.Enrolled = append(v.Enrolled, EnrolledHost{Entry: e, Fingerprint: keys.Fingerprint(e.Key), Alive: ok, Trust: st})
	}
	sort.Slice(v.Pending, func(i, j int) bool { return v.Pending[i].Name < v.Pending[j].Name })
	return v
}

// checkSigner refuses a statement whose body speaks for another host.
func checkSigner(signer, about string) error {
	if signer != about {
		return fmt.Errorf("%w: %s signed a statement about %s", trust.ErrWrongSigner, signer, about)
	}
	return nil
}

// EditRoster is how the deploy host's operator changes the roster: read
// the daemon's roster and hosts, let edit change the successor (version one
// up), sign it with the deploy key and hand it to the daemon, which keeps
// and spreads it. The daemon refuses it if another roster got newer
// meanwhile; run it again.
func EditRoster(ctx context.Context, c *Control, deployKey crypto.Signer, now time.Time,
	edit func(next *trust.Roster, v *HostsView) error) (*trust.Roster, error) {
	raw, err := c.Roster(ctx)
	if err != nil {
		return nil, err
	}
	cur := &trust.Roster{}
	if len(raw) > 0 {
		if cur, err = trust.OpenRoster(raw, deployKey.Public().(ed25519.PublicKey)); err != nil {
			return nil, fmt.Errorf("the daemon's roster: %w", err)
		}
	}
	v, err := c.Hosts(ctx)
	if err != nil {
		return nil, err
	}
	next := trust.Next(cur, now)
	if err := edit(next, v); err != nil {
		return nil, err
	}
	signed, err := trust.SignRoster(next, deployKey)
	if err != nil {
		return nil, err
	}
	if err := c.SetRoster(ctx, signed); err != nil {
		return nil, fmt.Errorf("hand the roster to the daemon: %w", err)
	}
	return next, nil
}

// Holders returns the members this host believes hold every chunk of a
// release: enrolled hosts that said so, signed.
func (h *Host) Holders(id core.ReleaseID) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for name, ids := range h.holds {
		if ids[id] {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}
