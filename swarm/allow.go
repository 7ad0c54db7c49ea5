package swarm

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anacrolix/torrent/iplist"
)

// The data plane — the peer wire, and the metadata server's manifests,
// torrents, stripes, tracker and status — answers only the hosts that
// PeerSource lists (enrolled hosts: strangers and pending hosts are not
// listed), this host's own address, and the networks an operator opened
// to stock BitTorrent clients (Config.AllowClients). Everyone else is
// refused when the connection is accepted, before a byte is read: the peer
// wire through anacrolix's IP blocklist, the metadata server in its
// listener. The check is by source IP, which is why a host dials from the
// address it advertises.

// allowRefresh is how often the allowlist is rebuilt from PeerSource
// besides on a miss.
const allowRefresh = time.Second

// allowlist is a snapshot of the addresses let in, replaced whole on each
// refresh so that lookups take no lock: anacrolix consults it with its
// client lock held.
type allowlist struct {
	snap    atomic.Pointer[map[netip.Addr]bool]
	gen     atomic.Uint64 // refreshes done
	refresh sync.Mutex    // one refresh at a time
}

// allowed reports whether ip may use the data plane, by the last snapshot.
func (n *Node) allowed(ip netip.Addr) bool {
	ip = ip.Unmap()
	if ip == n.selfIP {
		return true
	}
	for _, p := range n.cfg.AllowClients {
		if p.Contains(ip) {
			return true
		}
	}
	if m := n.allow.snap.Load(); m != nil {
		return (*m)[ip]
	}
	return false
}

// admit is allowed, refreshing the snapshot first on a miss: a host that
// joined a moment ago is let in at once. Concurrent misses share one
// refresh. It must not be called with locks held that PeerSource may take.
func (n *Node) admit(ip netip.Addr) bool {
	if n.allowed(ip) {
		return true
	}
	gen := n.allow.gen.Load()
	n.allow.refresh.Lock()
	if n.allow.gen.Load() == gen {
		n.refreshAllowLocked()
	}
	n.allow.refresh.Unlock()
	return n.allowed(ip)
}

// refreshAllow rebuilds the snapshot from PeerSource.
func (n *Node) refreshAllow() {
	n.allow.refresh.Lock()
	defer n.allow.refresh.Unlock()
	n.refreshAllowLocked()
}

func (n *Node) refreshAllowLocked() {
	if !n.live.Load() {
		return // before Resume: PeerSource's owner may not be up yet
	}
	peers := n.cfg.Peers.Peers()
	m := make(map[netip.Addr]bool, len(peers))
	for _, p := range peers {
		for _, a := range []string{p.BT, p.HTTP} {
			if ap, err := netip.ParseAddrPort(a); err == nil {
				m[ap.Addr().Unmap()] = true
			}
		}
	}
	n.allow.snap.Store(&m)
	n.allow.gen.Add(1)
}

// kickAllow refreshes the snapshot in the background, at most one refresh
// waiting: for callers that hold anacrolix's lock.
func (n *Node) kickAllow() {
	select {
	case n.allowKick <- struct{}{}:
	default:
	}
}

// refreshAllowLoop refreshes the snapshot when kicked and every
// allowRefresh on the node's clock, until the node closes.
func (n *Node) refreshAllowLoop() {
	defer n.wg.Done()
	t := n.cfg.Clock.NewTicker(allowRefresh)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-n.allowKick:
		case <-t.C():
		}
		n.refreshAllow()
	}
}

// engineAllow is the peer wire's view of the allowlist. It runs under
// anacrolix's client lock, so a miss refreshes in the background: a host
// that just joined is let in on its next try.
func (n *Node) engineAllow(ip netip.Addr) bool {
	if n.allowed(ip) {
		return true
	}
	n.kickAllow()
	return false
}

// allowRanger is anacrolix's IPBlocklist made of an allow function: every
// address it does not allow is blocked.
type allowRanger func(netip.Addr) bool

var _ iplist.Ranger = allowRanger(nil)

func (f allowRanger) Lookup(ip net.IP) (iplist.Range, bool) {
	if a, ok := netip.AddrFromSlice(ip); ok && f(a.Unmap()) {
		return iplist.Range{}, false
	}
	return iplist.Range{First: ip, Last: ip, Description: "not an enrolled host"}, true
}

func (allowRanger) NumRanges() int { return 1 }

// gateListener closes, as soon as they are accepted, connections from
// addresses not let in (admit), and those beyond perClient open at once
// from one address: a host needs one or two (metadata, a stripe, status),
// and a misbehaving one must not tie up the server with half-sent
// requests.
type gateListener struct {
	net.Listener
	admit     func(netip.Addr) bool
	perClient int

	mu   sync.Mutex
	open map[netip.Addr]int
}

func (l *gateListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
		if err != nil || !l.admit(ap.Addr()) {
			refuse(c)
			continue
		}
		ip := ap.Addr().Unmap()
		l.mu.Lock()
		if l.open[ip] >= l.perClient {
			l.mu.Unlock()
			refuse(c)
			continue
		}
		l.open[ip]++
		l.mu.Unlock()
		return &gateConn{Conn: c, l: l, ip: ip}, nil
	}
}

// refuse closes c at once, with a reset rather than a FIN where the
// platform allows: the client sees its connection refused, not a response.
func refuse(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// openConns reports the connections open from ip.
func (l *gateListener) openConns(ip netip.Addr) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open[ip.Unmap()]
}

type gateConn struct {
	net.Conn
	l    *gateListener
	ip   netip.Addr
	once sync.Once
}

func (c *gateConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		if c.l.open[c.ip]--; c.l.open[c.ip] <= 0 {
			delete(c.l.open, c.ip)
		}
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}
