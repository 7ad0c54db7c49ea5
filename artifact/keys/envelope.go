package keys

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"errors"
)

// A signed envelope is magic | ed25519 signature (64 bytes) | body, the
// signature over context followed by body. Commands and rosters travel in
// one; the context keeps a signature made for one kind from verifying as
// another.

// Errors of OpenEnvelope.
var (
	ErrEnvelopeHeader    = errors.New("bad header")
	ErrEnvelopeSignature = errors.New("signature does not verify")
)

// SealEnvelope signs body under context with signer and wraps it.
func SealEnvelope(signer crypto.Signer, magic, context string, body []byte) ([]byte, error) {
	sig, err := signer.Sign(nil, append([]byte(context), body...), crypto.Hash(0))
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(magic)+len(sig)+len(body))
	out = append(append(append(out, magic...), sig...), body...)
	return out, nil
}

// OpenEnvelope checks b's magic and its signature under context with the
// trusted key, and returns the body (a slice of b). It never panics.
func OpenEnvelope(b []byte, magic, context string, trusted ed25519.PublicKey) ([]byte, error) {
	if len(b) < len(magic)+ed25519.SignatureSize || !bytes.HasPrefix(b, []byte(magic)) {
		return nil, ErrEnvelopeHeader
	}
	sig := b[len(magic) : len(magic)+ed25519.SignatureSize]
	body := b[len(magic)+ed25519.SignatureSize:]
	if len(trusted) != ed25519.PublicKeySize || !ed25519.Verify(trusted, append([]byte(context), body...), sig) {
		return nil, ErrEnvelopeSignature
	}
	return body, nil
}
