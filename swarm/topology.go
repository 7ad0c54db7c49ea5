package swarm

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"slices"
	"sort"
)

// Topology-aware peer choice, for fleets in several datacenters joined by
// links much thinner than the sum of the hosts' uplinks. With DC labels
// set (Config.DC, Peer.DC):
//   - only hosts in the origin's datacenter take stripes from the origin,
//     so each piece enters that datacenter once and no stripe crosses a
//     datacenter link;
//   - a host dials the peers of its own datacenter; across datacenters only
//     each datacenter's bridges (its first Config.Bridges hosts by name)
//     dial the other datacenters' bridges, so a piece crosses a link about
//     once rather than once per host that happens to pick a remote peer.
//
// With no labels (or one datacenter) every host is in the same place and
// nothing changes. Measured in the README (two-datacenter scenario).

// DefaultBridges is how many hosts of a datacenter talk across its links.
const DefaultBridges = 1

// bridgesOf names the bridge hosts of each datacenter among peers and this
// host: the first Bridges non-origin hosts of each datacenter by name.
func (v peerView) bridgesOf(peers []Peer) map[string]bool {
	byDC := map[string][]string{}
	if !v.origin {
		byDC[v.dc] = append(byDC[v.dc], v.self)
	}
	for _, p := range peers {
		if !p.Origin {
			byDC[p.DC] = append(byDC[p.DC], p.Name)
		}
	}
	out := map[string]bool{}
	for _, names := range byDC {
		sort.Strings(names)
		for _, name := range names[:min(len(names), v.bridges)] {
			out[name] = true
		}
	}
	return out
}

// reachable filters peers to those this node should dial: all of them
// without datacenter labels; else its own datacenter's, plus, for a bridge,
// the other datacenters' bridges. The origin stays in the list wherever it
// is: whether to dial it is decided by the caller.
func (v peerView) reachable(peers []Peer) []Peer {
	if v.dc == "" || !multiDC(peers, v.dc) {
		return peers
	}
	bridges := v.bridgesOf(peers)
	me := bridges[v.self]
	var out []Peer
	for _, p := range peers {
		if p.DC == v.dc || p.Origin || (me && bridges[p.Name]) {
			out = append(out, p)
		}
	}
	return out
}

func multiDC(peers []Peer, dc string) bool {
	return slices.ContainsFunc(peers, func(p Peer) bool { return p.DC != dc })
}

// stripeDC is the datacenter whose hosts take stripes: the origin's, when
// the origin is labelled and some host shares its datacenter; "" for every
// host.
func (v peerView) stripeDC(peers []Peer) string {
	var origin *Peer
	for i := range peers {
		if peers[i].Origin {
			origin = &peers[i]
		}
	}
	if origin == nil || origin.DC == "" {
		return ""
	}
	if v.dc == origin.DC {
		return origin.DC
	}
	for _, p := range peers {
		if !p.Origin && p.DC == origin.DC {
			return origin.DC
		}
	}
	return ""
}

// wireDials is how many peers of its own datacenter a host dials for a
// torrent. Each also accepts whoever dials it, so a host has about twice
// as many connections. A full mesh made every piece's HAVE reach every
// host from every host (hosts² × pieces messages), and each HAVE made
// anacrolix v1.59.1 replan that connection's requests over every missing
// piece: at 32 hosts in one process that was over half the fan-out's CPU
// (docs/performance/swarm.md, "Peer-wire CPU").
const wireDials = 5

// dialSparse picks, from the peers this host may dial, those it dials
// while its transfer moves: of its own datacenter's hosts, the next one
// after self in name order — so the dial graph holds a ring through every
// host and none is left out — and the k−1 others that rank highest by a
// hash of the two names (rendezvous hashing: each host's choice is
// stable as hosts come and go, and differs from its neighbours'). The
// origin and other datacenters' hosts (bridges, see reachable) are kept.
// With k or fewer candidates it returns peers unchanged.
func dialSparse(self, dc string, peers []Peer, k int) []Peer {
	var local, keep []Peer
	for _, p := range peers {
		if !p.Origin && p.DC == dc && p.Name != self {
			local = append(local, p)
		} else {
			keep = append(keep, p)
		}
	}
	if len(local) <= k {
		return peers
	}
	slices.SortFunc(local, func(a, b Peer) int { return cmp.Compare(a.Name, b.Name) })
	next, _ := slices.BinarySearchFunc(local, self, func(p Peer, name string) int { return cmp.Compare(p.Name, name) })
	next %= len(local)
	keep = append(keep, local[next])
	local = slices.Delete(local, next, next+1)
	score := make(map[string]uint64, len(local))
	for _, p := range local {
		h := sha256.Sum256([]byte(self + "\x00" + p.Name))
		score[p.Name] = binary.BigEndian.Uint64(h[:8])
	}
	slices.SortFunc(local, func(a, b Peer) int { return cmp.Compare(score[b.Name], score[a.Name]) })
	return append(keep, local[:k-1]...)
}
