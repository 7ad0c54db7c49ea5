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

// peerAddrsFor lists peer-wire addresses, the origin's only if withOrigin.
func (n *Node) peerAddrsFor(withOrigin bool) []string {
	var out []string
	for _, p := range n.reachable(n.cfg.Peers.Peers()) {
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
