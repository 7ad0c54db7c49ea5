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

func (n *Node) peerName(ip string) string {
	for _, p := range n.cfg.Peers.Peers() {
		if h, _, err := net.SplitHostPort(p.BT); err == nil && h == ip {
			return p.Name
		}
	}
	return ip
}

func (n *Node) peerAddrs() []string { return n.peerAddrsFor(true) }

// peerAddrsFor lists the peer-wire addresses a transfer dials. Without
// the origin, a few peers of this host's datacenter (dialSparse); with it
// (a transfer falling back because its stripe failed or it stalled),
// every reachable peer and the origin.
func (n *Node) peerAddrsFor(withOrigin bool) []string {
	peers := n.reachable(n.cfg.Peers.Peers())
	if !withOrigin {
		peers = dialSparse(n.cfg.Name, n.cfg.DC, peers, wireDials)
	}
	var out []string
	for _, p := range peers {
		if p.BT != "" && (withOrigin || !p.Origin) {
			out = append(out, p.BT)
		}
	}
	return out
}

func (n *Node) originPeer() (Peer, bool) {
	for _, p := range n.cfg.Peers.Peers() {
		if p.Origin && p.HTTP != "" {
			return p, true
		}
	}
	return Peer{}, false
}
