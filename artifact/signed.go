package artifact

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"scatter/artifact/core"
	"scatter/artifact/keys"
)

// Signed is a manifest with its deploy-key signature, as stored and shipped.
type Signed struct {
	Manifest *Manifest
	ID       core.ReleaseID    // SHA-256 of Body
	Body     []byte            // canonical encoding of Manifest
	PubKey   ed25519.PublicKey // key that made Sig
	Sig      []byte            // over signContext and ID
}

// envelopeMagic starts every stored manifest file. Format 1 signed the
// body itself, so the signature could be checked only with the whole
// body decoded in memory (megabytes for a large release, a fetching
// host's peak); format 2 signs the release ID, the body's SHA-256, and
// carries it in the clear, so the signature is checked before anything
// is decompressed and the body streams.
const (
	envelopeMagic   = "SCATTER-MANIFEST/2\n"
	envelopeMagicV1 = "SCATTER-MANIFEST/1\n"
)

// signContext separates manifest signatures from the deploy key's other
// signatures (commands), so one can never be replayed as the other.
const signContext = "scatter manifest signature v2\x00"

// ErrBadSignature means a manifest's signature does not verify, or its
// body is not the one the signature names.
var ErrBadSignature = errors.New("manifest signature does not verify")

// Sign encodes m and signs its release ID with the deploy key.
func Sign(m *Manifest, priv ed25519.PrivateKey) (*Signed, error) {
	body, err := m.MarshalBody()
	if err != nil {
		return nil, fmt.Errorf("sign manifest: %w", err)
	}
	id := core.ReleaseID(sha256.Sum256(body))
	return &Signed{
		Manifest: m,
		ID:       id,
		Body:     body,
		PubKey:   priv.Public().(ed25519.PublicKey),
		Sig:      ed25519.Sign(priv, signedMessage(id)),
	}, nil
}

// signedMessage is what a manifest signature covers: the context and the
// release ID, which is the SHA-256 of the body.
func signedMessage(id core.ReleaseID) []byte {
	return append([]byte(signContext), id[:]...)
}

// Encode returns the envelope: magic, public key, signature, release ID,
// body length and the zstd-compressed body.
func (s *Signed) Encode() []byte {
	var b []byte
	b = append(b, envelopeMagic...)
	b = append(b, s.PubKey...)
	b = append(b, s.Sig...)
	b = append(b, s.ID[:]...)
	b = binary.AppendUvarint(b, uint64(len(s.Body)))
	return manifestEncoder().EncodeAll(s.Body, b)
}

// envelopeHeader is what precedes an envelope's compressed body.
type envelopeHeader struct {
	PubKey ed25519.PublicKey
	Sig    []byte
	ID     core.ReleaseID
	Size   int // of the body, uncompressed
}

// headerSize bounds the fixed part of a header, before the body length.
const headerSize = len(envelopeMagic) + ed25519.PublicKeySize + ed25519.SignatureSize + core.HashSize

// byteReader is what readHeader reads from: a bufio.Reader over a file,
// or a bytes.Reader over an envelope in memory.
type byteReader interface {
	io.Reader
	io.ByteReader
}

// readHeader reads an envelope's header from r, leaving r at the body.
func readHeader(r byteReader) (*envelopeHeader, error) {
	fixed := make([]byte, headerSize)
	if _, err := io.ReadFull(r, fixed); err != nil || !bytes.HasPrefix(fixed, []byte(envelopeMagic)) {
		if bytes.HasPrefix(fixed, []byte(envelopeMagicV1)) {
			return nil, errors.New("decode manifest: envelope format 1 is no longer read; publish the release again")
		}
		return nil, errors.New("decode manifest: not a scatter manifest envelope")
	}
	p := fixed[len(envelopeMagic):]
	h := &envelopeHeader{PubKey: p[:ed25519.PublicKeySize], Sig: p[ed25519.PublicKeySize : ed25519.PublicKeySize+ed25519.SignatureSize]}
	copy(h.ID[:], p[ed25519.PublicKeySize+ed25519.SignatureSize:])
	size, err := binary.ReadUvarint(r)
	if err != nil || size > maxBodySize {
		return nil, errors.New("decode manifest: bad body length")
	}
	h.Size = int(size)
	return h, nil
}

// verify checks the signature against the key the header names and, if
// trusted is not nil, that it is the trusted key: nothing of the body is
// read, so an envelope from anyone else costs nothing to refuse.
func (h *envelopeHeader) verify(trusted ed25519.PublicKey) error {
	if trusted != nil && !bytes.Equal(h.PubKey, trusted) {
		return fmt.Errorf("manifest: %w (%s, trusted key is %s)", keys.ErrWrongKey, keys.Fingerprint(h.PubKey), keys.Fingerprint(trusted))
	}
	if !ed25519.Verify(h.PubKey, signedMessage(h.ID), h.Sig) {
		return fmt.Errorf("manifest %s: %w", h.ID.Short(), ErrBadSignature)
	}
	return nil
}

// DecodeSigned parses an envelope, checks the signature against the key the
// envelope names and decodes the manifest. It does not decide whether that
// key is trusted: use Open for that.
func DecodeSigned(b []byte) (*Signed, error) {
	return decodeSigned(b, nil)
}

func decodeSigned(b []byte, trusted ed25519.PublicKey) (*Signed, error) {
	if len(b) > MaxEnvelopeSize {
		return nil, fmt.Errorf("decode manifest: envelope of %d bytes exceeds %d", len(b), MaxEnvelopeSize)
	}
	br := bytes.NewReader(b)
	h, err := readHeader(br)
	if err != nil {
		return nil, err
	}
	if err := h.verify(trusted); err != nil {
		return nil, err
	}
	z := b[len(b)-br.Len():]
	body, err := zstdDecodeManifest(z, make([]byte, 0, h.Size+decodeSlack), h.Size)
	if err != nil {
		return nil, fmt.Errorf("decode manifest: body: %w", err)
	}
	if core.ReleaseID(sha256.Sum256(body)) != h.ID {
		return nil, fmt.Errorf("decode manifest: %w: body does not hash to the signed release id", ErrBadSignature)
	}
	m, err := UnmarshalBody(body)
	if err != nil {
		return nil, err
	}
	return &Signed{Manifest: m, ID: h.ID, Body: body, PubKey: bytes.Clone(h.PubKey), Sig: bytes.Clone(h.Sig)}, nil
}

// MaxEnvelopeSize bounds a stored or fetched manifest envelope. A 5 GB,
// 100k-file release's envelope is about 12 MiB.
const MaxEnvelopeSize = 128 << 20

// Open decodes an envelope and requires that the trusted deploy key signed
// it. The signature is checked before anything is decompressed, so an
// envelope from anyone else costs nothing to refuse.
func Open(b []byte, trusted ed25519.PublicKey) (*Signed, error) {
	return decodeSigned(b, trusted)
}

// VerifiedBy checks that the trusted key made the signature, and that the
// signature names this manifest's body.
func (s *Signed) VerifiedBy(trusted ed25519.PublicKey) error {
	if !bytes.Equal(s.PubKey, trusted) {
		return fmt.Errorf("manifest %s: %w (%s, trusted key is %s)", s.ID.Short(), keys.ErrWrongKey, keys.Fingerprint(s.PubKey), keys.Fingerprint(trusted))
	}
	if core.ReleaseID(sha256.Sum256(s.Body)) != s.ID || !ed25519.Verify(trusted, signedMessage(s.ID), s.Sig) {
		return fmt.Errorf("manifest %s: %w", s.ID.Short(), ErrBadSignature)
	}
	return nil
}
