package artifact

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"scatter/artifact/core"
	"scatter/artifact/keys"
)

// Signed is a manifest with its deploy-key signature, as stored and shipped.
type Signed struct {
	Manifest *Manifest
	ID       core.ReleaseID    // SHA-256 of Body
	Body     []byte            // canonical encoding of Manifest
	PubKey   ed25519.PublicKey // key that made Sig
	Sig      []byte
	// msg is signContext followed by Body, sharing Body's array when the
	// envelope was decoded here: the signed message, checked without
	// copying a body that is megabytes for a large release.
	msg []byte
}

// envelopeMagic starts every stored manifest file.
const envelopeMagic = "SCATTER-MANIFEST/1\n"

// signContext separates manifest signatures from the deploy key's other
// signatures (commands), so one can never be replayed as the other.
const signContext = "scatter manifest signature v1\x00"

// ErrBadSignature means a manifest's signature does not verify.
var ErrBadSignature = errors.New("manifest signature does not verify")

// Sign encodes m and signs it with the deploy key.
func Sign(m *Manifest, priv ed25519.PrivateKey) (*Signed, error) {
	body, err := m.MarshalBody()
	if err != nil {
		return nil, fmt.Errorf("sign manifest: %w", err)
	}
	return &Signed{
		Manifest: m,
		ID:       sha256.Sum256(body),
		Body:     body,
		PubKey:   priv.Public().(ed25519.PublicKey),
		Sig:      ed25519.Sign(priv, append([]byte(signContext), body...)),
	}, nil
}

// Encode returns the envelope: magic, public key, signature, body length and
// the zstd-compressed body.
func (s *Signed) Encode() []byte {
	var b []byte
	b = append(b, envelopeMagic...)
	b = append(b, s.PubKey...)
	b = append(b, s.Sig...)
	b = binary.AppendUvarint(b, uint64(len(s.Body)))
	return manifestEncoder().EncodeAll(s.Body, b)
}

// message returns the bytes the signature covers.
func (s *Signed) message() []byte {
	k := len(signContext)
	if len(s.msg) == k+len(s.Body) && len(s.Body) > 0 && &s.msg[k] == &s.Body[0] {
		return s.msg
	}
	return append([]byte(signContext), s.Body...)
}

// DecodeSigned parses an envelope, checks the signature against the key the
// envelope names and decodes the manifest. It does not decide whether that
// key is trusted: use Open for that.
func DecodeSigned(b []byte) (*Signed, error) {
	s, body, err := openEnvelope(b)
	if err != nil {
		return nil, err
	}
	m, err := UnmarshalBody(body)
	if err != nil {
		return nil, err
	}
	s.Manifest, s.Body, s.ID = m, body, sha256.Sum256(body)
	return s, nil
}

// openEnvelope parses an envelope and checks the signature against the key
// it names. It returns the envelope's key and signature, and its body, not
// yet decoded.
func openEnvelope(b []byte) (*Signed, []byte, error) {
	fixed := len(envelopeMagic) + ed25519.PublicKeySize + ed25519.SignatureSize
	if len(b) > MaxEnvelopeSize {
		return nil, nil, fmt.Errorf("decode manifest: envelope of %d bytes exceeds %d", len(b), MaxEnvelopeSize)
	}
	if len(b) < fixed || !bytes.HasPrefix(b, []byte(envelopeMagic)) {
		return nil, nil, errors.New("decode manifest: not a scatter manifest envelope")
	}
	s := &Signed{}
	p := b[len(envelopeMagic):]
	s.PubKey = bytes.Clone(p[:ed25519.PublicKeySize])
	p = p[ed25519.PublicKeySize:]
	s.Sig = bytes.Clone(p[:ed25519.SignatureSize])
	p = p[ed25519.SignatureSize:]
	size, n := binary.Uvarint(p)
	if n <= 0 || size > maxBodySize {
		return nil, nil, fmt.Errorf("decode manifest: bad body length")
	}
	// Decode the body right after the signing context, so that the signed
	// message is one array without a copy.
	k := len(signContext)
	msg := make([]byte, k, k+int(size)+decodeSlack)
	copy(msg, signContext)
	body, err := zstdDecodeManifest(p[n:], msg[k:], int(size))
	if err != nil {
		return nil, nil, fmt.Errorf("decode manifest: body: %w", err)
	}
	s.msg = msg[:k+len(body)]
	if !ed25519.Verify(s.PubKey, s.msg, s.Sig) {
		return nil, nil, fmt.Errorf("decode manifest: %w", ErrBadSignature)
	}
	return s, body, nil
}

// MaxEnvelopeSize bounds a stored or fetched manifest envelope. A 5 GB,
// 100k-file release's envelope is about 12 MiB.
const MaxEnvelopeSize = 128 << 20

// Open decodes an envelope and requires that the trusted deploy key signed
// it. The signer's key is compared before anything is decompressed, so an
// envelope from anyone else costs nothing to refuse.
func Open(b []byte, trusted ed25519.PublicKey) (*Signed, error) {
	if err := signerTrusted(b, trusted); err != nil {
		return nil, err
	}
	s, err := DecodeSigned(b)
	if err != nil {
		return nil, err
	}
	if err := s.VerifiedBy(trusted); err != nil {
		return nil, err
	}
	return s, nil
}

// signerTrusted refuses an envelope that names a key other than trusted,
// before anything is decompressed.
func signerTrusted(b []byte, trusted ed25519.PublicKey) error {
	if k := len(envelopeMagic); len(b) >= k+ed25519.PublicKeySize && bytes.HasPrefix(b, []byte(envelopeMagic)) {
		if signer := ed25519.PublicKey(b[k : k+ed25519.PublicKeySize]); !bytes.Equal(signer, trusted) {
			return fmt.Errorf("manifest: %w (%s, trusted key is %s)", keys.ErrWrongKey, keys.Fingerprint(signer), keys.Fingerprint(trusted))
		}
	}
	return nil
}

// VerifiedBy checks that the trusted key made the signature.
func (s *Signed) VerifiedBy(trusted ed25519.PublicKey) error {
	if !bytes.Equal(s.PubKey, trusted) {
		return fmt.Errorf("manifest %s: %w (%s, trusted key is %s)", s.ID.Short(), keys.ErrWrongKey, keys.Fingerprint(s.PubKey), keys.Fingerprint(trusted))
	}
	if !ed25519.Verify(trusted, s.message(), s.Sig) {
		return fmt.Errorf("manifest %s: %w", s.ID.Short(), ErrBadSignature)
	}
	return nil
}
