package swarm

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"scatter/artifact/core"
	"scatter/swarm/clock"
)

// metaServer is a node's HTTP server: it answers peers' requests for
// release metadata (a manifest, a torrent's info bytes) one at a time at
// the upload cap, and the origin's stripes one piece per turn. It owns its
// listener, the gate that lets in only admitted addresses, its slots and
// turns; it reads releases through releaseSource and nothing else of the
// node. The tracker and status routes are the node's, added to its mux.
type metaServer struct {
	rels  releaseSource
	clock clock.Clock
	log   *slog.Logger
	// up is the host's upload limiter, shared with the peer wire; sent and
	// metaSent count what the server sends of pieces and of metadata.
	up             *rate.Limiter
	sent, metaSent func(int64)
	// done ends a slot's hold when the node closes.
	done <-chan struct{}

	// turns makes the origin send stripe pieces round robin; it has its
	// own lock.
	turns turns
	// slots bounds the manifests and infos this node sends at once.
	slots chan struct{}
	// clients is when each client may next take a slot; mu guards it.
	mu      sync.Mutex
	clients map[netip.Addr]time.Time
	// inbound is the metadata paths this node is receiving now, which it
	// tells askers to ask again for instead of "not found" (receiving).
	inbound sync.Map

	gate *gateListener
	srv  *http.Server
}

// releaseSource is what the metadata server reads of a node's releases:
// the registry. Its methods are called from many handlers at once and do
// not wait for a fetch.
type releaseSource interface {
	// get returns the named repo, nil if the node has none.
	get(repo string) *repo
	// layout returns the layout of a release's torrent of kind ("full",
	// "delta").
	layout(r *repo, id core.ReleaseID, kind string) (*Layout, error)
}

var _ releaseSource = (*registry)(nil)

// The metadata server's bounds: a request is read within serverReadTimeout
// (it is one line and a few headers); a kept-alive connection with no
// request is closed after serverIdleTimeout; a client has at most
// maxConnsPerClient connections open at once (allow.go). Answers are
// bounded per write (stripeWriteTimeout) and per turn (turnLimit).
const (
	serverReadTimeout = 5 * time.Second
	serverIdleTimeout = 10 * time.Second
	maxConnsPerClient = 8
)

// newMetaServer makes the metadata server of a node whose upload limiter
// is up; start serves it.
func newMetaServer(rels releaseSource, up *rate.Limiter, sent, metaSent func(int64), clk clock.Clock, log *slog.Logger, done <-chan struct{}) *metaServer {
	return &metaServer{rels: rels, up: up, sent: sent, metaSent: metaSent, clock: clk, log: log, done: done,
		slots: make(chan struct{}, metaSlots), clients: map[netip.Addr]time.Time{}}
}

// start serves h on ln until close, behind a gate that lets in only the
// addresses admit allows; routes adds the server's own routes to h.
func (s *metaServer) start(ln net.Listener, admit func(netip.Addr) bool, h *http.ServeMux, wg *sync.WaitGroup) {
	s.routes(h)
	s.gate = &gateListener{Listener: ln, admit: admit, perClient: maxConnsPerClient, open: map[netip.Addr]int{}}
	s.srv = &http.Server{
		Handler: h,
		// A request is one line and a few headers: it arrives at once
		// or not at all. Answers have no overall limit (a stripe takes
		// S/U): each write has its own deadline (serveMeta, serveData).
		ReadHeaderTimeout: serverReadTimeout,
		ReadTimeout:       serverReadTimeout,
		IdleTimeout:       serverIdleTimeout,
		MaxHeaderBytes:    16 << 10,
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := s.srv.Serve(s.gate); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("metadata server stopped", "err", err)
		}
	}()
}

// close stops serving and closes every connection.
func (s *metaServer) close() { s.srv.Close() }

// addr is the address the server listens on.
func (s *metaServer) addr() string { return s.gate.Addr().String() }

// routes serves release metadata to peers and stock clients:
//
//	GET /v1/repos/{repo}/releases/{id}/manifest        signed manifest envelope
//	GET /v1/repos/{repo}/releases/{id}/torrent/{kind}  info bytes (kind: full, delta)
//	GET /v1/repos/{repo}/releases/{id}/data/{kind}?off=&n=  torrent bytes (origin stripes)
//
// and the node adds (node.go)
//
//	GET /v1/status                                     the node's Status, as JSON
//	GET /announce                                      a BitTorrent tracker (BEP 3, BEP 23) answering from membership (tracker.go)
//
// Everything served is verifiable — manifests carry the deploy key's
// signature, info bytes hash to the signed info hash — but not public: only
// hosts and allowed clients get a connection at all (allow.go).
func (s *metaServer) routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/repos/{repo}/releases/{id}/manifest", func(w http.ResponseWriter, req *http.Request) {
		r, id, ok := s.lookup(w, req)
		if !ok {
			return
		}
		// Streamed from the file: a large release's envelope is megabytes,
		// sent for a minute at the upload cap.
		s.serveMeta(w, req, func() (sizedReader, error) {
			f, err := r.st.OpenManifest(id)
			if err != nil {
				return nil, err
			}
			fi, err := f.Stat()
			if err != nil {
				f.Close()
				return nil, err
			}
			return closingSection{io.NewSectionReader(f, 0, fi.Size()), f}, nil
		})
	})
	mux.HandleFunc("GET /v1/repos/{repo}/releases/{id}/torrent/{kind}", func(w http.ResponseWriter, req *http.Request) {
		r, id, ok := s.lookup(w, req)
		if !ok {
			return
		}
		s.serveMeta(w, req, func() (sizedReader, error) {
			info, err := r.infoBytes(id, req.PathValue("kind"))
			if err != nil {
				return nil, err
			}
			return bytes.NewReader(info), nil
		})
	})
	mux.HandleFunc("GET /v1/repos/{repo}/releases/{id}/data/{kind}", s.serveData)
}

// closingSection is a manifest file's section that closes the file.
type closingSection struct {
	*io.SectionReader
	f *os.File
}

func (c closingSection) Close() error { return c.f.Close() }

func (s *metaServer) lookup(w http.ResponseWriter, req *http.Request) (*repo, core.ReleaseID, bool) {
	id, err := core.ParseReleaseID(req.PathValue("id"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return nil, id, false
	}
	r := s.rels.get(req.PathValue("repo"))
	if r == nil {
		http.Error(w, "no such repo", http.StatusNotFound)
		return nil, id, false
	}
	return r, id, true
}

// serveData sends a byte range of a torrent's data — a host's stripe — at
// the host's upload rate, shared with the peer wire. Any node can serve it;
// hosts ask the origin, so that each piece leaves the origin once.
func (s *metaServer) serveData(w http.ResponseWriter, req *http.Request) {
	r, id, ok := s.lookup(w, req)
	if !ok {
		return
	}
	l, err := s.rels.layout(r, id, req.PathValue("kind"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	off, err1 := strconv.ParseInt(req.URL.Query().Get("off"), 10, 64)
	size, err2 := strconv.ParseInt(req.URL.Query().Get("n"), 10, 64)
	if err1 != nil || err2 != nil || off < 0 || size <= 0 || off > l.Length || size > l.Length-off {
		http.Error(w, "bad range", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	const slice = 32 << 10
	buf := make([]byte, slice)
	rc := http.NewResponseController(w)
	pieceEnd := int64(-1) // end of the piece whose turn this request holds
	var turnEnd time.Time // when that turn ends, on the wall clock (a socket deadline)
	defer func() {
		if pieceEnd >= 0 {
			s.turns.give()
		}
	}()
	for size > 0 {
		if off >= pieceEnd {
			// A piece at a time, round robin among the requests (turns.go).
			if pieceEnd >= 0 {
				s.turns.give()
				pieceEnd = -1
			}
			if err := s.turns.take(req.Context()); err != nil {
				return
			}
			pieceEnd = (off/l.PieceLen + 1) * l.PieceLen
			turnEnd = s.clock.IODeadline(s.turnLimit(pieceEnd - off))
		}
		k := min(size, slice, pieceEnd-off)
		b := buf[:k]
		for c, err := range l.overlapping(off, k) {
			if err != nil {
				s.log.Warn("serve data", "release", id, "err", err)
				return
			}
			from, to := max(off, c.Off), min(off+k, c.Off+c.CSize)
			if err := r.st.ReadFrameAt(c.ID, c.CSize, b[from-off:to-off], from-c.Off); err != nil {
				s.log.Warn("serve data", "release", id, "err", err)
				return // the short body tells the client
			}
		}
		if err := s.up.WaitN(req.Context(), int(k)); err != nil {
			return
		}
		// Bounded: a host that stops reading (frozen, partitioned), or
		// reads slowly, must not hold the turn, and with it every other
		// host's stripe: each write within stripeWriteTimeout, the whole
		// piece within its turn.
		dl := s.clock.IODeadline(stripeWriteTimeout)
		if turnEnd.Before(dl) {
			dl = turnEnd
		}
		rc.SetWriteDeadline(dl)
		if _, err := w.Write(b); err != nil {
			return
		}
		s.sent(k)
		off += k
		size -= k
	}
}

// stripeWriteTimeout bounds one 32 KiB write of a stripe.
const stripeWriteTimeout = 10 * time.Second

// turnLimit is how long a stripe request may hold the origin's turn to
// send size bytes: four times their time at the upload cap (which the
// peer wire shares), plus turnSlack; with no cap, stripeWriteTimeout. The
// last bytes of a piece count as sent once the kernel has buffered them,
// so a reader is cut only when it drains its socket at under about a
// quarter of the cap for a whole piece: it loses its connection, the turn
// passes on, and the host falls back to its peers and the origin's peer
// wire. Without the limit, a reader draining just fast enough that no one
// write times out held every turn it took for as long as it liked, and the
// round robin made every other host wait that long once per piece.
func (s *metaServer) turnLimit(size int64) time.Duration {
	lim := s.up.Limit()
	if lim == rate.Inf || lim <= 0 {
		return stripeWriteTimeout
	}
	return turnSlack + time.Duration(4*float64(size)/float64(lim)*float64(time.Second))
}

// turnSlack is what a stripe turn allows beyond its time at the cap.
const turnSlack = 2 * time.Second

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
func (s *metaServer) serveMeta(w http.ResponseWriter, req *http.Request, open func() (sizedReader, error)) {
	ip := clientIP(req)
	start := s.clock.Now()
	s.mu.Lock()
	next, waiting := s.clients[ip]
	s.mu.Unlock()
	if waiting && start.Before(next) {
		http.Error(w, "busy: ask a peer", http.StatusServiceUnavailable)
		return
	}
	select {
	case s.slots <- struct{}{}:
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
			case <-s.clock.After(hold - s.clock.Since(start)):
			case <-s.done:
			}
		}
		<-s.slots
	}()
	b, err := open()
	if err != nil {
		s.notHeld(w, req, err)
		return
	}
	if c, ok := b.(io.Closer); ok {
		defer c.Close()
	}
	if lim := s.up.Limit(); lim != rate.Inf && lim > 0 {
		hold = time.Duration(float64(b.Size()) / float64(lim) * float64(time.Second))
		s.mu.Lock()
		for k, t := range s.clients {
			if !start.Before(t) {
				delete(s.clients, k) // bounded by the clients asking within one hold
			}
		}
		s.clients[ip] = start.Add(hold)
		s.mu.Unlock()
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
		if err := s.up.WaitN(req.Context(), k); err != nil {
			return
		}
		// A client that stops reading must not hold the slot.
		rc.SetWriteDeadline(s.clock.IODeadline(stripeWriteTimeout))
		if _, err := w.Write(buf[:k]); err != nil {
			return
		}
		s.metaSent(int64(k))
		if err != nil {
			complete = rc.Flush() == nil && (err == io.EOF || err == io.ErrUnexpectedEOF)
			return
		}
	}
}

// busy reports how many metadata slots are taken.
func (s *metaServer) busy() int { return len(s.slots) }

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
func (s *metaServer) notHeld(w http.ResponseWriter, req *http.Request, err error) {
	if _, ok := s.inbound.Load(req.URL.Path); ok {
		http.Error(w, "busy: receiving it; ask again", http.StatusServiceUnavailable)
		return
	}
	http.Error(w, err.Error(), http.StatusNotFound)
}

// receiving marks path as being received by this node until done is
// called: meanwhile the server answers busy for it, not "not found".
func (s *metaServer) receiving(path string) (done func()) {
	s.inbound.Store(path, true)
	return func() { s.inbound.Delete(path) }
}
