package command

import (
	"crypto/ed25519"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"scatter/artifact/core"
)

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func newKey(t testing.TB) (ed25519.PublicKey, ed25519.PrivateKey) {
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

func sample(seq uint64) *Command {
	return &Command{
		Deploy: "d1", Seq: seq, Step: 2, Controller: "deploy1",
		Issued: t0, Expires: t0.Add(10 * time.Minute),
		Repo: "mediawiki", Kind: Promote, Release: core.ReleaseID{1, 2, 3},
		Hosts: []string{"mw1", "mw2"}, Restart: true, Checks: []string{"http-ok"},
		Hooks:   map[string][]string{AfterPromote: {"opcache-reset"}, BeforeCheck: {"warm"}},
		Timeout: time.Minute,
	}
}

func TestSignOpenRoundTrip(t *testing.T) {
	pub, priv := newKey(t)
	b, err := Sign(sample(1), priv)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Open(b, pub)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c, sample(1)) {
		t.Fatalf("round trip changed the command:\n%+v\n%+v", c, sample(1))
	}
	if !c.For("mw2") || c.For("mw3") {
		t.Fatal("For disagrees with Hosts")
	}
	want := []string{"opcache-reset", "restart", "warm", "http-ok"}
	if got := c.Actions(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Actions = %v, want %v", got, want)
	}
}

func TestOpenRefuses(t *testing.T) {
	pub, priv := newKey(t)
	_, otherPriv := newKey(t)
	good, _ := Sign(sample(1), priv)
	foreign, _ := Sign(sample(1), otherPriv)
	tampered := append([]byte(nil), good...)
	tampered[len(tampered)-3] ^= 1
	for name, tc := range map[string]struct {
		b    []byte
		want error
	}{
		"foreign key": {foreign, ErrSignature},
		"tampered":    {tampered, ErrSignature},
		"empty":       {nil, ErrMalformed},
		"garbage":     {[]byte("hello world, not a command at all, but long enough to have a header...."), ErrMalformed},
		"oversized":   {make([]byte, MaxSize+1), ErrMalformed},
	} {
		if _, err := Open(tc.b, pub); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", name, err, tc.want)
		}
	}
}

func TestSignRefusesInvalid(t *testing.T) {
	_, priv := newKey(t)
	for name, mut := range map[string]func(*Command){
		"no seq":          func(c *Command) { c.Seq = 0 },
		"bad repo":        func(c *Command) { c.Repo = "../etc" },
		"no hosts":        func(c *Command) { c.Hosts = nil },
		"unknown kind":    func(c *Command) { c.Kind = "exec" },
		"shell in action": func(c *Command) { c.Checks = []string{"rm -rf /"} },
		"unknown phase":   func(c *Command) { c.Hooks = map[string][]string{"whenever": {"x"}} },
		"no release":      func(c *Command) { c.Release = core.ReleaseID{} },
		"expiry order":    func(c *Command) { c.Expires = c.Issued },
		"too many hosts":  func(c *Command) { c.Hosts = strings.Fields(strings.Repeat("host-with-a-long-name ", 80)) },
	} {
		c := sample(1)
		mut(c)
		if _, err := Sign(c, priv); err == nil {
			t.Errorf("%s: signed", name)
		}
	}
}

func TestGuard(t *testing.T) {
	pub, priv := newKey(t)
	now := t0.Add(time.Minute)
	clock := func() time.Time { return now }
	path := filepath.Join(t.TempDir(), "seen")
	g, err := NewGuard(pub, path, clock)
	if err != nil {
		t.Fatal(err)
	}
	b1, _ := Sign(sample(1), priv)
	if _, err := g.Open(b1); err != nil {
		t.Fatalf("first admission: %v", err)
	}
	if c, err := g.Open(b1); !errors.Is(err, ErrReplay) || c == nil {
		t.Fatalf("replay: err = %v, command %v", err, c)
	}
	// A restarted daemon remembers.
	g2, err := NewGuard(pub, path, clock)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g2.Open(b1); !errors.Is(err, ErrReplay) {
		t.Fatalf("replay after restart: %v", err)
	}
	b2, _ := Sign(sample(2), priv)
	if _, err := g2.Open(b2); err != nil {
		t.Fatalf("next sequence number: %v", err)
	}

	expired := sample(3)
	expired.Issued, expired.Expires = t0.Add(-time.Hour), t0
	be, _ := Sign(expired, priv)
	if _, err := g2.Open(be); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired: %v", err)
	}
	future := sample(4)
	future.Issued, future.Expires = now.Add(10*time.Minute), now.Add(20*time.Minute)
	bf, _ := Sign(future, priv)
	if _, err := g2.Open(bf); !errors.Is(err, ErrExpired) {
		t.Fatalf("issued in the future: %v", err)
	}
	long := sample(5)
	long.Expires = long.Issued.Add(2 * MaxLifetime)
	bl, _ := Sign(long, priv)
	if _, err := g2.Open(bl); !errors.Is(err, ErrMalformed) {
		t.Fatalf("lifetime too long: %v", err)
	}
	// Entries are forgotten once their command expired.
	now = t0.Add(time.Hour)
	b6, _ := Sign(&Command{Deploy: "d2", Seq: 1, Controller: "c", Issued: now, Expires: now.Add(time.Minute),
		Repo: "r", Kind: Check, Hosts: []string{"h"}, Timeout: time.Second}, priv)
	if _, err := g2.Open(b6); err != nil {
		t.Fatal(err)
	}
	if n := len(g2.seen); n != 1 {
		t.Fatalf("seen set holds %d entries after expiry, want 1", n)
	}
}

func TestAckRoundTrip(t *testing.T) {
	a := &Ack{Deploy: "d", Step: 3, Host: "h", Repo: "r", Kind: Check, OK: false, Error: "check http-ok: status 500",
		Results: []Result{{Phase: "check", Action: "http-ok", Exit: -1, Error: "status 500"}}}
	b, err := EncodeAck(a)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeAck(b)
	if err != nil || !reflect.DeepEqual(got, a) {
		t.Fatalf("round trip: %v %+v", err, got)
	}
	if r, ok := got.Failed(); !ok || r.Action != "http-ok" {
		t.Fatalf("Failed = %+v %v", r, ok)
	}
	for _, bad := range []string{"", "{}", `{"deploy":"d","host":"h","step":-1}`, `{"deploy":"d","host":"h","x":1}`, "[1,2]"} {
		if _, err := DecodeAck([]byte(bad)); !errors.Is(err, ErrBadAck) {
			t.Errorf("DecodeAck(%q) = %v", bad, err)
		}
	}
}

func FuzzOpen(f *testing.F) {
	pub, priv := newKey(f)
	good, _ := Sign(sample(1), priv)
	f.Add(good)
	f.Add([]byte(magic))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Open(b, pub)
		if err == nil && c.Validate() != nil {
			t.Fatal("opened an invalid command")
		}
	})
}

func FuzzDecodeAck(f *testing.F) {
	b, _ := EncodeAck(&Ack{Deploy: "d", Host: "h", Step: 1, OK: true})
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		DecodeAck(b)
	})
}

// The clock skew tolerance is a setting: a command issued 90 s ahead of the
// host's clock is refused by default (1 min) and admitted with 2 min.
func TestGuardSkewSetting(t *testing.T) {
	pub, priv := newKey(t)
	clock := func() time.Time { return t0.Add(-90 * time.Second) }
	g, _ := NewGuard(pub, "", clock)
	b, _ := Sign(sample(1), priv)
	if _, err := g.Open(b); !errors.Is(err, ErrExpired) || !strings.Contains(err.Error(), "issued in the future") {
		t.Fatalf("default tolerance: %v", err)
	}
	g, _ = NewGuard(pub, "", clock)
	g.MaxSkew = 2 * time.Minute
	if _, err := g.Open(b); err != nil {
		t.Fatalf("2 min tolerance: %v", err)
	}
}

// What a deployer asks the daemon to sign is parsed and checked as Open
// would, and the daemon's signature (over SignContext and the body) opens.
func TestSigningRequest(t *testing.T) {
	pub, priv := newKey(t)
	b, err := Sign(sample(1), priv)
	if err != nil {
		t.Fatal(err)
	}
	body := b[len(magic)+ed25519.SignatureSize:]
	c, err := ParseSigningRequest(body)
	if err != nil || c.Deploy != "d1" {
		t.Fatalf("parse: %v %+v", err, c)
	}
	if _, err := ParseSigningRequest([]byte(`{"deploy":"d1"}`)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("an invalid command was accepted for signing: %v", err)
	}
	if _, err := Open(b, pub); err != nil {
		t.Fatal(err)
	}
}
