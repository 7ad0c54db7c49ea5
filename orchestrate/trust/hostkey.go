package trust

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"scatter/artifact/keys"
)

// LoadOrCreateHostKey reads the host key at path, creating it (mode 0600,
// PKCS#8 PEM) if there is none: an upgraded daemon gets its key on its
// first start and shows up as pending. created reports a new key.
func LoadOrCreateHostKey(path string) (priv ed25519.PrivateKey, created bool, err error) {
	priv, err = keys.LoadPrivate(path)
	if err == nil {
		return priv, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, fmt.Errorf("host key: %w", err)
	}
	_, priv, err = ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, false, fmt.Errorf("host key: %w", err)
	}
	if err := WriteHostKey(path, priv); err != nil {
		return nil, false, err
	}
	return priv, true, nil
}

// WriteHostKey writes priv to path (mode 0600), refusing to overwrite a
// key. Config management (and the test helpers) pre-generate host keys
// this way, to enrol a host before its first start.
func WriteHostKey(path string, priv ed25519.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return fmt.Errorf("host key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("host key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("host key: %w", err)
	}
	_, err = f.Write(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("host key: write %s: %w", path, err)
	}
	return nil
}
