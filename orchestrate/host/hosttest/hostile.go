package hosttest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"time"

	"scatter/artifact/core"
	"scatter/orchestrate/command"
	"scatter/orchestrate/host"
	"scatter/orchestrate/membership"
	"scatter/orchestrate/trust"
)

// Hostile is a real gossip member holding the cluster key and a host key
// of its own, but running no host: a test drives it to say what an
// honest host would not (forged acks, false holds, a false role). Enrol it
// with c.Add(h.Entry()) to play an enrolled liar; leave it off the roster
// to play a pending one. It is what an attacker on a compromised host
// holds, and no more: no deploy key, no other host's key.
type Hostile struct {
	Name string
	Key  ed25519.PrivateKey
	Node *membership.Node
	// stranger is a key no roster holds, to seal in other hosts' names.
	stranger ed25519.PrivateKey
}

// HostileConfig says how a hostile member joins a cluster.
type HostileConfig struct {
	Name       string // its member name
	Addr       string // the IP address it binds and advertises
	ClusterKey []byte // the gossip key, as every member holds it
	Label      string // the cluster's gossip label
	Seeds      []string
	// Meta is what it advertises; Sign, if set, signs it as a host signs
	// its own (host.SignMeta), else it goes unsigned.
	Meta membership.Meta
	Sign func(name, addr string, m membership.Meta, key ed25519.PrivateKey) membership.Meta
	// OnMessage receives the gossip broadcasts and direct messages it
	// gets (see membership.Config.OnMessage).
	OnMessage func(msg []byte)
}

// JoinHostile makes a host key and joins a hostile member to the cluster
// through cfg.Seeds. The caller shuts its Node down.
func JoinHostile(ctx context.Context, cfg HostileConfig) (*Hostile, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	_, stranger, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	meta := cfg.Meta
	if cfg.Sign != nil {
		meta = cfg.Sign(cfg.Name, cfg.Addr, meta, key)
	}
	n, err := membership.New(membership.Config{Name: cfg.Name, BindAddr: cfg.Addr, SecretKey: cfg.ClusterKey,
		Label: cfg.Label, Meta: meta, PushPullInterval: time.Second, OnMessage: cfg.OnMessage})
	if err != nil {
		return nil, fmt.Errorf("hostile member %s: %w", cfg.Name, err)
	}
	if _, err := n.Join(ctx, cfg.Seeds); err != nil {
		n.Shutdown()
		return nil, fmt.Errorf("hostile member %s: join %v: %w", cfg.Name, cfg.Seeds, err)
	}
	return &Hostile{Name: cfg.Name, Key: key, Node: n, stranger: stranger}, nil
}

// StartHostile joins a hostile member named name on 127.0.0.<ip> to the
// cluster, advertising meta signed with its own key.
func (c *Cluster) StartHostile(name string, ip int, meta membership.Meta, sign func(name, addr string, m membership.Meta, key ed25519.PrivateKey) membership.Meta) *Hostile {
	c.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	h, err := JoinHostile(ctx, HostileConfig{Name: name, Addr: fmt.Sprintf("127.0.0.%d", ip), ClusterKey: c.CKey,
		Label: "test", Seeds: []string{c.seed}, Meta: meta, Sign: sign})
	if err != nil {
		c.T.Fatal(err)
	}
	c.T.Cleanup(func() { h.Node.Shutdown() })
	return h
}

// Entry is the roster entry that would enrol the hostile member.
func (h *Hostile) Entry() trust.Entry {
	return trust.Entry{Name: h.Name, Key: h.Key.Public().(ed25519.PublicKey)}
}

// Forgery names the acks ForgeAcks makes: for each victim and each step
// 1..Steps of a deploy, an ack of OK (a success) or not (a failure).
type Forgery struct {
	Controller string // the member acks go to
	Deploy     string
	Repo       string
	Release    core.ReleaseID
	Victims    []string
	Steps      int
	OK         bool
}

// ForgeAcks sends the controller, once, each ack of f in every way a
// member holding the cluster key could: unsigned (the wire form of before
// host keys), sealed in the victim's name with a key the roster does not
// hold, and sealed in the hostile member's own name about the victim. A
// controller that checks acks refuses all three (ack:malformed,
// ack:bad-signature, ack:speaks-for-another); one that did not would take
// them for the victims' answers. It returns how many messages went out.
func (h *Hostile) ForgeAcks(f Forgery) (int, error) {
	sent := 0
	var errs []error
	for _, v := range f.Victims {
		for step := 1; step <= f.Steps; step++ {
			a := &command.Ack{Deploy: f.Deploy, Step: step, Host: v, Repo: f.Repo, Kind: command.Promote,
				Release: f.Release, OK: f.OK, Current: f.Release, Duration: time.Millisecond}
			if !f.OK {
				a.Error = "check health: forged failure"
				a.Results = []command.Result{{Phase: "check", Action: "health", Exit: 2, Error: "forged"}}
			}
			plain, err := host.UnsignedAckMessage(a)
			if err != nil {
				return sent, err
			}
			inName, err := host.AckMessage(v, a, h.stranger)
			if err != nil {
				return sent, err
			}
			own, err := host.AckMessage(h.Name, a, h.Key)
			if err != nil {
				return sent, err
			}
			for _, msg := range [][]byte{plain, inName, own} {
				if err := h.Node.SendTo(f.Controller, msg); err != nil {
					errs = append(errs, err)
					continue
				}
				sent++
			}
		}
	}
	return sent, errors.Join(errs...)
}

// DeadEnd listens on ip, port 0, and hangs up on everyone: the ports of a
// member that advertises them but serves nothing. It returns the port and
// a function that stops listening.
func DeadEnd(ip string) (port int, stop func(), err error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return 0, nil, err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port, func() { ln.Close() }, nil
}
