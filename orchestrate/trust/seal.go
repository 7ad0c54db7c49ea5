package trust

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
)

// Kind is what a host statement is; the signature covers it, so a
// statement of one kind never passes for another.
type Kind byte

// Statement kinds.
const (
	KindAck   Kind = 'K' // a command's completion ack
	KindHolds Kind = 'H' // "I hold every chunk of this release"
	KindState Kind = 'S' // the push/pull state blob
	KindMeta  Kind = 'M' // the advertised addresses, ports and labels (a claim)
)

// Wire form of a sealed statement:
//
//	magic | kind (1) | name length (1) | name | signature (64) | body
//
// The magic's last character is the format version ("1"): a statement of
// another version is refused as ErrUnknownVersion, never misread.
//
// The signature is the host key's over context | kind | name length | name
// | body.
const (
	sealMagic   = "SCATHST1"
	sealContext = "scatter host statement v1\x00"
)

// MaxSealOverhead is what Seal adds to a body at most.
const MaxSealOverhead = len(sealMagic) + 2 + 255 + ed25519.SignatureSize

func signed(kind Kind, name string, body []byte) []byte {
	m := make([]byte, 0, len(sealContext)+2+len(name)+len(body))
	m = append(m, sealContext...)
	m = append(m, byte(kind), byte(len(name)))
	m = append(m, name...)
	return append(m, body...)
}

// Sign returns name's signature of a statement of kind with body, for
// statements whose body travels apart from the signature (KindMeta).
func Sign(kind Kind, name string, body []byte, priv ed25519.PrivateKey) []byte {
	return ed25519.Sign(priv, signed(kind, name, body))
}

// Verify checks a signature made by Sign.
func Verify(kind Kind, name string, body, sig []byte, pub ed25519.PublicKey) bool {
	return len(pub) == ed25519.PublicKeySize && len(sig) == ed25519.SignatureSize &&
		ed25519.Verify(pub, signed(kind, name, body), sig)
}

// Seal signs body as a statement of kind by the host name.
func Seal(kind Kind, name string, body []byte, priv ed25519.PrivateKey) ([]byte, error) {
	if name == "" || len(name) > 255 {
		return nil, fmt.Errorf("seal: host name of %d bytes", len(name))
	}
	out := make([]byte, 0, len(sealMagic)+2+len(name)+ed25519.SignatureSize+len(body))
	out = append(out, sealMagic...)
	out = append(out, byte(kind), byte(len(name)))
	out = append(out, name...)
	out = append(out, Sign(kind, name, body, priv)...)
	return append(out, body...), nil
}

// Sealed is a statement split from its wire form, not yet verified.
type Sealed struct {
	Kind Kind
	Name string // who says it signed it
	Sig  []byte
	Body []byte
}

// Unseal splits a sealed statement of the wanted kind. It checks only the
// shape: Verify the signature against the signer's roster key. It never
// panics (FuzzUnseal).
func Unseal(kind Kind, b []byte) (Sealed, error) {
	h := len(sealMagic)
	if v, ok := unknownVersion(b, sealMagic[:h-1], sealMagic[h-1]); ok {
		return Sealed{}, fmt.Errorf("statement: %w %q; this build reads %q", ErrUnknownVersion, v, sealMagic[h-1])
	}
	if len(b) < h+2 || !bytes.HasPrefix(b, []byte(sealMagic)) {
		return Sealed{}, fmt.Errorf("statement: %w: bad header", ErrMalformed)
	}
	if Kind(b[h]) != kind {
		return Sealed{}, fmt.Errorf("statement: %w: kind %q, want %q", ErrMalformed, b[h], kind)
	}
	n := int(b[h+1])
	if n == 0 || len(b) < h+2+n+ed25519.SignatureSize {
		return Sealed{}, fmt.Errorf("statement: %w: truncated", ErrMalformed)
	}
	name := string(b[h+2 : h+2+n])
	sig := b[h+2+n : h+2+n+ed25519.SignatureSize]
	return Sealed{Kind: kind, Name: name, Sig: sig, Body: b[h+2+n+ed25519.SignatureSize:]}, nil
}

// Verify checks the statement's signature against pub.
func (s Sealed) Verify(pub ed25519.PublicKey) bool {
	return Verify(s.Kind, s.Name, s.Body, s.Sig, pub)
}
