package swarm

import (
	"cmp"
	"math"
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
// torrent. Each also accepts whoever dials it, so a host has twice as many
// connections. A full mesh made every piece's HAVE reach every host from
// every host (hosts² × pieces messages), and each HAVE made anacrolix
// v1.59.1 replan that connection's requests over every missing piece: at
// 32 hosts in one process that was over half the fan-out's CPU
// (docs/performance/swarm.md, "Peer-wire CPU").
const wireDials = 5

// dialSparse picks, from the peers this host may dial, those it dials
// while its transfer moves: with its own datacenter's hosts and itself in
// name order, on a ring, the hosts at k fixed distances ahead of it
// (dialOffsets). Every host then dials k and is dialled by k: each has
// exactly 2k connections, and the distances, spread from 1 to half the
// ring, keep any host a few hops from any other. (Choosing by rendezvous
// hashing instead left the number each host was dialled by to chance: at
// 32 hosts, 6 to 13 connections, and the hosts with the fewest were the
// last to finish, up to 0.2 S/U after the median.) The origin and other
// datacenters' hosts (bridges, see reachable) are kept. With k or fewer
// candidates it returns peers unchanged.
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
	// The ring is local plus self; self sits before local[at].
	at, _ := slices.BinarySearchFunc(local, self, func(p Peer, name string) int { return cmp.Compare(p.Name, name) })
	n := len(local) + 1
	for _, d := range dialOffsets(n, k) {
		keep = append(keep, local[(at+d-1)%len(local)])
	}
	return keep
}

// dialOffsets returns k distinct distances for a ring of n hosts (n > k+1):
// 1, then a geometric progression up to (n−1)/2 (at 32 hosts 1, 2, 4, 8,
// 15; at 1,000 1, 5, 22, 106, 499). Distances that coincide after rounding
// are replaced by the smallest unused ones, which on a small ring may reach
// n/2 or past it (at 7 hosts 1 to 5). While every distance is under n/2 —
// always when n > 2k+1 and the progression does not coincide — a host's k
// ahead and the k that dial it from behind are 2k different hosts.
func dialOffsets(n, k int) []int {
	most := (n - 1) / 2
	if most < 1 {
		most = 1
	}
	var out []int
	used := map[int]bool{}
	for j := range k {
		d := 1
		if k > 1 {
			d = int(math.Round(math.Pow(float64(most), float64(j)/float64(k-1))))
		}
		if d >= 1 && d <= most && !used[d] {
			used[d] = true
			out = append(out, d)
		}
	}
	for d := 1; len(out) < k && d < n; d++ {
		if !used[d] {
			used[d] = true
			out = append(out, d)
		}
	}
	slices.Sort(out)
	return out
}
