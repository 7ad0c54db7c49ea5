package swarm

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"scatter/swarm/clock"
	"sync"
	"testing"
	"time"
)

// clientFrom is an HTTP client whose connections come from ip, a loopback
// address of the test's: the data plane lets in by source address.
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
}

// dialFrom opens a TCP connection to addr from ip.
func dialFrom(ip, addr string) (net.Conn, error) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return d.Dial("tcp", addr)
}

// btHandshake is a BitTorrent handshake for info hash ih.
func btHandshake(ih InfoHash) []byte {
	b := append([]byte{19}, "BitTorrent protocol"...)
	b = append(b, make([]byte, 8)...)
	b = append(b, ih[:]...)
	return append(b, "-XX0000-000000000000"...)
}

// peerWireAnswers sends a handshake for ih to addr from ip and returns the
// bytes that come back before the connection closes or 3 s pass.
func peerWireAnswers(t *testing.T, ip, addr string, ih InfoHash) []byte {
	t.Helper()
	c, err := dialFrom(ip, addr)
	if err != nil {
		return nil // refused: nothing
	}
	defer c.Close()
	c.Write(btHandshake(ih))
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	b, _ := io.ReadAll(io.LimitReader(c, 68))
	return b
}

// stagedCluster starts an origin and one host that has staged a release,
// and returns them with the release's paths on the metadata server.
func stagedCluster(t *testing.T, c *cluster, originIP, hostIP int) (origin, h *Node, paths []string, ann *Announcement) {
	t.Helper()
	origin = c.start("origin", originIP, true, 0)
	h = c.start("h1", hostIP, false, 0)
	sm, raw := c.publish(genTree(t, 1<<20, false), "1")
	c.waitStaged(sm, []string{"h1"}, 30*time.Second)
	a, err := OpenAnnouncement(raw, c.key.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	base := "/v1/repos/mw/releases/" + sm.ID.String()
	ih := a.Full
	paths = []string{"/v1/status", base + "/manifest", base + "/torrent/full", base + "/data/full?off=0&n=100",
		"/announce?info_hash=" + url.QueryEscape(string(ih[:])) + "&compact=1"}
	return origin, h, paths, a
}

// A stranger — an address that no PeerSource lists, as a pending host's
// is not — gets nothing from any node: every metadata-server request fails
// without a response (the connection is closed when accepted), and the
// peer wire closes without a handshake. The same requests from a listed
// host, and from an address in AllowClients, are answered: the test's
// clients work.
func TestStrangersGetNothing(t *testing.T) {
	c := newCluster(t)
	const stranger, enrolled, allowed = "127.0.0.172", "127.0.0.173", "127.0.0.174"
	c.extra = []Peer{{Name: "enrolled", HTTP: enrolled + ":9"}}
	c.allowClients = []netip.Prefix{netip.MustParsePrefix(allowed + "/32")}
	origin, h, paths, a := stagedCluster(t, c, 170, 171)
	for _, n := range []*Node{origin, h} {
		for _, p := range paths {
			resp, err := clientFrom(stranger).Get("http://" + n.HTTPAddr() + p)
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				t.Errorf("stranger got %s from %s: %s %q", p, n.cfg.Name, resp.Status, b)
			}
			for _, from := range []string{enrolled, allowed} {
				resp, err := clientFrom(from).Get("http://" + n.HTTPAddr() + p)
				if err != nil {
					t.Errorf("%s: %s from %s: %v", from, p, n.cfg.Name, err)
					continue
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK && !(n == origin || resp.StatusCode == http.StatusServiceUnavailable) {
					t.Errorf("%s: %s from %s: %s", from, p, n.cfg.Name, resp.Status)
				}
			}
		}
		if b := peerWireAnswers(t, stranger, n.BTAddr(), a.Full); len(b) > 0 {
			t.Errorf("stranger got %d bytes from %s's peer wire", len(b), n.cfg.Name)
		}
		if b := peerWireAnswers(t, enrolled, n.BTAddr(), a.Full); len(b) < 68 {
			t.Errorf("an enrolled host got %d bytes of handshake from %s's peer wire", len(b), n.cfg.Name)
		}
	}
	// The tracker tells an allowed client only hosts' addresses, and a
	// stranger not even that; status was refused above.
}

// metaAbuser is an enrolled host's metadata server that answers every
// request in one bad way.
func metaAbuser(t testing.TB, ip string, h http.HandlerFunc) string {
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// An enrolled host that abuses the metadata servers cannot keep honest
// hosts from their metadata. Against the origin it drops answers midway
// (TestDroppedAnswerFreesTheSlot) and holds 50 half-sent requests (all but a few
// closed when accepted, the rest after the read timeout); as a peer it
// answers 503 forever (the honest hosts go to the origin after
// metaOriginWait) or trickles a byte every 9 s (given up on after
// metaRateWindow, and not asked again). Every honest host stages the
// release.
func TestMetadataAbuseByEnrolledHost(t *testing.T) {
	if testing.Short() {
		t.Skip("real servers and windows of real seconds")
	}
	c := newCluster(t)
	const abuser, busybody, trickler = "127.0.0.181", "127.0.0.182", "127.0.0.183"
	busyAddr := metaAbuser(t, busybody, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "busy", http.StatusServiceUnavailable)
	})
	trickleAddr := metaAbuser(t, trickler, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000000")
		w.WriteHeader(http.StatusOK)
		rc := http.NewResponseController(w)
		for {
			if _, err := w.Write([]byte("x")); err != nil {
				return
			}
			rc.Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(9 * time.Second):
			}
		}
	})
	c.extra = []Peer{{Name: "abuser", HTTP: abuser + ":9"}, {Name: "busybody", HTTP: busyAddr}, {Name: "trickler", HTTP: trickleAddr}}
	origin := c.start("origin", 180, true, 1<<20)
	src := genTree(t, 4<<20, false)
	sm, ann := c.prepare(src, "1")
	if _, err := origin.Announce(ann); err != nil {
		t.Fatal(err)
	}
	c.waitStaged(sm, []string{"origin"}, 30*time.Second)
	manifest := "http://" + origin.HTTPAddr() + "/v1/repos/mw/releases/" + sm.ID.String() + "/manifest"

	// 50 half-sent requests: at most maxConnsPerClient stay open.
	var half []net.Conn
	for range 50 {
		conn, err := dialFrom(abuser, origin.HTTPAddr())
		if err != nil {
			continue // refused: past the cap
		}
		conn.Write([]byte("GET /v1/repos/mw/rel"))
		half = append(half, conn)
	}
	t.Cleanup(func() {
		for _, c := range half {
			c.Close()
		}
	})
	ip := netip.MustParseAddr(abuser)
	if !origin.cfg.Clock.Poll(context.Background(), 5*time.Millisecond, 5*time.Second, func() bool {
		return origin.srv.gate.openConns(ip) <= maxConnsPerClient
	}) {
		t.Fatalf("%d connections open from one client", origin.srv.gate.openConns(ip))
	}
	// The abuser keeps dropping answers (whenever it may) while honest
	// hosts fetch.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, manifest, nil)
			if resp, err := clientFrom(abuser).Do(req); err == nil {
				io.ReadFull(resp.Body, make([]byte, 100))
				resp.Body.Close()
			}
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })

	names := hostNames(3)
	for i, name := range names {
		c.start(name, 185+i, false, 0)
	}
	c.announce(ann)
	c.waitStaged(sm, names, 90*time.Second)
	cancel()
	wg.Wait()
	// The half-sent requests were closed by the server's read timeout.
	if !origin.cfg.Clock.Poll(context.Background(), 50*time.Millisecond, 2*serverReadTimeout, func() bool {
		return origin.srv.gate.openConns(ip) == 0
	}) {
		t.Fatalf("%d half-sent requests still open after %v", origin.srv.gate.openConns(ip), 2*serverReadTimeout)
	}
}

// A slow reader cannot hold the origin's stripe turns: it drains 4 KiB a
// second, fast enough that no single 32 KiB write times out, while another
// host fetches the same stripe. The origin closes the slow reader's
// connection once a turn outlasts turnLimit, and the other host gets every
// byte. (Without the limit the two alternate turns, the other waiting a
// slow turn per piece: minutes for this release.)
func TestSlowStripeReaderLosesTheTurn(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a turn limit of real seconds")
	}
	c := newCluster(t)
	const slow, other = "127.0.0.191", "127.0.0.192"
	c.extra = []Peer{{Name: "slow", HTTP: slow + ":9"}, {Name: "other", HTTP: other + ":9"}}
	origin := c.start("origin", 190, true, 4<<20)
	sm, _ := c.publish(genTree(t, 8<<20, false), "1")
	c.waitStaged(sm, []string{"origin"}, 30*time.Second)
	l, err := origin.reg.layout(origin.reg.get("mw"), sm.ID, "full")
	if err != nil {
		t.Fatal(err)
	}
	path := fmt.Sprintf("/v1/repos/mw/releases/%s/data/full?off=0&n=%d", sm.ID, l.Length)
	conn, err := dialFrom(slow, origin.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.(*net.TCPConn).SetReadBuffer(4 << 10)
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		buf := make([]byte, 4<<10)
		for {
			if _, err := io.ReadFull(conn, buf); err != nil {
				return
			}
			select {
			case <-stop:
				return
			case <-time.After(time.Second):
			}
		}
	}()
	slowIP := netip.MustParseAddr(slow)
	if !origin.cfg.Clock.Poll(context.Background(), 10*time.Millisecond, 10*time.Second, func() bool { return origin.srv.gate.openConns(slowIP) == 1 }) {
		t.Fatal("the slow reader's request did not arrive")
	}
	resp, err := clientFrom(other).Get("http://" + origin.HTTPAddr() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || int64(len(b)) != l.Length {
		t.Fatalf("the host beside a slow reader got %d of %d bytes: %v", len(b), l.Length, err)
	}
	// The reader is still draining what the kernel buffered, but the
	// origin has closed its side.
	if !origin.cfg.Clock.Poll(context.Background(), 10*time.Millisecond, stripeWriteTimeout, func() bool { return origin.srv.gate.openConns(slowIP) == 0 }) {
		t.Fatalf("the origin still serves the slow reader (pieces of %d bytes, turn limit %v)", l.PieceLen, origin.srv.turnLimit(l.PieceLen))
	}
}

// An enrolled host that asks for metadata and goes away before the answer
// is complete frees the slot at once — not when the answer would have
// ended at the upload cap — and may not take a slot there again until
// then. The origin runs on a fake clock that the test does not move, and
// its limiter is put 4 s in debt first, so neither the answer nor its hold
// can end: a slot free within a second was freed by the client leaving.
func TestDroppedAnswerFreesTheSlot(t *testing.T) {
	c := newCluster(t)
	c.clocks = map[string]clock.Clock{"origin": clock.NewFake(time.Now())}
	const abuser = "127.0.0.178"
	c.extra = []Peer{{Name: "abuser", HTTP: abuser + ":9"}}
	const upload = 64 << 10
	origin := c.start("origin", 177, true, upload)
	sm, _ := c.publish(genTree(t, 1<<20, false), "1")
	c.waitStaged(sm, []string{"origin"}, 30*time.Second)
	manifest := "http://" + origin.HTTPAddr() + "/v1/repos/mw/releases/" + sm.ID.String() + "/manifest"
	lim := origin.e.up
	for range 4 * upload / lim.Burst() {
		lim.ReserveN(time.Now(), lim.Burst())
	}
	resp, err := clientFrom(abuser).Get(manifest)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("abuser's first request: %s", resp.Status)
	}
	if origin.srv.busy() != 1 {
		t.Fatal("the slot is not taken while answering")
	}
	resp.Body.Close() // headers only: the answer is cut midway
	if !origin.cfg.Clock.Poll(context.Background(), 5*time.Millisecond, time.Second, func() bool { return origin.srv.busy() == 0 }) {
		t.Fatal("the slot is still taken a second after its client left")
	}
	resp, err = clientFrom(abuser).Get(manifest)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("dropper asking again at once: %s, want 503", resp.Status)
	}
}
