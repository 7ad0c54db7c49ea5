package membership

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"
)

// A gossip key rotates without anyone leaving: install the new key as
// another key everywhere, make it the primary everywhere, drop the old one
// everywhere, one member at a time. Throughout, every member sees every
// member alive and broadcasts reach all; afterwards a node with only the
// old key is refused and one with only the new key joins.
func TestKeyRotationKeepsEveryMember(t *testing.T) {
	oldKey, newKey := testKey, []byte("fedcba9876543210fedcba9876543210")
	nodes, _ := startCluster(t, 4, Config{SecretKey: oldKey, ProbeInterval: 100 * time.Millisecond,
		ProbeTimeout: 50 * time.Millisecond, SuspicionMult: 2}, nil)

	// check waits a few probe rounds, then asks that nobody was declared
	// gone and that a broadcast from each member reaches all the others.
	round := 0
	check := func(stage string) {
		t.Helper()
		time.Sleep(400 * time.Millisecond) // several probe rounds: a failed one would mark a member suspect
		round++
		for i, nd := range nodes {
			msg := fmt.Sprintf("round %d from %d", round, i)
			if err := nd.Broadcast([]byte(msg)); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, 10*time.Second, stage+": every broadcast reaches every member", func() bool {
			for i := range nodes {
				for j, nd := range nodes {
					if i != j && nd.rec.count(fmt.Sprintf("round %d from %d", round, i)) == 0 {
						return false
					}
				}
			}
			return true
		})
		for _, nd := range nodes {
			nd.rec.mu.Lock()
			left := len(nd.rec.leaves)
			nd.rec.mu.Unlock()
			if left > 0 || len(nd.Members()) != len(nodes) {
				t.Fatalf("%s: %s saw %d members leave, sees %d of %d", stage, nd.Name(), left, len(nd.Members()), len(nodes))
			}
		}
	}
	steps := []struct {
		name    string
		primary []byte
		others  [][]byte
	}{
		{"install the new key", oldKey, [][]byte{newKey}},
		{"switch the primary", newKey, [][]byte{oldKey}},
		{"remove the old key", newKey, nil},
	}
	for _, s := range steps {
		for i, nd := range nodes {
			if err := nd.SetKeys(s.primary, s.others); err != nil {
				t.Fatal(err)
			}
			// Half-way through a step the cluster is mixed: check it then too.
			if i == len(nodes)/2 {
				check(s.name + " (half done)")
			}
		}
		check(s.name)
	}
	for _, nd := range nodes {
		if p, n := nd.Keys(); !bytes.Equal(p, newKey) || n != 1 {
			t.Fatalf("%s: primary %x, %d keys", nd.Name(), p, n)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stale := startNode(t, Config{Name: "stale", SecretKey: oldKey})
	if _, err := stale.Join(ctx, []string{nodes[0].Addr()}); err == nil {
		t.Error("a node with only the old key joined")
	}
	fresh := startNode(t, Config{Name: "fresh", SecretKey: newKey})
	if _, err := fresh.Join(ctx, []string{nodes[0].Addr()}); err != nil {
		t.Errorf("a node with the new key could not join: %v", err)
	}
}

func TestSetKeysRefusesBadKeys(t *testing.T) {
	nd := startNode(t, Config{SecretKey: testKey})
	if err := nd.SetKeys([]byte("short"), nil); err == nil {
		t.Error("SetKeys took a 5-byte primary")
	}
	if err := nd.SetKeys(testKey, [][]byte{[]byte("short")}); err == nil {
		t.Error("SetKeys took a 5-byte other key")
	}
	plain := startNode(t, Config{})
	if err := plain.SetKeys(testKey, nil); err == nil {
		t.Error("a plaintext node took a key without a restart")
	}
}
