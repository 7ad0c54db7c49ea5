package swarm

import (
	"context"
	"net"
	"net/netip"
	"scatter/swarm/clock"
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

// allowlist is who may use the data plane: this host, the AllowClients
// networks, and the hosts PeerSource lists, by a snapshot replaced whole
// on each refresh so that lookups take no lock: anacrolix consults it with
// its client lock held. Until open is called it lets no host in.
type allowlist struct {
	self    netip.Addr     // this host's own address
	clients []netip.Prefix // Config.AllowClients
	peers   PeerSource
	live    atomic.Bool   // open was called: PeerSource may be asked
	kick    chan struct{} // asks the loop for a refresh, one waiting at most

	snap    atomic.Pointer[map[netip.Addr]bool]
	gen     atomic.Uint64 // refreshes done
	refresh sync.Mutex    // one refresh at a time
}

func newAllowlist(self netip.Addr, clients []netip.Prefix, peers PeerSource) *allowlist {
	return &allowlist{self: self, clients: clients, peers: peers, kick: make(chan struct{}, 1)}
}

// open lets in the hosts PeerSource lists from now on: its owner is up.
func (a *allowlist) open() {
	a.live.Store(true)
	a.rebuild()
}

// allowed reports whether ip may use the data plane, by the last snapshot.
func (a *allowlist) allowed(ip netip.Addr) bool {
	ip = ip.Unmap()
	if ip == a.self {
		return true
	}
	for _, p := range a.clients {
		if p.Contains(ip) {
			return true
		}
	}
	if m := a.snap.Load(); m != nil {
		return (*m)[ip]
	}
	return false
}

// admit is allowed, refreshing the snapshot first on a miss: a host that
// joined a moment ago is let in at once. Concurrent misses share one
// refresh. It must not be called with locks held that PeerSource may take.
func (a *allowlist) admit(ip netip.Addr) bool {
	if a.allowed(ip) {
		return true
	}
	gen := a.gen.Load()
	a.refresh.Lock()
	if a.gen.Load() == gen {
		a.rebuildLocked()
	}
	a.refresh.Unlock()
	return a.allowed(ip)
}

// rebuild rebuilds the snapshot from PeerSource.
func (a *allowlist) rebuild() {
	a.refresh.Lock()
	defer a.refresh.Unlock()
	a.rebuildLocked()
}

func (a *allowlist) rebuildLocked() {
	if !a.live.Load() {
		return // before open: PeerSource's owner may not be up yet
	}
	peers := a.peers.Peers()
	m := make(map[netip.Addr]bool, len(peers))
	for _, p := range peers {
		for _, s := range []string{p.BT, p.HTTP} {
			if ap, err := netip.ParseAddrPort(s); err == nil {
				m[ap.Addr().Unmap()] = true
			}
		}
	}
	a.snap.Store(&m)
	a.gen.Add(1)
}

// loop rebuilds the snapshot when kicked and every allowRefresh on clk,
// until ctx ends.
func (a *allowlist) loop(ctx context.Context, clk clock.Clock) {
	t := clk.NewTicker(allowRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.kick:
		case <-t.C():
		}
		a.rebuild()
	}
}

// engine is the peer wire's view of the allowlist. It runs under
// anacrolix's client lock, so a miss refreshes in the background: a host
// that just joined is let in on its next try.
func (a *allowlist) engine(ip netip.Addr) bool {
	if a.allowed(ip) {
		return true
	}
	select {
	case a.kick <- struct{}{}:
	default:
	}
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
