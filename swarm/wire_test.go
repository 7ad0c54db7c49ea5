package swarm

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	alog "github.com/anacrolix/log"
	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
	"golang.org/x/sys/unix"

	"scatter/artifact/datadir"
)

// btStream returns a plaintext handshake followed by messages with bodies
// of the given lengths, each body filled with its index.
func btStream(lens ...int) []byte {
	var b bytes.Buffer
	b.WriteString(btHandshakePrefix)
	b.Write(make([]byte, btHandshakeLen-len(btHandshakePrefix)))
	for i, n := range lens {
		binary.Write(&b, binary.BigEndian, uint32(n))
		b.Write(bytes.Repeat([]byte{byte(i)}, n))
	}
	return b.Bytes()
}

// The framing wireConn follows comes out right however the stream is cut,
// and the low-water mark it asks for never exceeds what the reader needs
// to finish the message it is in.
func TestWireTrackFraming(t *testing.T) {
	lens := []int{0, 9, 64 << 10, 5, 16<<10 + 13, 1, 0, 200 << 10, 4}
	s := btStream(lens...)
	// The body boundaries, as offsets in s.
	type span struct{ from, to int }
	var bodies []span
	off := btHandshakeLen
	for _, n := range lens {
		bodies = append(bodies, span{off + 4, off + 4 + n})
		off += 4 + n
	}
	r := rand.New(rand.NewPCG(1, 2))
	for trial := range 200 {
		c := &wireConn{max: 32 << 10, cur: 1}
		pos := 0
		for pos < len(s) {
			k := 1 + r.IntN(min(len(s)-pos, 1+r.IntN(70<<10)))
			c.track(s[pos : pos+k])
			pos += k
			if c.off {
				t.Fatalf("trial %d: plaintext stream taken for something else at %d", trial, pos)
			}
			// What is left of the body pos is in (0 between bodies).
			left := int64(0)
			for _, b := range bodies {
				if pos >= b.from && pos < b.to {
					left = int64(b.to - pos)
				}
			}
			if c.body != left {
				t.Fatalf("trial %d: at %d the tracker has %d bytes of body left, the stream %d", trial, pos, c.body, left)
			}
			// The mark for the next read: never more than the body left,
			// the buffer or the cap, and 1 unless the body is long.
			n := 1 + r.IntN(128<<10)
			lw := c.lowat(n)
			switch {
			case lw < 1 || lw > n || lw > c.max:
				t.Fatalf("trial %d: at %d low-water mark %d for a %d-byte read", trial, pos, lw, n)
			case left < lowatMin && lw != 1:
				t.Fatalf("trial %d: at %d low-water mark %d with %d bytes of body left", trial, pos, lw, left)
			case left >= lowatMin && int64(lw) != min(left, int64(n), int64(c.max)):
				t.Fatalf("trial %d: at %d low-water mark %d with %d bytes of body left, a %d-byte read", trial, pos, lw, left, n)
			}
		}
		if c.hdr != 0 || c.body != 0 || c.hs != btHandshakeLen {
			t.Fatalf("trial %d: at the end hdr %d body %d hs %d", trial, c.hdr, c.body, c.hs)
		}
	}
}

// A stream that does not start with the plaintext handshake (MSE, or
// anything else) turns tracking off for good: it is read as it comes.
func TestWireTrackNotBitTorrent(t *testing.T) {
	for _, prefix := range [][]byte{
		{0x13, 'B', 'i', 't', 'T', 'o', 'r', 'r', 'e', 'n', 't', ' ', 'p', 'r', 'o', 't', 'o', 'c', 'o', 'X'},
		bytes.Repeat([]byte{0xaa}, 96), // an MSE public key
		{0x12},
	} {
		c := &wireConn{max: 32 << 10, cur: 1}
		c.track(prefix)
		c.track(btStream(64 << 10))
		if !c.off || c.body != 0 {
			t.Fatalf("%q...: off %v body %d", prefix[:min(4, len(prefix))], c.off, c.body)
		}
	}
}

// acceptPair connects dial to a wireListener on loopback and returns the
// accepted end and the dialed one; both are closed when the test ends.
func acceptPair(t *testing.T, dial func(addr string) (net.Conn, error)) (accepted, dialed net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan net.Conn, 1)
	go func() {
		c, _ := wireListener{ln}.Accept()
		got <- c
	}()
	dialed, err = dial(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	accepted = <-got
	if accepted == nil {
		dialed.Close()
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { accepted.Close(); dialed.Close() })
	return accepted, dialed
}

// tcpPair returns the two ends of a loopback TCP connection, the reading
// end wrapped.
func tcpPair(t *testing.T) (r *wireConn, w net.Conn) {
	t.Helper()
	c, w := acceptPair(t, func(addr string) (net.Conn, error) { return net.Dial("tcp4", addr) })
	wc, ok := c.(*wireConn)
	if !ok {
		// newWireConn leaves a connection whose receive buffer is too
		// small for the option unwrapped.
		t.Skipf("accepted %T, not a wireConn: receive buffer under %d bytes", c, 4*lowatMin)
	}
	return wc, w
}

// readCounter counts the reads that returned bytes.
type readCounter struct {
	r     io.Reader
	reads int
}

func (c *readCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.reads++
	}
	return n, err
}

// A 64 KiB message trickling in as 64 segments is read in a few reads, not
// one per segment; a short message behind it, and one the sender sends
// alone and waits on, are read without waiting for more (the reader would
// hang on a mark set too high: the read deadline fails the test).
func TestWireConnWakesPerBlock(t *testing.T) {
	r, w := tcpPair(t)
	if err := w.(*net.TCPConn).SetNoDelay(true); err != nil {
		t.Fatal(err)
	}
	big := btStream(64 << 10)
	echo := make(chan error, 1)
	go func() {
		// The handshake and the length prefix, then the body in 1 KiB
		// segments, then a HAVE, which the reader must answer before
		// anything more is sent.
		if _, err := w.Write(big[:btHandshakeLen+4]); err != nil {
			echo <- err
			return
		}
		for b := big[btHandshakeLen+4:]; len(b) > 0; b = b[1024:] {
			if _, err := w.Write(b[:1024]); err != nil {
				echo <- err
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
		have := []byte{0, 0, 0, 5, 4, 0, 0, 0, 7}
		if _, err := w.Write(have); err != nil {
			echo <- err
			return
		}
		var ack [1]byte
		if _, err := io.ReadFull(w, ack[:]); err != nil {
			echo <- err
			return
		}
		_, err := w.Write([]byte{0, 0, 0, 1, 2}) // interested, alone
		echo <- err
	}()
	r.SetReadDeadline(time.Now().Add(30 * time.Second))
	cr := &readCounter{r: r}
	br := bufio.NewReaderSize(cr, 1<<17)
	got := make([]byte, len(big)+9)
	if _, err := io.ReadFull(br, got); err != nil {
		t.Fatalf("reading the block and the HAVE: %v", err)
	}
	if !bytes.Equal(got[:len(big)], big) || !bytes.Equal(got[len(big):], []byte{0, 0, 0, 5, 4, 0, 0, 0, 7}) {
		t.Fatal("bytes differ")
	}
	if cr.reads > 8 {
		t.Errorf("%d reads for a 64 KiB block sent in 64 segments, want a few", cr.reads)
	}
	if _, err := r.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	last := make([]byte, 5)
	if _, err := io.ReadFull(br, last); err != nil {
		t.Fatalf("reading a lone short message: %v", err)
	}
	if err := <-echo; err != nil {
		t.Fatal(err)
	}
	if r.cur != 1 || r.off {
		t.Fatalf("after the messages: low-water mark %d, off %v; want 1, on", r.cur, r.off)
	}
}

// A stream that is not plaintext BitTorrent is read as it comes: after an
// MSE key, a length prefix announcing a long body is not followed, and the
// few bytes behind it reach a reader with a large buffer at once.
func TestWireConnPassesOtherStreams(t *testing.T) {
	r, w := tcpPair(t)
	mse := bytes.Repeat([]byte{0xaa}, 96)
	if _, err := w.Write(mse); err != nil {
		t.Fatal(err)
	}
	r.SetReadDeadline(time.Now().Add(30 * time.Second))
	got := make([]byte, 96)
	if _, err := io.ReadFull(r, got); err != nil {
		t.Fatal(err)
	}
	if !r.off {
		t.Fatal("an MSE key taken for BitTorrent")
	}
	// A length prefix announcing a big body, then a few bytes: read as
	// they come.
	if _, err := w.Write([]byte{0, 1, 0, 0, 7, 1, 2}); err != nil {
		t.Fatal(err)
	}
	r.SetReadDeadline(time.Now().Add(5 * time.Second))
	big := make([]byte, 128<<10)
	n := 0
	for n < 7 {
		k, err := r.Read(big[n:])
		if err != nil {
			t.Fatalf("after %d of 7 bytes: %v (held back?)", n, err)
		}
		n += k
	}
	if r.cur != 1 {
		t.Fatalf("low-water mark %d on a stream that is not followed", r.cur)
	}
}

// Both ends of a peer-wire connection, dialed and accepted, have Nagle's
// algorithm on (Go turns it off on every TCP socket), no linger, and follow
// framing.
func TestWireConnsUseNagle(t *testing.T) {
	a, d := acceptPair(t, func(addr string) (net.Conn, error) {
		return newWireDialer(net.ParseIP("127.0.0.1")).Dial(context.Background(), addr)
	})
	for name, c := range map[string]net.Conn{"dialed": d, "accepted": a} {
		wc, ok := c.(*wireConn)
		if !ok {
			t.Fatalf("%s: %T, not a wireConn", name, c)
		}
		nodelay := -1
		var linger *unix.Linger
		var gerr, lerr error
		if err := wc.rc.Control(func(fd uintptr) {
			nodelay, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NODELAY)
			linger, lerr = unix.GetsockoptLinger(int(fd), unix.SOL_SOCKET, unix.SO_LINGER)
		}); err != nil || gerr != nil || lerr != nil {
			t.Fatal(err, gerr, lerr)
		}
		if nodelay != 0 {
			t.Errorf("%s: TCP_NODELAY %d, want 0 (Nagle on)", name, nodelay)
		}
		if linger.Onoff != 1 || linger.Linger != 0 {
			t.Errorf("%s: SO_LINGER %+v, want on with 0 s (a closed connection is reset)", name, *linger)
		}
	}
}

// A stock BitTorrent client that insists on an obfuscated (MSE) handshake
// still downloads from a scatter engine, which handshakes in plaintext
// itself: wireConn passes the obfuscated stream through untouched. The
// stock client checks every piece's SHA-1 against the info. Then a host
// downloads the release from that stock client alone.
func TestStockClientWithObfuscationDownloads(t *testing.T) {
	origin := openStore(t)
	r1, _ := buildReleases(t, origin, 2<<20)
	tor, err := MakeTorrent(origin, r1.sm, nil, Full)
	if err != nil {
		t.Fatal(err)
	}
	oe := newEngine(t, "127.0.0.31")
	if _, err := oe.Add(origin, tor.Layout, tor.Info, datadir.Repo(t.TempDir())); err != nil {
		t.Fatal(err)
	}

	c := closedClientConfig() // otherwise anacrolix's defaults: its own TCP sockets, file storage
	c.DataDir = t.TempDir()
	c.ListenHost = func(string) string { return "127.0.0.32" }
	c.ListenPort = 0
	c.Seed = true // serves the host below once complete
	c.HeaderObfuscationPolicy = torrent.HeaderObfuscationPolicy{Preferred: true, RequirePreferred: true}
	c.Logger = alog.Default.FilterLevel(alog.Critical)
	stock, err := torrent.NewClient(c)
	if err != nil {
		t.Fatal(err)
	}
	defer stock.Close()
	var info metainfo.Info
	if err := bencode.Unmarshal(tor.Info, &info); err != nil {
		t.Fatal(err)
	}
	st, isNew := stock.AddTorrentOpt(torrent.AddTorrentOpts{InfoHash: metainfo.Hash(tor.InfoHash()), InfoBytes: tor.Info})
	if !isNew {
		t.Fatal("the stock client already had the torrent")
	}
	oa, err := net.ResolveTCPAddr("tcp4", oe.Addr())
	if err != nil {
		t.Fatal(err)
	}
	st.AddPeers([]torrent.PeerInfo{{Addr: oa}})
	st.DownloadAll()

	deadline := time.Now().Add(60 * time.Second)
	for st.BytesCompleted() != info.TotalLength() {
		if time.Now().After(deadline) {
			t.Fatalf("stock client has %d of %d bytes after 60 s", st.BytesCompleted(), info.TotalLength())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// RequirePreferred: the stock client drops any connection whose
	// header was not encrypted, so the bytes came over MSE.

	// The other way: a host fetches the release from the stock client
	// alone, which refuses its plaintext handshake; the host dials again
	// with MSE and passes that stream through.
	host := openStore(t)
	if err := host.PutManifest(r1.sm); err != nil {
		t.Fatal(err)
	}
	he := newEngine(t, "127.0.0.35")
	var stockAddr string
	for _, a := range stock.ListenAddrs() {
		if ta, ok := a.(*net.TCPAddr); ok {
			stockAddr = ta.String()
		}
	}
	if stockAddr == "" {
		t.Fatalf("stock client listens on %v: no TCP address", stock.ListenAddrs())
	}
	oe.Close() // the stock client is the only source
	fetch(t, he, host, tor, stockAddr)
	checkMaterialized(t, host, r1)
}

// A scatter engine dials its peers with a plaintext BitTorrent handshake,
// the framing wireConn follows.
func TestEngineDialsInPlaintext(t *testing.T) {
	origin := openStore(t)
	r1, _ := buildReleases(t, origin, 1<<20)
	tor, err := MakeTorrent(origin, r1.sm, nil, Full)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.34:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	host := openStore(t)
	if err := host.PutManifest(r1.sm); err != nil {
		t.Fatal(err)
	}
	he := newEngine(t, "127.0.0.33")
	x, err := he.Add(host, tor.Layout, tor.Info, datadir.Repo(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	x.AddPeers([]string{ln.Addr().String()})
	x.Download()
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(30 * time.Second))
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	got := make([]byte, len(btHandshakePrefix))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if string(got) != btHandshakePrefix {
		t.Fatalf("engine's first bytes %q, want the plaintext handshake %q", got, btHandshakePrefix)
	}
}
