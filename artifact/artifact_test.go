package artifact

import (
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"testing"
)

func TestBuildMaterializeRoundTrip(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	writeTree(t, src)
	st, key := newStore(t), newKey(t)
	res := build(t, st, src, key, opts("mw", "1.0"))
	if res.Files != 6 || res.NewChunks == 0 || res.NewBytes == 0 {
		t.Fatalf("unexpected build figures %+v", res)
	}
	if res.NewChunks >= res.Chunks+1 {
		t.Fatalf("new chunks %d > chunks %d", res.NewChunks, res.Chunks)
	}
	sm, err := st.Manifest(res.Signed.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := sm.VerifiedBy(key.Public().(ed25519.PublicKey)); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "out")
	if _, err := Materialize(context.Background(), st, sm, dest, MaterializeOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, want := treeDigest(t, dest), treeDigest(t, src); got != want {
		t.Fatalf("materialized tree differs:\n%s\nwant\n%s", got, want)
	}
	problems, err := Verify(context.Background(), st, sm.Manifest)
	if err != nil || len(problems) != 0 {
		t.Fatalf("verify: %v %v", problems, err)
	}
	if _, err := Materialize(context.Background(), st, sm, dest, MaterializeOptions{}); err == nil {
		t.Fatal("materialize over an existing DEST succeeded")
	}
	_ = os.Remove
}
