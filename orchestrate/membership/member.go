package membership

import (
	"encoding/json"
	"log/slog"
	"net/netip"

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
