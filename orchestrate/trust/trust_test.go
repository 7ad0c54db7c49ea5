package trust

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func newKey(t testing.TB) ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func pub(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

func TestBookRefusesOlderAndConflictingRosters(t *testing.T) {
	deploy, other := newKey(t), newKey(t)
	path := filepath.Join(t.TempDir(), "roster")
	b, err := NewBook(pub(deploy), path)
	if err != nil {
		t.Fatal(err)
	}
	r1 := &Roster{Version: 1, Hosts: []Entry{{Name: "a", Key: pub(newKey(t))}}}
	raw1, _ := SignRoster(r1, deploy)
	r2 := Next(r1, time.Now())
	r2.Put(Entry{Name: "b", Key: pub(newKey(t)), DC: "eqiad"})
	raw2, _ := SignRoster(r2, deploy)
	conflict := r2.Clone()
	conflict.Remove("a")
	rawConflict, _ := SignRoster(conflict, deploy)
	forged, _ := SignRoster(Next(r2, time.Now()), other)

	if ch, err := b.Offer(raw1); !ch || err != nil {
		t.Fatalf("first roster: %v %v", ch, err)
	}
	if ch, err := b.Offer(raw2); !ch || err != nil {
		t.Fatalf("newer roster: %v %v", ch, err)
	}
	if ch, err := b.Offer(raw2); ch || err != nil {
		t.Fatalf("same roster again: %v %v", ch, err)
	}
	if _, err := b.Offer(raw1); !errors.Is(err, ErrOlderRoster) {
		t.Fatalf("older roster: %v", err)
	}
	if _, err := b.Offer(rawConflict); !errors.Is(err, ErrConflict) {
		t.Fatalf("conflicting roster: %v", err)
	}
	if _, err := b.Offer(forged); !errors.Is(err, ErrSignature) {
		t.Fatalf("roster signed by another key: %v", err)
	}
	// After a restart too.
	b, err = NewBook(pub(deploy), path)
	if err != nil {
		t.Fatal(err)
	}
	if b.Version() != 2 {
		t.Fatalf("reloaded version %d", b.Version())
	}
	if _, err := b.Offer(raw1); !errors.Is(err, ErrOlderRoster) {
		t.Fatalf("older roster after a restart: %v", err)
	}
	if e, ok := b.Lookup("b"); !ok || e.DC != "eqiad" {
		t.Fatalf("lookup b: %+v %v", e, ok)
	}
}

func TestStatements(t *testing.T) {
	deploy, a, mallory := newKey(t), newKey(t), newKey(t)
	b, _ := NewBook(pub(deploy), "")
	raw, _ := SignRoster(&Roster{Version: 1, Hosts: []Entry{{Name: "a", Key: pub(a)}, {Name: "m", Key: pub(mallory)}}}, deploy)
	if _, err := b.Offer(raw); err != nil {
		t.Fatal(err)
	}
	good, _ := Seal(KindAck, "a", []byte("body"), a)
	if s, _, err := b.Open(KindAck, good); err != nil || s.Name != "a" || string(s.Body) != "body" {
		t.Fatalf("good statement: %+v %v", s, err)
	}
	if _, _, err := b.Open(KindHolds, good); !errors.Is(err, ErrMalformed) {
		t.Fatalf("an ack passed for holds: %v", err)
	}
	inName, _ := Seal(KindAck, "a", []byte("body"), mallory)
	if _, _, err := b.Open(KindAck, inName); !errors.Is(err, ErrSignature) {
		t.Fatalf("signed in another's name: %v", err)
	}
	stranger, _ := Seal(KindAck, "z", []byte("body"), newKey(t))
	if _, _, err := b.Open(KindAck, stranger); !errors.Is(err, ErrNotEnrolled) {
		t.Fatalf("not enrolled: %v", err)
	}
	tampered := append([]byte(nil), good...)
	tampered[len(tampered)-1] ^= 1
	if _, _, err := b.Open(KindAck, tampered); !errors.Is(err, ErrSignature) {
		t.Fatalf("tampered: %v", err)
	}
}

func TestApproveSkipsNewKeysAndOriginClaims(t *testing.T) {
	r := &Roster{}
	cands := []Candidate{
		{Name: "a", Key: pub(newKey(t)), DC: "eqiad"},
		{Name: "b", Key: pub(newKey(t)), NewKey: true, Rostered: pub(newKey(t))},
		{Name: "o", Key: pub(newKey(t)), Role: RoleOrigin},
	}
	approved, skipped, err := Approve(r, cands, nil, true)
	if err != nil || len(approved) != 1 || approved[0] != "a" || len(skipped) != 2 {
		t.Fatalf("approve all: %v %v %v", approved, skipped, err)
	}
	if e, _ := r.Lookup("a"); e.DC != "eqiad" {
		t.Fatalf("labels not taken: %+v", e)
	}
	if _, _, err := Approve(r, cands, []string{"b", "o"}, false); err != nil {
		t.Fatal(err)
	}
	if e, _ := r.Lookup("o"); !e.IsOrigin() {
		t.Fatal("origin approved by name lost its role")
	}
	if _, _, err := Approve(r, cands, []string{"nobody"}, false); err == nil {
		t.Fatal("approved a host that is not pending")
	}
}

func TestHostKeyCreatedOnceAndPrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d", "host.key")
	k1, created, err := LoadOrCreateHostKey(path)
	if err != nil || !created {
		t.Fatalf("create: %v %v", created, err)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode().Perm())
	}
	k2, created, err := LoadOrCreateHostKey(path)
	if err != nil || created || !k1.Equal(k2) {
		t.Fatalf("reload: %v %v", created, err)
	}
}

func FuzzOpenRoster(f *testing.F) {
	deploy := newKey(f)
	raw, _ := SignRoster(&Roster{Version: 1, Hosts: []Entry{{Name: "a", Key: pub(newKey(f)), DC: "x", Role: RoleOrigin}}}, deploy)
	f.Add(raw)
	f.Add([]byte(rosterMagic))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := OpenRoster(b, pub(deploy))
		if err == nil {
			if err := r.Validate(); err != nil {
				t.Fatalf("opened an invalid roster: %v", err)
			}
		}
	})
}

func FuzzUnseal(f *testing.F) {
	k := newKey(f)
	good, _ := Seal(KindHolds, "a", []byte(`{"host":"a"}`), k)
	f.Add(good)
	f.Add([]byte(sealMagic + "H\x00"))
	f.Add([]byte(sealMagic + "H\xff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Unseal(KindHolds, b)
		if err == nil && s.Verify(pub(k)) && s.Name != "a" {
			t.Fatalf("a statement by %q verified with a's key", s.Name)
		}
	})
}

// A statement or roster of a format version this build does not read (a
// newer scatter's) is refused as ErrUnknownVersion, with that reason, and
// never misread as version 1.
func TestFutureFormatVersionIsRefused(t *testing.T) {
	k := newKey(t)
	good, err := Seal(KindState, "a", []byte(`{}`), k)
	if err != nil {
		t.Fatal(err)
	}
	future := bytes.Clone(good)
	future[len(sealMagic)-1] = '2'
	_, err = Unseal(KindState, future)
	if !errors.Is(err, ErrUnknownVersion) || Reason(err) != "unknown-version" || !strings.Contains(err.Error(), `'2'`) {
		t.Fatalf("Unseal of a version-2 statement: %v (reason %s)", err, Reason(err))
	}
	if _, err := Unseal(KindState, good); err != nil {
		t.Fatalf("version 1 still opens: %v", err)
	}
	r := &Roster{Version: 1}
	raw, err := SignRoster(r, k)
	if err != nil {
		t.Fatal(err)
	}
	raw[len(rosterMagic)-1] = '2'
	if _, err := OpenRoster(raw, k.Public().(ed25519.PublicKey)); !errors.Is(err, ErrUnknownVersion) {
		t.Fatalf("OpenRoster of a version-2 roster: %v", err)
	}
}
