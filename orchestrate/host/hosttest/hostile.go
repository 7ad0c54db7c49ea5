package hosttest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"time"

	"scatter/orchestrate/membership"
	"scatter/orchestrate/trust"
)

// Hostile is a real gossip member holding the cluster key and a host key
// of its own, but running no host: a test drives it to say what an
// honest host would not (forged acks, false holds, a false role). Enrol it
// with c.Add(h.Entry()) to play an enrolled liar; leave it off the roster
// to play a pending one.
type Hostile struct {
	Name string
	Key  ed25519.PrivateKey
	Node *membership.Node
}

// StartHostile joins a hostile member named name on 127.0.0.<ip> to the
// cluster, advertising meta signed with its own key.
func (c *Cluster) StartHostile(name string, ip int, meta membership.Meta, sign func(name, addr string, m membership.Meta, key ed25519.PrivateKey) membership.Meta) *Hostile {
	c.T.Helper()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	addr := fmt.Sprintf("127.0.0.%d", ip)
	if sign != nil {
		meta = sign(name, addr, meta, key)
	}
	n, err := membership.New(membership.Config{Name: name, BindAddr: addr, SecretKey: c.CKey, Label: "test",
		Meta: meta, PushPullInterval: time.Second})
	if err != nil {
		c.T.Fatal(err)
	}
	c.T.Cleanup(func() { n.Shutdown() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := n.Join(ctx, []string{c.seed}); err != nil {
		c.T.Fatal(err)
	}
	return &Hostile{Name: name, Key: key, Node: n}
}

// Entry is the roster entry that would enrol the hostile member.
func (h *Hostile) Entry() trust.Entry {
	return trust.Entry{Name: h.Name, Key: h.Key.Public().(ed25519.PublicKey)}
}
