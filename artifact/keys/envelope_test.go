package keys

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"
)

func TestEnvelope(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	b, err := SealEnvelope(priv, "MAGIC1", "kind a\x00", []byte(`{"x":1}`))
	if err != nil {
		t.Fatal(err)
	}
	if body, err := OpenEnvelope(b, "MAGIC1", "kind a\x00", pub); err != nil || string(body) != `{"x":1}` {
		t.Fatalf("open: %q, %v", body, err)
	}
	tampered := append([]byte(nil), b...)
	tampered[len(tampered)-2] ^= 1
	for name, c := range map[string]struct {
		b              []byte
		magic, context string
		key            ed25519.PublicKey
		want           error
	}{
		"other context": {b, "MAGIC1", "kind b\x00", pub, ErrEnvelopeSignature},
		"other key":     {b, "MAGIC1", "kind a\x00", other, ErrEnvelopeSignature},
		"no key":        {b, "MAGIC1", "kind a\x00", nil, ErrEnvelopeSignature},
		"tampered body": {tampered, "MAGIC1", "kind a\x00", pub, ErrEnvelopeSignature},
		"other magic":   {b, "MAGIC2", "kind a\x00", pub, ErrEnvelopeHeader},
		"short":         {b[:10], "MAGIC1", "kind a\x00", pub, ErrEnvelopeHeader},
	} {
		if _, err := OpenEnvelope(c.b, c.magic, c.context, c.key); !errors.Is(err, c.want) {
			t.Errorf("%s: err %v, want %v", name, err, c.want)
		}
	}
}
