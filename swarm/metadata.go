package swarm

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"golang.org/x/time/rate"
)

// Metadata — a release's signed manifest and its torrents' info bytes —
// comes before any piece: a host can start its torrent only once it holds
// both. They are small next to the release (about 0.5% of S for a
// MediaWiki-like tree) but every host needs a whole copy, so if every host
// took them from the origin, the origin would send N copies of them before
// its stripes: measured with 16 processes in network namespaces, the
// origin's uplink spent 5 s (0.17 S/U) on them.
//
// So metadata spreads like the pieces do. Every node sends one response at
// a time, at its upload cap, and answers 503 meanwhile, as it does while it
// is receiving what it is asked for; a host asks peers before the origin,
// skips the origin in a round where a peer was busy (for up to
// metaOriginWait), and, while someone
// was busy, asks again after a short, growing, jittered wait. The first
// hosts get metadata from the origin, the next from them, and so on.
// (Without the skip, the origin, free again the moment it had sent a copy,
// served whoever asked while that copy was being checked and stored, about
// 10 ms: 25-75% of the metadata bytes at 8 hosts instead of one copy.)

const (
	// metaSlots is how many metadata responses a node sends at once. One
	// at full rate spreads fastest: the holders double every M/U, where
	// two at half rate triple every 2M/U.
	metaSlots = 1
	// metaAskPeers is how many peers a host asks in one round, before the
	// origin: enough to find a holder once a few percent of the fleet has
	// one, few enough that a round stays cheap at thousands of hosts. (At
	// 32 hosts in one process, asking 8 a round and backing off to 1 s
	// took the localisation delta from 0.18 to 0.40 S/U.)
	metaAskPeers = 32
	// metaPatience is how long a host keeps asking while nodes are busy.
	metaPatience = 2 * time.Minute
	// A round asks nodes one after another, so one that does not answer
	// must not hold it up for long: metaDialTimeout to connect,
	// metaHeaderTimeout for the status line (sent before any byte of the
	// body waits for the upload cap), and then at least metaMinRate over
	// every metaRateWindow of the body. The whole answer has no fixed
	// limit — a 2 GiB release's manifest is 6.7 MB, a minute at 110 KiB/s
	// — but one that trickles is given up on after one window.
	metaDialTimeout   = 3 * time.Second
	metaHeaderTimeout = 5 * time.Second
	metaRateWindow    = 10 * time.Second
	metaMinRate       = 8 << 10 // bytes per second
	// metaOriginWait is how long a host leaves the origin to others while
	// peers answer busy: past it the origin is asked in every round, so a
	// peer that answers busy forever does not keep a host from it.
	metaOriginWait = 10 * time.Second
)

// The metadata server's bounds: a request is read within serverReadTimeout
// (it is one line and a few headers); a kept-alive connection with no
// request is closed after serverIdleTimeout; a client has at most
// maxConnsPerClient connections open at once (allow.go). Answers are
// bounded per write (stripeWriteTimeout) and per turn (http.go).
const (
	serverReadTimeout = 5 * time.Second
	serverIdleTimeout = 10 * time.Second
	maxConnsPerClient = 8
	// allowRefresh is how often the allowlist is rebuilt from PeerSource
	// besides on a miss (allow.go).
	allowRefresh = time.Second
)

// newMetaClient is the HTTP client a node asks others for metadata with.
// It dials from local, the address peers let in (allow.go), unless local
// is the zero Addr.
func newMetaClient(local netip.Addr) *http.Client {
	d := &net.Dialer{Timeout: metaDialTimeout}
	if local.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: local.AsSlice()}
	}
	return &http.Client{
		Transport: &http.Transport{
			DialContext:           d.DialContext,
			ResponseHeaderTimeout: metaHeaderTimeout,
			MaxIdleConnsPerHost:   1,
			// Shorter than the server's serverIdleTimeout: the client,
			// not the server, closes an idle connection.
			IdleConnTimeout: serverIdleTimeout / 2,
		},
	}
}

// errBusy is a node's answer when all its metadata slots are taken;
// errNotFound when it does not hold what was asked.
var (
	errBusy     = errors.New("busy")
	errNotFound = errors.New("not found")
)

// serveMeta sends what open returns — a manifest envelope or info bytes —
// through one of the node's metadata slots at its upload cap, or answers
// 503 when none is free. Nothing is read from disk before a slot is taken.
//
// A slot stays taken for as long as the answer takes at the cap, but only
// when the answer was sent whole: when the client goes away (or stops
// reading) before the end, the slot is free at once. Either way the client
// may not take a slot here again until that time has passed: one that
// drops every answer early cannot keep the slot from others by asking
// again at once.
func (n *Node) serveMeta(w http.ResponseWriter, req *http.Request, open func() (sizedReader, error)) {
	ip := clientIP(req)
	start := n.cfg.Clock.Now()
	n.metaMu.Lock()
	next, waiting := n.metaClients[ip]
	n.metaMu.Unlock()
	if waiting && start.Before(next) {
		http.Error(w, "busy: ask a peer", http.StatusServiceUnavailable)
		return
	}
	select {
	case n.metaSlots <- struct{}{}:
	default:
		http.Error(w, "busy: every metadata slot is sending; ask a peer", http.StatusServiceUnavailable)
		return
	}
	complete := false
	var hold time.Duration
	defer func() {
		if complete && hold > 0 {
			// The slot stays taken for as long as the answer takes at the
			// cap, even when the limiter's burst let it go at once: a node
			// free again the moment it had sent a small manifest served
			// whoever asked while that copy was being checked and stored,
			// and the origin served most of the copies.
			select {
			case <-n.cfg.Clock.After(hold - n.cfg.Clock.Since(start)):
			case <-n.ctx.Done():
			}
		}
		<-n.metaSlots
	}()
	b, err := open()
	if err != nil {
		n.notHeld(w, req, err)
		return
	}
	if c, ok := b.(io.Closer); ok {
		defer c.Close()
	}
	if lim := n.e.up.Limit(); lim != rate.Inf && lim > 0 {
		hold = time.Duration(float64(b.Size()) / float64(lim) * float64(time.Second))
		n.metaMu.Lock()
		for k, t := range n.metaClients {
			if !start.Before(t) {
				delete(n.metaClients, k) // bounded by the clients asking within one hold
			}
		}
		n.metaClients[ip] = start.Add(hold)
		n.metaMu.Unlock()
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(b.Size(), 10))
	const slice = 32 << 10
	rc := http.NewResponseController(w)
	// Headers at once: the asker gives up on a node that does not answer
	// within metaHeaderTimeout, which must not count the wait for tokens.
	w.WriteHeader(http.StatusOK)
	rc.Flush()
	buf := make([]byte, slice)
	for {
		k, err := io.ReadFull(b, buf)
		if k == 0 {
			rc.Flush() // the whole answer now, before any hold
			complete = err == io.EOF
			return // the end, or a read error: the asker sees a short body
		}
		// The request's context ends when the client goes away: the
		// wait for tokens does not outlast it.
		if err := n.e.up.WaitN(req.Context(), k); err != nil {
			return
		}
		// A client that stops reading must not hold the slot.
		rc.SetWriteDeadline(n.cfg.Clock.IODeadline(stripeWriteTimeout))
		if _, err := w.Write(buf[:k]); err != nil {
			return
		}
		n.e.addMetaSent(int64(k))
		if err != nil {
			complete = rc.Flush() == nil && (err == io.EOF || err == io.ErrUnexpectedEOF)
			return
		}
	}
}

// metaBusy reports how many metadata slots are taken.
func (n *Node) metaBusy() int { return len(n.metaSlots) }

// clientIP is the address a request came from.
func clientIP(req *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(req.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// sizedReader is what serveMeta sends: bytes.Reader, io.SectionReader.
type sizedReader interface {
	io.Reader
	Size() int64
}

// notHeld answers a request for metadata this node does not hold: 503
// while it is receiving it (ask again soon: it will), else 404.
func (n *Node) notHeld(w http.ResponseWriter, req *http.Request, err error) {
	if _, ok := n.receiving.Load(req.URL.Path); ok {
		http.Error(w, "busy: receiving it; ask again", http.StatusServiceUnavailable)
		return
	}
	http.Error(w, err.Error(), http.StatusNotFound)
}

// fromPeers GETs path from peers until one answers with bytes that use
// accepts: each round asks up to metaAskPeers other hosts in random order
// (those in this node's datacenter first), then the origin unless one of
// them was busy. While some node answered busy it waits and asks again,
// for up to metaPatience; when every node answered otherwise (nobody has
// it, or what they had was bad) it fails at once. use reads each answer as
// it arrives and bounds how much it reads: a manifest goes to disk, not
// into memory. While use runs, this node answers busy for path.
func (n *Node) fromPeers(path string, use func(io.Reader) error) error {
	receive := func(r io.Reader) error {
		n.receiving.Store(path, true)
		defer n.receiving.Delete(path)
		return use(r)
	}
	start := n.cfg.Clock.Now()
	deadline := start.Add(metaPatience)
	wait := 20 * time.Millisecond
	// Peers that failed otherwise than busy or not found — did not
	// answer, trickled, sent bad bytes — are not asked again by this
	// fetch.
	failed := map[string]bool{}
	for {
		peers := n.metaSources()
		if len(peers) == 0 {
			return errors.New("no peers to ask")
		}
		var errs []string
		busy := false
		for _, p := range peers {
			if failed[p.Name] {
				continue
			}
			if p.Origin && busy && n.cfg.Clock.Since(start) < metaOriginWait {
				continue // a peer has it or soon will: leave the origin to others
			}
			err := n.getMeta(p.HTTP, path, receive)
			if err == nil {
				return nil
			}
			busy = busy || errors.Is(err, errBusy)
			if !p.Origin && !errors.Is(err, errBusy) && !errors.Is(err, errNotFound) {
				failed[p.Name] = true
			}
			errs = append(errs, p.Name+": "+err.Error())
		}
		if !busy || n.cfg.Clock.Now().After(deadline) {
			return fmt.Errorf("no peer could serve %s: %s", path, strings.Join(errs, "; "))
		}
		select {
		case <-n.ctx.Done():
			return n.ctx.Err()
		case <-n.cfg.Clock.After(wait/2 + rand.N(wait)):
		}
		wait = min(2*wait, 250*time.Millisecond)
	}
}

// metaSources picks the nodes to ask for metadata in one round: up to
// metaAskPeers hosts, this datacenter's first, then every origin.
func (n *Node) metaSources() []Peer {
	var near, far, origins []Peer
	for _, p := range n.cfg.Peers.Peers() {
		switch {
		case p.HTTP == "":
		case p.Origin:
			origins = append(origins, p)
		case p.DC == n.cfg.DC:
			near = append(near, p)
		default:
			far = append(far, p)
		}
	}
	rand.Shuffle(len(near), func(i, j int) { near[i], near[j] = near[j], near[i] })
	rand.Shuffle(len(far), func(i, j int) { far[i], far[j] = far[j], far[i] })
	hosts := append(near, far...)
	return append(hosts[:min(len(hosts), metaAskPeers)], origins...)
}
