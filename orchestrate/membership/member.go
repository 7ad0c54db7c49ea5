package membership

import (
	"encoding/json"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"

	"github.com/hashicorp/memberlist"
)

// Member is a snapshot of one cluster member. It shares nothing with the
// Node: changing it changes nothing.
type Member struct {
	Name string
	Addr netip.Addr // gossip address
	Port int        // gossip port (UDP and TCP)
	Meta Meta
	// Alive is false in OnLeave: the member left or was declared failed.
	// Members returns only alive members.
	Alive bool
	// Left is true in OnLeave when the member left gracefully (Leave)
	// rather than failed.
	Left bool
}

// memberOf converts memberlist's node. Its Meta came from the network, so
// a Meta that does not decode is logged and left empty rather than
// trusted in part.
func memberOf(n *memberlist.Node, alive bool, log *slog.Logger) Member {
	m := Member{Name: n.Name, Port: int(n.Port), Alive: alive}
	if a, ok := netip.AddrFromSlice(n.Addr); ok {
		m.Addr = a.Unmap()
	}
	if len(n.Meta) > 0 {
		if err := json.Unmarshal(n.Meta, &m.Meta); err != nil {
			log.Debug("undecodable member meta", "member", n.Name, "err", err)
			m.Meta = Meta{}
		}
	}
	return m
}

// mlNode rebuilds the memberlist node that SendReliable and SendBestEffort
// need from the address alone, without taking memberlist's node lock.
func (m Member) mlNode() *memberlist.Node {
	return &memberlist.Node{Name: m.Name, Addr: m.Addr.AsSlice(), Port: uint16(m.Port)}
}

// Members returns the alive members, this node included, sorted by name.
func (n *Node) Members() []Member {
	n.membersMu.RLock()
	out := make([]Member, 0, len(n.members))
	for _, m := range n.members {
		m.Meta = m.Meta.clone()
		out = append(out, m)
	}
	n.membersMu.RUnlock()
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Member returns the named alive member.
func (n *Node) Member(name string) (Member, bool) {
	n.membersMu.RLock()
	m, ok := n.members[name]
	n.membersMu.RUnlock()
	m.Meta = m.Meta.clone()
	return m, ok
}

// Generation changes whenever the members Members returns may have
// changed (a member joined, left, died or changed its advertisement), so a
// caller can keep what it derived from them until it moves.
func (n *Node) Generation() uint64 { return n.gen.Load() }

func (n *Node) setMember(m Member) {
	n.membersMu.Lock()
	n.members[m.Name] = m
	n.numMembers.Store(int64(len(n.members)))
	n.gen.Add(1)
	n.membersMu.Unlock()
}

func (n *Node) removeMember(name string) {
	n.membersMu.Lock()
	delete(n.members, name)
	n.numMembers.Store(int64(len(n.members)))
	n.gen.Add(1)
	n.membersMu.Unlock()
}

// randomPeers returns up to k alive members other than this node.
func (n *Node) randomPeers(k int) []Member {
	n.membersMu.RLock()
	peers := make([]Member, 0, len(n.members))
	for name, m := range n.members {
		if name != n.cfg.Name {
			peers = append(peers, m)
		}
	}
	n.membersMu.RUnlock()
	rand.Shuffle(len(peers), func(i, j int) { peers[i], peers[j] = peers[j], peers[i] })
	return peers[:min(k, len(peers))]
}

// notify queues a membership callback. Membership events are never
// dropped while the node runs: churn, not the network, bounds them.
func (n *Node) notify(cb func(Member), m Member) {
	if cb == nil {
		return
	}
	m.Meta = m.Meta.clone()
	n.disp.push(func() { cb(m) }, false)
}
