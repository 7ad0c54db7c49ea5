package swarm

import (
	"context"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// The peer wire's connections are this package's (wireListener,
// wireDialer), so that hosts exchange fewer, fuller segments and a
// receiving host wakes about once per block rather than once per packet.
//
// Most of what a host sends a peer is small messages: a HAVE to every
// peer for every piece it completes (1,024 pieces, 31 peers at 32 hosts),
// requests, cancels. Go turns Nagle's algorithm off on every TCP socket,
// so each of them leaves as its own segment and wakes the peer's reader
// (a read, a netpoll wake-up, a reschedule) for 9 bytes. With Nagle on,
// the kernel holds a small message while earlier data is unacknowledged
// and sends what gathered in one segment: measured on one daemon of a
// 4-host run, its reads fell from 14,083 to 7,817 (SO_RCVLOWAT below
// alone: 10,441). What it costs is latency for a small message on an
// idle connection (up to the peer's delayed ACK); requests are pipelined
// hundreds deep, so none waits on it.
//
// A block arrives as tens of TCP segments, and anacrolix's reader asks
// for more after each, for a message it cannot use until it has all of
// it. wireConn follows the stream's BitTorrent framing (a 68-byte
// handshake, then messages behind a 4-byte length) and, while a message
// body is outstanding, sets the socket's SO_RCVLOWAT to what is left of
// it (capped): the kernel then wakes the reader only once that much has
// arrived, or when the connection closes or its receive window fills.
// Anything the reader could use sooner — a length prefix, a short
// message, the handshake — is read as it comes. A reader now waits for up
// to a quarter of its receive buffer in one read: a peer sending slower
// than about 220 bytes a second trips anacrolix's 150 s read deadline,
// which partial reads used to renew.
//
// It only follows plaintext BitTorrent: scatter hosts dial without
// header obfuscation (NewEngine), which hides the framing. A connection
// that does not start with the plaintext handshake (a stock client
// offering MSE) is read as it comes, as before.

const (
	btHandshakePrefix = "\x13BitTorrent protocol"
	btHandshakeLen    = 68 // prefix, 8 reserved bytes, info hash, peer ID

	// lowatMin is the shortest outstanding body worth a socket option:
	// below it the message is read as it comes.
	lowatMin = 8 << 10
)

// wireConn is a peer-wire TCP connection that tracks the framing of what
// it reads. Read is not safe for concurrent use (anacrolix reads a
// connection from one goroutine); Write and the rest pass through.
type wireConn struct {
	net.Conn
	rc   syscall.RawConn
	max  int  // the highest SO_RCVLOWAT used: a quarter of the receive buffer
	cur  int  // SO_RCVLOWAT as set; 1 is the kernel's default
	off  bool // not plaintext BitTorrent, or the option failed: reads as they come
	hs   int  // handshake bytes seen, up to btHandshakeLen
	hdr  int  // bytes of the current length prefix seen, 0 to 3
	plen uint32
	body int64 // bytes of the current message body not read yet

	setLowat func(fd uintptr, v int) error // unix.SetsockoptInt; a variable for tests
}

func setSockLowat(fd uintptr, v int) error {
	return unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVLOWAT, v)
}

// newWireConn sets a TCP connection up as anacrolix's own sockets would
// (no linger: a closed peer connection is reset, not drained), with
// Nagle's algorithm on, and wraps it. A
// connection that is not TCP, or whose receive buffer is too small for the
// option to pay, is returned as it is.
func newWireConn(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	tc.SetLinger(0)
	tc.SetNoDelay(false)
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	// The kernel grows the receive buffer, and clamps the advertised
	// window to the low-water mark, when the mark needs more space than
	// the buffer holds (tcp_set_rcvlowat, which scales the mark by the
	// connection's measured payload-to-memory ratio, ½ by default): a
	// quarter of the buffer stays under it unless that ratio falls below
	// ¼, and receive autotuning lifts such a clamp as the buffer grows.
	rcvbuf := 0
	if cerr := rc.Control(func(fd uintptr) {
		rcvbuf, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
	}); cerr != nil || err != nil || rcvbuf/4 < lowatMin {
		return c
	}
	return &wireConn{Conn: c, rc: rc, max: rcvbuf / 4, cur: 1, setLowat: setSockLowat}
}

// lowat is the low-water mark for a read into a buffer of n bytes: what
// is left of the message body being read, up to n and the cap, or 1 (the
// kernel's default) outside a body of at least lowatMin.
func (c *wireConn) lowat(n int) int {
	if c.off || c.hs < btHandshakeLen || c.hdr > 0 || c.body < lowatMin {
		return 1
	}
	return max(1, int(min(c.body, int64(n), int64(c.max))))
}

func (c *wireConn) Read(p []byte) (int, error) {
	if want := c.lowat(len(p)); want != c.cur {
		c.set(want)
	}
	n, err := c.Conn.Read(p)
	if n > 0 && !c.off {
		c.track(p[:n])
	}
	return n, err
}

// set sets SO_RCVLOWAT; on failure the connection is read as it comes.
func (c *wireConn) set(v int) {
	var err error
	cerr := c.rc.Control(func(fd uintptr) { err = c.setLowat(fd, v) })
	if cerr == nil && err == nil {
		c.cur = v
		return
	}
	c.off = true
	if v != 1 {
		_ = c.rc.Control(func(fd uintptr) {
			if c.setLowat(fd, 1) == nil {
				c.cur = 1
			}
		})
	}
}

// track advances the framing over bytes just read.
func (c *wireConn) track(b []byte) {
	for len(b) > 0 && !c.off {
		switch {
		case c.hs < btHandshakeLen:
			k := min(len(b), btHandshakeLen-c.hs)
			for i := range k {
				if j := c.hs + i; j < len(btHandshakePrefix) && b[i] != btHandshakePrefix[j] {
					c.off = true
					return
				}
			}
			c.hs += k
			b = b[k:]
		case c.body > 0:
			k := min(int64(len(b)), c.body)
			c.body -= k
			b = b[k:]
		default:
			c.plen = c.plen<<8 | uint32(b[0])
			b = b[1:]
			if c.hdr++; c.hdr == 4 {
				c.body, c.hdr, c.plen = int64(c.plen), 0, 0
			}
		}
	}
}

// wireListener accepts peer-wire connections as wireConns.
type wireListener struct{ net.Listener }

func (l wireListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newWireConn(c), nil
}

// wireDialer dials peers (from laddr when it is set) as wireConns.
type wireDialer struct{ d *net.Dialer }

func newWireDialer(laddr net.IP) wireDialer {
	d := &net.Dialer{KeepAlive: -1} // BitTorrent connections manage their own keep-alives
	if laddr != nil {
		d.LocalAddr = &net.TCPAddr{IP: laddr}
	}
	return wireDialer{d}
}

func (w wireDialer) DialerNetwork() string { return "tcp" }

func (w wireDialer) Dial(ctx context.Context, addr string) (net.Conn, error) {
	c, err := w.d.DialContext(ctx, "tcp4", addr)
	if err != nil {
		return nil, err
	}
	return newWireConn(c), nil
}
