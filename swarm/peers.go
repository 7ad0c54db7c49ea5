package swarm

import (
	"net"
	"scatter/artifact/core"
)

// Peer is another host, as membership knows it.
type Peer struct {
	Name   string
	BT     string // peer-wire address, ip:port
	HTTP   string // metadata address, ip:port
	DC     string
	Rack   string
	Origin bool
	// Holds lists the releases whose every chunk the peer holds (from its
	// gossip state).
	Holds []core.ReleaseID
}

// PeerSource lists the other live hosts. Peers is called before each fetch
// and every few seconds during one; it must be cheap, must not block, and
// must not include this host.
type PeerSource interface {
	Peers() []Peer
}

// peerView is this host's view of the other hosts, read from PeerSource
// afresh on every call: which of them to dial (topology.go), which stripe
// to take (stripe.go), and their names for the log. It keeps no state.
type peerView struct {
	self    string // this host's name
	dc      string // this host's datacenter
	origin  bool   // this host is the origin
	bridges int    // Config.Bridges
	src     PeerSource
}

// name is the name of the host whose peer-wire address is ip, else ip.
func (v peerView) name(ip string) string {
	for _, p := range v.src.Peers() {
		if h, _, err := net.SplitHostPort(p.BT); err == nil && h == ip {
			return p.Name
		}
	}
	return ip
}

// addrs lists the peer-wire addresses a transfer dials. Without the
// origin, a few peers of this host's datacenter (dialSparse); with it (a
// transfer falling back because its stripe failed or it stalled, and the
// tracker's answer to stock clients), every reachable peer and the origin.
func (v peerView) addrs(withOrigin bool) []string {
	peers := v.reachable(v.src.Peers())
	if !withOrigin {
		peers = dialSparse(v.self, v.dc, peers, wireDials)
	}
	var out []string
	for _, p := range peers {
		if p.BT != "" && (withOrigin || !p.Origin) {
			out = append(out, p.BT)
		}
	}
	return out
}

// originHost returns the origin, if PeerSource lists one with a metadata
// address.
func (v peerView) originHost() (Peer, bool) {
	for _, p := range v.src.Peers() {
		if p.Origin && p.HTTP != "" {
			return p, true
		}
	}
	return Peer{}, false
}
