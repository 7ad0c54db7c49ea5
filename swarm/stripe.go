package swarm

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sort"
	"sync"
)

// stripe returns this host's slot among the hosts that lack the release and
// fetch the same torrent: its place in the sorted names of those hosts and
// itself.
//
// With datacenter labels only hosts in the origin's datacenter take
// stripes (see topology.go); elsewhere slots is 0. Once a host holds the
// whole release, slots is 0 too: the release is in the swarm, and a host
// that starts late (its metadata came later than its peers') would
// otherwise take a stripe the others already fetched, in slots they
// counted differently, and receive those pieces twice.
//
// One host's word is not enough to skip the stripes: a host that claims
// to hold every release (a liar, or a bug) would otherwise send every
// other host to a swarm that has nothing, and to the origin only after
// StallAfter. It takes two holders (one if that host is the only peer).
func (v peerView) stripe(a *Announcement, kind Kind) (slot, slots int) {
	peers := v.src.Peers()
	holders, others := 0, 0
	for _, p := range peers {
		if p.Origin {
			continue
		}
		others++
		if slices.Contains(p.Holds, a.Release) {
			holders++
		}
	}
	if holders > 0 && holders >= min(2, others) {
		return 0, 0
	}
	dc := v.stripeDC(peers)
	if dc != "" && v.dc != dc {
		return 0, 0
	}
	names := []string{v.self}
	for _, p := range peers {
		if dc != "" && p.DC != dc {
			continue
		}
		// Hosts holding the parent fetch the delta, the others the full
		// torrent: only hosts fetching the same torrent share its stripes.
		sameKind := (!a.Parent.IsZero() && slices.Contains(p.Holds, a.Parent)) == (kind == Delta)
		if !p.Origin && !slices.Contains(p.Holds, a.Release) && sameKind {
			names = append(names, p.Name)
		}
	}
	sort.Strings(names)
	return slices.Index(names, v.self), len(names)
}

// fetchStripe fetches this host's share of the torrent from the origin's
// metadata server and hands it to the engine piece by piece. Hosts take
// disjoint stripes, so every piece leaves the origin once; the hosts trade
// the rest over the peer wire, starting as soon as each piece lands. (With
// the origin as an ordinary peer, hosts all ask it for the rarest pieces
// and it sends many twice: 32 hosts took 1.56 S/U, see the README.)
func (fr *fetcher) fetchStripe(ctx context.Context, x *Transfer, a *Announcement, kind Kind, origin Peer, slot, slots int) error {
	first, end := slot*x.Pieces()/slots, (slot+1)*x.Pieces()/slots
	for first < end && x.HasPiece(first) {
		first++
	}
	if first >= end {
		return nil
	}
	off, size := x.PieceRange(first, end)
	url := fmt.Sprintf("http://%s/v1/repos/%s/releases/%s/data/%s?off=%d&n=%d", origin.HTTP, a.Repo, a.Release, kind, off, size)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	// No overall timeout: a stripe takes S/U. It dials from this host's
	// address, which the origin lets in (allow.go).
	resp, err := fr.stripeClient().Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("origin: %s", resp.Status)
	}
	ip, _ := netip.ParseAddrPort(origin.HTTP)
	// Verifying a piece is a round trip through anacrolix's hasher; keep a
	// few in flight so the stream from the origin never waits on it.
	const inFlight = 8
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	bufs := make(chan []byte, inFlight)
	for range inFlight {
		bufs <- make([]byte, x.Layout.PieceLen)
	}
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
	}
	failed := func() error {
		mu.Lock()
		defer mu.Unlock()
		return firstErr
	}
	defer wg.Wait()
	for i := first; i < end && failed() == nil; i++ {
		_, k := x.PieceRange(i, i+1)
		var buf []byte
		select {
		case buf = <-bufs:
		case <-ctx.Done():
			return ctx.Err()
		}
		b := buf[:k]
		if _, err := io.ReadFull(resp.Body, b); err != nil {
			bufs <- buf
			return fmt.Errorf("stripe piece %d: %w", i, err)
		}
		fr.e.addReceived(ip.Addr(), k)
		if x.HasPiece(i) {
			bufs <- buf
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := x.PutPiece(ctx, i, b); err != nil {
				fail(err)
			}
			bufs <- buf
		}()
	}
	wg.Wait()
	return failed()
}

// stripeClient is the HTTP client stripes are fetched with.
func (fr *fetcher) stripeClient() *http.Client {
	d := &net.Dialer{Timeout: metaDialTimeout}
	if fr.self.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: fr.self.AsSlice()}
	}
	// No header timeout: the answer starts when the origin gives this
	// request its turn, behind every other host's.
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
}
