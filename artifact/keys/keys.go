// Package keys reads and writes the deploy key: an ed25519 key pair whose
// private half stays on the deploy host and signs manifests and commands,
// and whose public half every target holds. Files are PEM (PKCS#8 and PKIX),
// so openssl can read them too.
package keys

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// Generate writes a new key pair: the private key to path (mode 0600) and the
// public key to path+".pub" (mode 0644). It refuses to overwrite either file.
func Generate(path string) (ed25519.PublicKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("keygen: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("keygen: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("keygen: %w", err)
	}
	if err := writeNew(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, err
	}
	if err := writeNew(path+".pub", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644); err != nil {
		os.Remove(path)
		return nil, err
	}
	return pub, nil
}

func writeNew(path string, data []byte, mode fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("keygen: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("keygen: write %s: %w", path, err)
	}
	return nil
}

// LoadPrivate reads a private key written by Generate. It refuses a key file
// that others can read: a leaked deploy key lets anyone deploy anything.
func LoadPrivate(path string) (ed25519.PrivateKey, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("load deploy key: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("load deploy key %s: mode %04o lets others read it; chmod 600 it", path, st.Mode().Perm())
	}
	block, err := readPEM(path, "PRIVATE KEY")
	if err != nil {
		return nil, fmt.Errorf("load deploy key: %w", err)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("load deploy key %s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("load deploy key %s: not an ed25519 key", path)
	}
	return priv, nil
}

// LoadPublic reads a public key written by Generate.
func LoadPublic(path string) (ed25519.PublicKey, error) {
	block, err := readPEM(path, "PUBLIC KEY")
	if err != nil {
		return nil, fmt.Errorf("load public key: %w", err)
	}
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("load public key %s: %w", path, err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("load public key %s: not an ed25519 key", path)
	}
	return pub, nil
}

func readPEM(path, typ string) (*pem.Block, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM block", path)
	}
	if block.Type != typ {
		return nil, fmt.Errorf("%s: PEM block is %q, want %q", path, block.Type, typ)
	}
	return block, nil
}

// Fingerprint is a short, stable name for a public key, for messages and logs.
func Fingerprint(pub ed25519.PublicKey) string {
	if len(pub) != ed25519.PublicKeySize {
		return "invalid-key"
	}
	sum := sha256.Sum256(pub)
	return "ed25519:" + hex.EncodeToString(sum[:8])
}

// ErrWrongKey is returned (wrapped) when a signature was made by another key.
var ErrWrongKey = errors.New("signed by another key")
