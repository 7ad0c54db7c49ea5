package swarm

import (
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
