package swarm

import (
	"bytes"
	"context"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"

	"github.com/anacrolix/torrent/bencode"
	"golang.org/x/time/rate"

	"scatter/artifact/core"
)

// handler serves release metadata to peers and stock clients:
//
//	GET /v1/repos/{repo}/releases/{id}/manifest        signed manifest envelope
//	GET /v1/repos/{repo}/releases/{id}/torrent/{kind}  info bytes (kind: full, delta)
//	GET /v1/repos/{repo}/releases/{id}/data/{kind}?off=&n=  torrent bytes (origin stripes)
//	GET /v1/status                                     this node's Status, as JSON
//	GET /announce                                      a BitTorrent tracker (BEP 3, BEP 23) answering from membership
//
// Everything served is verifiable — manifests carry the deploy key's
// signature, info bytes hash to the signed info hash — but not public: only
// hosts and allowed clients get a connection at all (allow.go).
func (n *Node) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/repos/{repo}/releases/{id}/manifest", func(w http.ResponseWriter, req *http.Request) {
		r, id, ok := n.lookup(w, req)
		if !ok {
			return
		}
		// Streamed from the file: a large release's envelope is megabytes,
		// sent for a minute at the upload cap.
		n.serveMeta(w, req, func() (sizedReader, error) {
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
		r, id, ok := n.lookup(w, req)
		if !ok {
			return
		}
		n.serveMeta(w, req, func() (sizedReader, error) {
			info, err := n.infoBytes(r, id, req.PathValue("kind"))
			if err != nil {
				return nil, err
			}
			return bytes.NewReader(info), nil
		})
	})
	mux.HandleFunc("GET /v1/repos/{repo}/releases/{id}/data/{kind}", n.serveData)
	mux.HandleFunc("GET /announce", n.announce)
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(n.Status())
	})
	return mux
}

// closingSection is a manifest file's section that closes the file.
type closingSection struct {
	*io.SectionReader
	f *os.File
}

func (c closingSection) Close() error { return c.f.Close() }

func (n *Node) lookup(w http.ResponseWriter, req *http.Request) (*repo, core.ReleaseID, bool) {
	id, err := core.ParseReleaseID(req.PathValue("id"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return nil, id, false
	}
	n.mu.Lock()
	r := n.repos[req.PathValue("repo")]
	n.mu.Unlock()
	if r == nil {
		http.Error(w, "no such repo", http.StatusNotFound)
		return nil, id, false
	}
	return r, id, true
}

func (n *Node) infoBytes(r *repo, id core.ReleaseID, kind string) ([]byte, error) {
	if kind != Full.String() && kind != Delta.String() {
		return nil, fmt.Errorf("unknown torrent kind %q", kind)
	}
	return os.ReadFile(r.dir.Torrent(id, kind))
}

// readAtMost reads r to its end, refusing more than limit bytes. The
// bytes are returned in an array of their size: what they are read into
// grows by doubling, and a torrent keeps its info bytes while it is served.
func readAtMost(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err == nil && int64(len(b)) > limit {
		err = fmt.Errorf("response exceeds %d bytes", limit)
	}
	if err != nil {
		return nil, err
	}
	return bytes.Clone(b), nil
}

// getMeta GETs http://addr/path and hands the body to use as it arrives.
// A node that sends less than metaMinRate over a metaRateWindow — silent,
// or trickling — is given up on; a slow but steady one is not, whatever
// the size. use bounds what it reads.
func (n *Node) getMeta(addr, path string, use func(io.Reader) error) error {
	ctx, cancel := context.WithCancel(n.ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return err
	}
	resp, err := n.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		err := fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(msg))
		switch resp.StatusCode {
		case http.StatusServiceUnavailable:
			err = fmt.Errorf("%w: %w", errBusy, err)
		case http.StatusNotFound:
			err = fmt.Errorf("%w: %w", errNotFound, err)
		}
		return err
	}
	body := &countingReader{r: resp.Body}
	var slow atomic.Bool
	tk := n.cfg.Clock.NewTicker(metaRateWindow)
	watch := make(chan struct{})
	defer func() { <-watch }()
	defer cancel()
	go func() {
		defer close(watch)
		defer tk.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tk.C():
				if body.take() < metaMinRate*int64(metaRateWindow/time.Second) {
					slow.Store(true)
					cancel()
					return
				}
			}
		}
	}()
	err = use(body)
	if err != nil && slow.Load() && n.ctx.Err() == nil {
		err = fmt.Errorf("under %d bytes/s for %v: %w", metaMinRate, metaRateWindow, err)
	}
	return err
}

// countingReader counts the bytes read since take last asked.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (r *countingReader) Read(p []byte) (int, error) {
	k, err := r.r.Read(p)
	r.n.Add(int64(k))
	return k, err
}

func (r *countingReader) take() int64 { return r.n.Swap(0) }

// writeFileAtomic writes a small file through a temp file and a rename.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// announce is a minimal HTTP tracker, so that a stock BitTorrent client
// given a release's .torrent finds scatter hosts. It answers, for any
// torrent of a release this node knows, with every live host's peer-wire
// address (its own included); it records nothing about the asker.
func (n *Node) announce(w http.ResponseWriter, req *http.Request) {
	fail := func(reason string) {
		b, _ := bencode.Marshal(map[string]any{"failure reason": reason})
		w.Write(b)
	}
	ih := req.URL.Query().Get("info_hash")
	if len(ih) != 20 {
		fail("info_hash must be 20 bytes")
		return
	}
	if !n.knowsInfoHash(ih) {
		fail("unknown torrent")
		return
	}
	addrs := append(n.peerAddrs(), n.BTAddr())
	compact := req.URL.Query().Get("compact") != "0"
	var peers any
	if compact {
		var b []byte
		for _, a := range addrs {
			ap, err := netip.ParseAddrPort(a)
			if err != nil || !ap.Addr().Is4() {
				continue
			}
			ip := ap.Addr().As4()
			b = append(append(b, ip[:]...), byte(ap.Port()>>8), byte(ap.Port()))
		}
		peers = b
	} else {
		var list []map[string]any
		for _, a := range addrs {
			if ap, err := netip.ParseAddrPort(a); err == nil {
				list = append(list, map[string]any{"ip": ap.Addr().String(), "port": ap.Port()})
			}
		}
		peers = list
	}
	b, err := bencode.Marshal(map[string]any{"interval": 30, "peers": peers})
	if err != nil {
		fail(err.Error())
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Write(b)
}

// knowsInfoHash reports whether ih is the full or delta torrent of a
// release this node knows.
func (n *Node) knowsInfoHash(ih string) bool {
	var h InfoHash
	copy(h[:], ih)
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, r := range n.repos {
		for _, rel := range r.rels {
			if rel.ann.Full == h || (rel.ann.Delta == h && !h.IsZero()) {
				return true
			}
		}
	}
	return false
}

// serveData sends a byte range of a torrent's data — a host's stripe — at
// the host's upload rate, shared with the peer wire. Any node can serve it;
// hosts ask the origin, so that each piece leaves the origin once.
func (n *Node) serveData(w http.ResponseWriter, req *http.Request) {
	r, id, ok := n.lookup(w, req)
	if !ok {
		return
	}
	l, err := n.layoutFor(r, id, req.PathValue("kind"))
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
			n.stripeTurns.give()
		}
	}()
	for size > 0 {
		if off >= pieceEnd {
			// A piece at a time, round robin among the requests (turns.go).
			if pieceEnd >= 0 {
				n.stripeTurns.give()
				pieceEnd = -1
			}
			if err := n.stripeTurns.take(req.Context()); err != nil {
				return
			}
			pieceEnd = (off/l.PieceLen + 1) * l.PieceLen
			turnEnd = n.cfg.Clock.IODeadline(n.turnLimit(pieceEnd - off))
		}
		k := min(size, slice, pieceEnd-off)
		b := buf[:k]
		for c, err := range l.overlapping(off, k) {
			if err != nil {
				n.cfg.Log.Warn("serve data", "release", id, "err", err)
				return
			}
			from, to := max(off, c.Off), min(off+k, c.Off+c.CSize)
			if err := r.st.ReadFrameAt(c.ID, c.CSize, b[from-off:to-off], from-c.Off); err != nil {
				n.cfg.Log.Warn("serve data", "release", id, "err", err)
				return // the short body tells the client
			}
		}
		if err := n.e.up.WaitN(req.Context(), int(k)); err != nil {
			return
		}
		// Bounded: a host that stops reading (frozen, partitioned), or
		// reads slowly, must not hold the turn, and with it every other
		// host's stripe: each write within stripeWriteTimeout, the whole
		// piece within its turn.
		dl := n.cfg.Clock.IODeadline(stripeWriteTimeout)
		if turnEnd.Before(dl) {
			dl = turnEnd
		}
		rc.SetWriteDeadline(dl)
		if _, err := w.Write(b); err != nil {
			return
		}
		n.e.addSent(k)
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
func (n *Node) turnLimit(size int64) time.Duration {
	lim := n.e.up.Limit()
	if lim == rate.Inf || lim <= 0 {
		return stripeWriteTimeout
	}
	return turnSlack + time.Duration(4*float64(size)/float64(lim)*float64(time.Second))
}

// turnSlack is what a stripe turn allows beyond its time at the cap.
const turnSlack = 2 * time.Second

// layoutFor returns a release's layout of the given kind, parsed once.
func (n *Node) layoutFor(r *repo, id core.ReleaseID, kind string) (*Layout, error) {
	key := id.String() + "." + kind
	n.mu.Lock()
	l := n.layouts[key]
	if l == nil {
		l = servedLayoutLocked(r, id, kind)
	}
	n.mu.Unlock()
	if l != nil {
		return l, nil
	}
	info, err := n.infoBytes(r, id, kind)
	if err != nil {
		return nil, err
	}
	t, err := r.st.Table(id, n.cfg.PubKey)
	if err != nil {
		return nil, err
	}
	if l, err = ParseInfo(info, t); err != nil {
		return nil, err
	}
	n.mu.Lock()
	n.layouts[key] = l
	n.mu.Unlock()
	return l, nil
}

// servedLayoutLocked returns the layout of a torrent the node fetches or
// seeds, if any: it shares the fetch's chunk table instead of decoding
// another copy.
func servedLayoutLocked(r *repo, id core.ReleaseID, kind string) *Layout {
	rel := r.rels[id]
	if rel == nil {
		return nil
	}
	for _, x := range append([]*Transfer{rel.x}, rel.seeds...) {
		if x != nil && x.Layout.Kind.String() == kind {
			return x.Layout
		}
	}
	return nil
}
