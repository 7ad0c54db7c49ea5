package swarm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"scatter/swarm/clock"
	"strings"
	"sync/atomic"
	"time"
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

// metaClient asks other nodes for metadata (fromPeers), as the comment
// above describes. It is safe for concurrent use: it keeps no state
// between calls.
type metaClient struct {
	http  *http.Client // from metaHTTP
	peers PeerSource
	dc    string // this host's datacenter: its hosts are asked first
	clock clock.Clock
	ctx   context.Context // the node's: asking ends when it closes
	// receiving marks a path as being received (metaServer.receiving);
	// nil: nobody is told.
	receiving func(path string) (done func())
}

// metaHTTP is the HTTP client a node asks others for metadata with. It
// dials from local, the address peers let in (allow.go), unless local is
// the zero Addr.
func metaHTTP(local netip.Addr) *http.Client {
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

// fromPeers GETs path from peers until one answers with bytes that use
// accepts: each round asks up to metaAskPeers other hosts in random order
// (those in this node's datacenter first), then the origin unless one of
// them was busy. While some node answered busy it waits and asks again,
// for up to metaPatience; when every node answered otherwise (nobody has
// it, or what they had was bad) it fails at once. use reads each answer as
// it arrives and bounds how much it reads: a manifest goes to disk, not
// into memory. While use runs, this node answers busy for path.
func (c *metaClient) fromPeers(path string, use func(io.Reader) error) error {
	receive := func(r io.Reader) error {
		if c.receiving != nil {
			defer c.receiving(path)()
		}
		return use(r)
	}
	start := c.clock.Now()
	deadline := start.Add(metaPatience)
	wait := 20 * time.Millisecond
	// Peers that failed otherwise than busy or not found — did not
	// answer, trickled, sent bad bytes — are not asked again by this
	// fetch.
	failed := map[string]bool{}
	for {
		peers := c.sources()
		if len(peers) == 0 {
			return errors.New("no peers to ask")
		}
		var errs []string
		busy := false
		for _, p := range peers {
			if failed[p.Name] {
				continue
			}
			if p.Origin && busy && c.clock.Since(start) < metaOriginWait {
				continue // a peer has it or soon will: leave the origin to others
			}
			err := c.get(p.HTTP, path, receive)
			if err == nil {
				return nil
			}
			busy = busy || errors.Is(err, errBusy)
			if !p.Origin && !errors.Is(err, errBusy) && !errors.Is(err, errNotFound) {
				failed[p.Name] = true
			}
			errs = append(errs, p.Name+": "+err.Error())
		}
		if !busy || c.clock.Now().After(deadline) {
			return fmt.Errorf("no peer could serve %s: %s", path, strings.Join(errs, "; "))
		}
		select {
		case <-c.ctx.Done():
			return c.ctx.Err()
		case <-c.clock.After(wait/2 + rand.N(wait)):
		}
		wait = min(2*wait, 250*time.Millisecond)
	}
}

// sources picks the nodes to ask for metadata in one round: up to
// metaAskPeers hosts, this datacenter's first, then every origin.
func (c *metaClient) sources() []Peer {
	var near, far, origins []Peer
	for _, p := range c.peers.Peers() {
		switch {
		case p.HTTP == "":
		case p.Origin:
			origins = append(origins, p)
		case p.DC == c.dc:
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

// get GETs http://addr/path and hands the body to use as it arrives.
// A node that sends less than metaMinRate over a metaRateWindow — silent,
// or trickling — is given up on; a slow but steady one is not, whatever
// the size. use bounds what it reads.
func (c *metaClient) get(addr, path string, use func(io.Reader) error) error {
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
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
	// The first window starts now, not when the watcher first runs: it
	// may run late, after ticks it then finds buffered or dropped.
	last := c.clock.Now()
	tk := c.clock.NewTicker(metaRateWindow)
	watch := make(chan struct{})
	defer func() { <-watch }()
	defer cancel()
	go func() {
		defer close(watch)
		defer tk.Stop()
		// Each check covers the clock time since the last one, not one
		// tick: a tick taken late (a busy machine) or a stale one
		// queued behind it must neither blame the next window for bytes
		// the late check already counted nor judge a window that has
		// not passed yet.
		for {
			select {
			case <-ctx.Done():
				return
			case <-tk.C():
				now := c.clock.Now()
				span := now.Sub(last)
				if span < metaRateWindow {
					continue
				}
				last = now
				if float64(body.take()) < metaMinRate*span.Seconds() {
					slow.Store(true)
					cancel()
					return
				}
			}
		}
	}()
	err = use(body)
	if err != nil && slow.Load() && c.ctx.Err() == nil {
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
