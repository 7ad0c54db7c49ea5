package keys

import (
	"crypto/ed25519"
	"os"
	"path/filepath"
	"testing"
)

func TestGenerateLoadRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "deploy.key")
	pub, err := Generate(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("private key mode %o, want 600", st.Mode().Perm())
	}
	priv, err := LoadPrivate(path)
	if err != nil {
		t.Fatal(err)
	}
	pub2, err := LoadPublic(path + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Equal(pub2) || !pub.Equal(priv.Public()) {
		t.Fatal("loaded keys do not match the generated pair")
	}
	sig := ed25519.Sign(priv, []byte("x"))
	if !ed25519.Verify(pub2, []byte("x"), sig) {
		t.Fatal("signature does not verify")
	}
	if _, err := Generate(path); err == nil {
		t.Fatal("Generate overwrote an existing key")
	}
}

func TestLoadPrivateRefusesReadableKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k")
	if _, err := Generate(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPrivate(path); err == nil {
		t.Fatal("want an error for a world-readable key")
	}
}

func TestLoadPublicRejectsPrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k")
	if _, err := Generate(path); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPublic(path); err == nil {
		t.Fatal("want an error when a private key is given as public")
	}
}
