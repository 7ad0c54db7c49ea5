package swarm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	alog "github.com/anacrolix/log"
	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/metainfo"
	pp "github.com/anacrolix/torrent/peer_protocol"
	"github.com/anacrolix/torrent/storage"
	"golang.org/x/time/rate"

	"scatter/artifact"
	"scatter/artifact/datadir"
	"scatter/swarm/clock"
)

// EngineConfig configures a host's BitTorrent engine. The zero value of each
// field means its default.
type EngineConfig struct {
	// ListenAddr is the peer-wire address, e.g. "127.0.0.5:0" (port 0: the
	// kernel picks). Each host needs its own IP: peers are banned by IP.
	ListenAddr string
	// UploadRate and DownloadRate cap the host's transfer in bytes per
	// second; 0 means unlimited.
	UploadRate, DownloadRate int64
	Log                      *slog.Logger
	// Allow, if set, is asked about every peer address before a
	// connection is accepted or dialled; addresses it refuses are closed
	// before the handshake. nil lets everyone in. It is called with the
	// BitTorrent client's lock held: it must be quick and take no lock
	// that code calling into the engine may hold.
	Allow func(netip.Addr) bool
	// Clock times the pause after a failed write and the staging file's
	// flushes; default the wall clock.
	Clock clock.Clock
}

// Engine moves chunks between hosts: one anacrolix client, many torrents.
type Engine struct {
	cl    *torrent.Client
	ln    net.Listener // the peer wire's, handed to cl (wire.go)
	log   *slog.Logger
	clock clock.Clock
	// up is the host's upload limiter, shared by the peer wire and the
	// metadata server's stripe responses.
	up *rate.Limiter

	mu         sync.Mutex
	received   map[netip.Addr]int64    // useful piece bytes received, by peer IP
	httpUp     int64                   // stripe bytes served over HTTP
	metaUp     int64                   // manifest and info bytes served over HTTP
	writeFails atomic.Int64            // received blocks that could not be written, every transfer
	rejected   map[metainfo.Hash]int64 // our requests peers rejected, by torrent

	// wrapStorage, if set, wraps each transfer's storage: tests inject
	// faults with it.
	wrapStorage func(storage.ClientImpl) storage.ClientImpl
}

// addReceived counts bytes received from ip outside the peer wire.
func (e *Engine) addReceived(ip netip.Addr, n int64) {
	e.mu.Lock()
	e.received[ip] += n
	e.mu.Unlock()
}

// addSent counts stripe bytes sent outside the peer wire.
func (e *Engine) addSent(n int64) {
	e.mu.Lock()
	e.httpUp += n
	e.mu.Unlock()
}

// addMetaSent counts manifest and info bytes sent.
func (e *Engine) addMetaSent(n int64) {
	e.mu.Lock()
	e.metaUp += n
	e.mu.Unlock()
}

// MetaUploaded is the manifest and info bytes this node served.
func (e *Engine) MetaUploaded() int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.metaUp
}

// rateLimiter returns a limiter for bytes per second, or an unlimited one.
func rateLimiter(bps int64) *rate.Limiter {
	if bps <= 0 {
		return rate.NewLimiter(rate.Inf, 0)
	}
	// anacrolix takes whole blocks from the bucket: the burst must hold one.
	return rate.NewLimiter(rate.Limit(bps), max(int(bps/4), maxRequestLen))
}

// closedClientConfig is anacrolix's default client configuration with
// every way of finding peers turned off except being given them: no DHT,
// trackers, PEX, uTP, IPv6, webtorrent, webseeds or port forwarding.
func closedClientConfig() *torrent.ClientConfig {
	c := torrent.NewDefaultClientConfig()
	c.NoDHT = true
	c.DisableTrackers = true
	c.DisablePEX = true
	c.DisableUTP = true
	c.DisableIPv6 = true
	c.DisableWebtorrent = true
	c.DisableWebseeds = true
	c.NoDefaultPortForwarding = true
	return c
}

// NewEngine starts a client listening on cfg.ListenAddr, with trackers, DHT,
// PEX, uTP, IPv6, UPnP and webtorrent off: peers come from membership only.
func NewEngine(cfg EngineConfig) (*Engine, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.ListenAddr == "" {
		return nil, errors.New("swarm engine: ListenAddr is required")
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	e := &Engine{log: cfg.Log, clock: cfg.Clock, received: map[netip.Addr]int64{}, rejected: map[metainfo.Hash]int64{}}
	c := closedClientConfig()
	c.Seed = true
	c.DropMutuallyCompletePeers = true
	// The default 1 MiB budget stalls uploads in v1.59.1 (field notes).
	c.MaxAllocPeerRequestDataPerConn = 16 << 20
	c.DialRateLimiter = rate.NewLimiter(rate.Inf, 0)
	e.up = rateLimiter(cfg.UploadRate)
	c.UploadRateLimiter = e.up
	c.DownloadRateLimiter = rateLimiter(cfg.DownloadRate)
	c.DefaultStorage = refuseStorage{}
	if cfg.Allow != nil {
		c.IPBlocklist = allowRanger(cfg.Allow)
	}
	c.Logger = alog.Default.FilterLevel(alog.Critical)
	c.Slogger = cfg.Log.With("component", "anacrolix")
	c.Callbacks.ReceivedUsefulData = append(c.Callbacks.ReceivedUsefulData, e.countReceived)
	c.Callbacks.ReadMessage = e.countRejected
	c.Callbacks.ReadExtendedHandshake = limitRequests
	// Dial peers from the listen address, not from whatever source the
	// routing table picks: peers see (and count, and ban) the address this
	// host announces, which matters on multi-homed hosts and for hosts
	// sharing 127.0.0.0/8 in tests.
	host, _, err := net.SplitHostPort(cfg.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("swarm engine: ListenAddr: %w", err)
	}
	var local net.IP
	if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
		local = ip
	}
	// The peer wire's sockets are ours (wire.go): anacrolix gets a
	// listener and a dialer instead of making its own, and dials
	// without header obfuscation (the peer wire is not confidential
	// either way, docs/trust.md), so that the framing wireConn follows
	// is plaintext. Peers offering obfuscation are still accepted.
	c.DisableTCP = true
	c.HeaderObfuscationPolicy = torrent.HeaderObfuscationPolicy{Preferred: false, RequirePreferred: false}
	// No TCP keep-alives: BitTorrent connections send their own (as
	// anacrolix's own listener did).
	ln, err := (&net.ListenConfig{KeepAlive: -1}).Listen(context.Background(), "tcp4", cfg.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("swarm engine: listen: %w", err)
	}
	cl, err := torrent.NewClient(c)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("swarm engine: %w", err)
	}
	cl.AddListener(wireListener{ln})
	cl.AddDialer(newWireDialer(local))
	e.ln = ln
	e.cl = cl
	return e, nil
}

func (e *Engine) countReceived(ev torrent.ReceivedUsefulDataEvent) {
	addr, ok := peerIP(ev.Peer.RemoteAddr)
	if !ok {
		return
	}
	e.mu.Lock()
	e.received[addr] += int64(len(ev.Message.Piece))
	e.mu.Unlock()
}

// countRejected counts Reject messages: a peer refusing a block we asked
// for. Some acknowledge our own cancels; others mean the peer could not
// serve it, and status says so when a transfer stalls.
func (e *Engine) countRejected(pc *torrent.PeerConn, m *pp.Message) {
	if m.Type != pp.Reject {
		return
	}
	t := pc.Torrent()
	select {
	case <-t.Closed(): // dropped: its count is gone
		return
	default:
	}
	ih := t.InfoHash()
	e.mu.Lock()
	e.rejected[ih]++
	e.mu.Unlock()
}

func peerIP(a interface{ String() string }) (netip.Addr, bool) {
	if a == nil {
		return netip.Addr{}, false
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap(), true
}

// ReceivedFrom returns the useful piece bytes received from each peer IP.
func (e *Engine) ReceivedFrom() map[netip.Addr]int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[netip.Addr]int64, len(e.received))
	for k, v := range e.received {
		out[k] = v
	}
	return out
}

// Uploaded returns the piece bytes this host has sent to peers, over the
// peer wire and as stripes.
func (e *Engine) Uploaded() int64 {
	s := e.cl.ConnStats()
	e.mu.Lock()
	defer e.mu.Unlock()
	return s.BytesWrittenData.Int64() + e.httpUp
}

// WriteFailures counts received blocks that could not be written (disk
// full, I/O error), over every transfer since the engine started.
func (e *Engine) WriteFailures() int64 { return e.writeFails.Load() }

// ActivePeers counts the open peer-wire connections over every torrent (a
// peer connected for two torrents counts twice).
func (e *Engine) ActivePeers() int {
	n := 0
	for _, t := range e.cl.Torrents() {
		n += t.Stats().ActivePeers
	}
	return n
}

// Addr is the peer-wire address peers dial.
func (e *Engine) Addr() string {
	for _, a := range e.cl.ListenAddrs() {
		if ta, ok := a.(*net.TCPAddr); ok {
			return ta.String()
		}
	}
	return ""
}

// Close stops the client and every transfer.
func (e *Engine) Close() error {
	// The client first: its accept loop spins on a closed listener
	// until the client is closed.
	errs := e.cl.Close()
	if err := e.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Transfer is one torrent of a release on this host.
type Transfer struct {
	e      *Engine
	t      *torrent.Torrent
	st     *chunkStorage
	Layout *Layout

	reconnects atomic.Int64

	mu         sync.Mutex
	writeErr   error // the last failed write of a received block
	writeErrAt time.Time
	writeFails int64
	paused     bool // downloads paused after a failed write
}

// Add starts serving (and, with Download, fetching) a release layout whose
// info bytes the caller has checked against the signed info hash. Blocks
// not yet verified are staged in files under the repo's partial directory.
func (e *Engine) Add(store *artifact.Store, l *Layout, info []byte, repo datadir.Repo) (*Transfer, error) {
	cs := newChunkStorage(store, l, repo, e.log, e.clock)
	var impl storage.ClientImpl = cs
	if e.wrapStorage != nil {
		impl = e.wrapStorage(cs)
	}
	t, isNew := e.cl.AddTorrentOpt(torrent.AddTorrentOpts{
		InfoHash:  InfoHashOf(info).anacrolix(),
		InfoBytes: info,
		Storage:   impl,
		ChunkSize: pp.Integer(requestLen(l.PieceLen)),
	})
	if !isNew {
		return nil, fmt.Errorf("swarm: torrent %s already added", InfoHashOf(info))
	}
	x := &Transfer{e: e, t: t, st: cs, Layout: l}
	t.SetOnWriteChunkError(x.writeFailed)
	return x, nil
}

// maxRequestLen is the longest block this node asks a peer for. Every
// scatter node accepts it: the upload limiter's burst, which bounds the
// requests anacrolix serves, is at least this (rateLimiter), and the
// message decoder takes up to four times the chunk size. One request per
// piece up to 64 KiB instead of anacrolix's 16 KiB blocks halves (32 KiB
// pieces) or quarters (64 KiB) the requests, pieces messages, writes and
// request planning per byte. Stock clients downloading from us still ask
// for 16 KiB blocks; this node serves any length up to the burst.
const maxRequestLen = 64 << 10

func requestLen(pieceLen int64) int64 { return min(pieceLen, maxRequestLen) }

// requestBudget bounds the bytes this node asks one peer for at a time.
// A v1.59.1 peer reserves MaxAllocPeerRequestDataPerConn (16 MiB on every
// scatter node) for the data of the requests it has queued from one
// connection, and serves them one by one, each waiting for its own
// reservation: once queued requests exceed the budget, it can wait on one
// whose reservation never comes, and the transfer stalls until requests
// are cancelled (the default 1 MiB stalled uploads; field notes). anacrolix
// keeps up to about 960 requests in flight to a peer, which fits 16 MiB in
// 16 KiB blocks, not in 64 KiB ones: measured on loopback, unlimited, a
// 103 MiB torrent took 25 s instead of 2.5. So a peer's announced queue
// length (reqq) is lowered to what fits 12 MiB in this torrent's blocks.
const requestBudget = 12 << 20

// limitRequests lowers the request queue length a peer announced
// (anacrolix's ReadExtendedHandshake callback, run before it takes it).
func limitRequests(pc *torrent.PeerConn, d *pp.ExtendedHandshakeMessage) {
	t := pc.Torrent()
	if t == nil || t.Info() == nil {
		return
	}
	n := requestLen(t.Info().PieceLength)
	if n <= 16<<10 {
		return // anacrolix's own block size: as before
	}
	reqq := d.Reqq
	if reqq == 0 {
		reqq = 250 // what anacrolix assumes of a peer that says nothing
	}
	d.Reqq = int(min(int64(reqq), requestBudget/n))
}

// writeRetry is how long a transfer pauses after a received block could not
// be written.
const writeRetry = 5 * time.Second

// writeFailed handles a received block that could not be written (disk
// full, I/O error). anacrolix's default stops the torrent's downloads for
// good, silently: a host would sit stalled until restarted. Instead the
// transfer pauses its downloads for writeRetry (not fetching blocks it
// cannot keep) and tries again; status shows the error while the fetch
// stalls. The blocks in flight fail together: one pause covers them, and
// the log has the first failure and every 100th.
func (x *Transfer) writeFailed(err error) {
	x.mu.Lock()
	x.writeErr, x.writeErrAt = err, x.e.clock.Now()
	x.writeFails++
	x.e.writeFails.Add(1)
	fails, paused := x.writeFails, x.paused
	x.paused = true
	x.mu.Unlock()
	if fails%100 == 1 {
		x.e.log.Error("writing a received block failed; downloads pause and retry", "release", x.Layout.Release,
			"kind", x.Layout.Kind, "retry_in", writeRetry, "failures", fails, "err", err)
	}
	if paused {
		return
	}
	x.t.DisallowDataDownload()
	x.e.clock.AfterFunc(writeRetry, func() {
		x.mu.Lock()
		x.paused = false
		x.mu.Unlock()
		select {
		case <-x.t.Closed():
		default:
			x.t.AllowDataDownload()
		}
	})
}

// WriteErr returns the last error writing a received block and when it
// happened (nil if none).
func (x *Transfer) WriteErr() (error, time.Time) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.writeErr, x.writeErrAt
}

// Paused reports whether downloads pause after a failed write.
func (x *Transfer) Paused() bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.paused
}

// InfoHash returns the torrent's info hash.
func (x *Transfer) InfoHash() InfoHash { return InfoHash(x.t.InfoHash()) }

// AddPeers tells the transfer where peers listen ("ip:port").
func (x *Transfer) AddPeers(addrs []string) {
	pi := make([]torrent.PeerInfo, 0, len(addrs))
	for _, a := range addrs {
		pi = append(pi, torrent.PeerInfo{Addr: torrent.StringAddr(a), Trusted: true})
	}
	x.t.AddPeers(pi)
}

// Download asks for every piece the store does not already cover.
func (x *Transfer) Download() { x.t.DownloadAll() }

// PieceRange returns the byte range of pieces [first, end).
func (x *Transfer) PieceRange(first, end int) (off, n int64) {
	off = int64(first) * x.Layout.PieceLen
	return off, min(int64(end)*x.Layout.PieceLen, x.Layout.Length) - off
}

// Pieces returns the number of pieces.
func (x *Transfer) Pieces() int { return x.Layout.Pieces() }

// HasPiece reports whether piece i is complete.
func (x *Transfer) HasPiece(i int) bool { return x.t.PieceState(i).Complete }

// PutPiece stores the bytes of piece i obtained outside the swarm and has
// anacrolix verify them against the piece hash, as if a peer had sent them:
// on success the piece counts as complete and is announced to peers.
func (x *Transfer) PutPiece(ctx context.Context, i int, data []byte) error {
	p := &chunkPiece{s: x.st, index: i, off: int64(i) * x.Layout.PieceLen}
	p.n = min(x.Layout.PieceLen, x.Layout.Length-p.off)
	if int64(len(data)) != p.n {
		return fmt.Errorf("piece %d: got %d bytes, want %d", i, len(data), p.n)
	}
	if _, err := p.WriteAt(data, 0); err != nil {
		return err
	}
	if err := x.t.Piece(i).VerifyDataContext(ctx); err != nil {
		return err
	}
	// VerifyDataContext returns once the hash is computed; anacrolix marks
	// the piece complete a moment later, outside its lock (MarkComplete may
	// sync a pack to disk), so wait for the marking to finish.
	var ps torrent.PieceState
	x.e.clock.Poll(ctx, 5*time.Millisecond, 0, func() bool {
		ps = x.t.PieceState(i)
		return ps.Complete || !ps.Checking && !ps.Marking
	})
	switch {
	case ps.Complete:
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	}
	return fmt.Errorf("piece %d failed verification", i)
}

// Wait blocks until every piece is complete and every chunk is in the store.
func (x *Transfer) Wait(ctx context.Context) error {
	select {
	case <-x.t.Complete().On():
	case <-ctx.Done():
		return ctx.Err()
	case <-x.t.Closed():
		return errors.New("transfer closed")
	}
	return x.st.finish()
}

// Progress returns bytes complete and total.
func (x *Transfer) Progress() (done, total int64) {
	return x.t.BytesCompleted(), x.Layout.Length
}

// Stats returns anacrolix's counters for this torrent.
func (x *Transfer) Stats() torrent.TorrentStats { return x.t.Stats() }

// Status describes the engine in anacrolix's words, for `scatter status
// --engine`: every torrent's piece states and, per connection, choke and
// interest flags ("flags: A:conn:B", A ours towards the peer, B the
// peer's towards us), requests in flight either way ("reqq") and chunks
// received.
func (e *Engine) Status() string {
	var b strings.Builder
	e.cl.WriteStatus(&b)
	return b.String()
}

// Status is the part of Engine.Status about this transfer's torrent,
// at most 32 KiB of it: for the log, when the transfer stalls.
func (x *Transfer) Status() string {
	all := x.e.Status()
	i := strings.Index(all, "Infohash: "+x.t.InfoHash().HexString())
	if i < 0 {
		return "torrent not in the engine"
	}
	// The section starts two lines up, at the torrent's name, and ends
	// where the next torrent's name does.
	start := i
	for range 2 {
		start = strings.LastIndex(all[:max(start-1, 0)], "\n") + 1
	}
	end := len(all)
	if j := strings.Index(all[i+1:], "\nInfohash: "); j >= 0 {
		end = i + 1 + j
		for range 2 {
			end = strings.LastIndex(all[:end], "\n")
		}
	}
	sec := all[start:end]
	if len(sec) > 32<<10 {
		sec = sec[:32<<10] + "\n[cut at 32 KiB]"
	}
	return sec
}

// SetUpload allows or stops uploads of this torrent. anacrolix v1.59.1
// only applies the change when a connection's writer next wakes, so a peer
// could wait forever for blocks it requested before the switch, never told
// it is choked; closing the connections makes every peer reconnect and see
// the new state at once, and re-request what it lacks from others.
func (x *Transfer) SetUpload(allow bool) {
	if allow {
		x.t.AllowDataUpload()
	} else {
		x.t.DisallowDataUpload()
	}
	for _, pc := range x.t.PeerConns() {
		pc.Close()
	}
}

// PeersWithMissing counts the connected peers that claim a piece this host
// lacks.
func (x *Transfer) PeersWithMissing() int {
	var missing []uint32
	for i := range x.Pieces() {
		if !x.HasPiece(i) {
			missing = append(missing, uint32(i))
		}
	}
	n := 0
	for _, pc := range x.t.PeerConns() {
		has := pc.PeerPieces()
		for _, i := range missing {
			if has.Contains(i) {
				n++
				break
			}
		}
	}
	return n
}

// Reconnect closes the transfer's connections and returns once they are
// gone, so that AddPeers dials them again at once (anacrolix skips a dial
// to an address it still has a connection with). It is how a stalled
// transfer gets its pieces asked for again: anacrolix v1.59.1 has no
// request timeout, and when a peer rejects a request (its read failed,
// say) it asks no other peer for that block until something else changes
// (a have, an unchoke, a closed connection that held requests). With one
// piece left and every peer already connected, nothing else changes. A
// fresh connection starts with no requests and asks anew.
func (x *Transfer) Reconnect() {
	x.reconnects.Add(1)
	old := x.t.PeerConns()
	for _, pc := range old {
		pc.Close()
	}
	x.e.clock.Poll(context.Background(), 10*time.Millisecond, time.Second, func() bool {
		for _, pc := range x.t.PeerConns() {
			if slices.Contains(old, pc) {
				return false
			}
		}
		return true
	})
}

// Rejected returns how many Reject messages peers have sent on this
// transfer: requests they could not serve, and answers to our cancels.
func (x *Transfer) Rejected() int64 {
	x.e.mu.Lock()
	defer x.e.mu.Unlock()
	return x.e.rejected[x.t.InfoHash()]
}

// Drop stops the transfer.
func (x *Transfer) Drop() {
	ih := x.t.InfoHash()
	x.t.Drop()
	x.e.mu.Lock()
	delete(x.e.rejected, ih)
	x.e.mu.Unlock()
}

// refuseStorage is the client's default storage: every scatter torrent
// brings its own, so anything else is a bug, not a reason to write files.
type refuseStorage struct{}

func (refuseStorage) OpenTorrent(context.Context, *metainfo.Info, metainfo.Hash) (storage.TorrentImpl, error) {
	return storage.TorrentImpl{}, errors.New("swarm: torrent without scatter storage")
}

var _ io.Closer = (*Engine)(nil)
