package host

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"scatter/artifact/core"
	"scatter/orchestrate/command"
	"scatter/orchestrate/membership"
	"scatter/orchestrate/trust"
)

// fuzzTarget is one real host (gossip, swarm, agent) whose decoders the
// fuzzers feed, with a roster enrolling "peer", so that well-signed seeds
// reach past the signature checks.
type fuzzTarget struct {
	h       *Host
	peerKey ed25519.PrivateKey
	roster  []byte
}

func newFuzzTarget(f *testing.F) *fuzzTarget {
	_, deploy, _ := ed25519.GenerateKey(rand.Reader)
	_, peer, _ := ed25519.GenerateKey(rand.Reader)
	_, self, _ := ed25519.GenerateKey(rand.Reader)
	raw, err := trust.SignRoster(&trust.Roster{Version: 3, Hosts: []trust.Entry{
		{Name: "peer", Key: peer.Public().(ed25519.PublicKey)},
		{Name: "target", Key: self.Public().(ed25519.PublicKey), Role: trust.RoleOrigin},
	}}, deploy)
	if err != nil {
		f.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	h, err := Start(ctx, Config{Name: "target", DataDir: f.TempDir(), PubKey: deploy.Public().(ed25519.PublicKey),
		HostKey: self, BindAddr: "127.0.0.77", Origin: true, ClusterKey: bytes.Repeat([]byte{1}, 32)})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { h.Close() })
	if err := h.SetRoster(raw); err != nil {
		f.Fatal(err)
	}
	return &fuzzTarget{h: h, peerKey: peer, roster: raw}
}

func (ft *fuzzTarget) seeds(f *testing.F) [][]byte {
	id := core.ReleaseID{1, 2, 3}
	holds, _ := HoldsMessage("peer", "peer", id, ft.peerKey)
	forHim, _ := HoldsMessage("peer", "target", id, ft.peerKey)
	ack := &command.Ack{Deploy: "d1", Step: 1, Host: "peer", Repo: "mw", Kind: command.Check, OK: true}
	acked, _ := AckMessage("peer", ack, ft.peerKey)
	state, _ := StateMessage("peer", []core.ReleaseID{id}, ft.peerKey)
	st, _ := json.Marshal(stateBlob{Holds: []core.ReleaseID{id}, Roster: ft.roster,
		Deploy: &hostState{Host: "peer", Seq: 1}})
	fullState, _ := trust.Seal(trust.KindState, "peer", st, ft.peerKey)
	return [][]byte{holds, forHim, acked, append([]byte{msgRoster}, ft.roster...), state, fullState,
		{msgHolds}, {msgAck, 'S', 'C', 'A', 'T'}, {msgCommand}, {msgAnnounce}, {'?'}, {}}
}

// FuzzOnMessage feeds gossip broadcasts and direct messages (announce,
// command, ack, holds, roster) to a real host: nothing panics, and nothing
// unsigned counts.
func FuzzOnMessage(f *testing.F) {
	ft := newFuzzTarget(f)
	for _, s := range ft.seeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		ft.h.onMessage(msg)
	})
}

// FuzzOnState feeds push/pull state blobs, with the sender name the frame
// claims.
func FuzzOnState(f *testing.F) {
	ft := newFuzzTarget(f)
	for _, s := range ft.seeds(f) {
		f.Add("peer", s)
		f.Add("stranger", s)
	}
	f.Fuzz(func(t *testing.T, from string, b []byte) {
		ft.h.onState(from, b)
	})
}

// FuzzClassify feeds advertised metadata (key, signature, ports) as
// memberlist would deliver it.
func FuzzClassify(f *testing.F) {
	ft := newFuzzTarget(f)
	good := SignMeta("peer", "127.0.0.9", membership.Meta{Role: "host", Ports: map[string]int{"bt": 1, "http": 2}}, ft.peerKey)
	f.Add("peer", "127.0.0.9", good.Role, good.DC, good.Key, good.Sig, 1, 2)
	f.Add("peer", "127.0.0.10", good.Role, good.DC, good.Key, good.Sig, 1, 2)
	f.Add("newbie", "127.0.0.9", "origin", "", good.Key, good.Sig, 1, 2)
	f.Add("peer", "::1", "", "x", "", "", -1, 1<<20)
	f.Fuzz(func(t *testing.T, name, addr, role, dc, key, sig string, bt, http int) {
		a, err := netip.ParseAddr(addr)
		if err != nil {
			a = netip.IPv4Unspecified()
		}
		m := membership.Member{Name: name, Addr: a, Alive: true, Meta: membership.Meta{Role: role, DC: dc, Key: key, Sig: sig,
			Ports: map[string]int{"bt": bt, "http": http}}}
		e, st := ft.h.classify(m)
		if st == TrustEnrolled && (name != "peer" || !e.Key.Equal(ft.peerKey.Public().(ed25519.PublicKey))) {
			t.Fatalf("%q classified enrolled with key %x", name, e.Key)
		}
	})
}
