package netns

import (
	"context"
	"errors"
	"io"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func newNet(t *testing.T, cfg Config) *Net {
	t.Helper()
	n, err := New(context.Background(), cfg)
	if errors.Is(err, ErrUnavailable) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// Two hosts: one's uplink is shaped, so bytes it sends arrive at its
// rate; the other's is not; a link taken down stops traffic; Close
// leaves no namespace behind.
func TestShapedLink(t *testing.T) {
	const rate = 2 << 20
	n := newNet(t, Config{Hosts: 2, Rate: rate})
	if err := n.Shape(1, 0); err != nil {
		t.Fatal(err)
	}
	send := func(from, to int, size int64) time.Duration { return send(t, n, from, to, size) }
	shaped := send(0, 1, 3*rate)
	if shaped < 2500*time.Millisecond || shaped > 6*time.Second {
		t.Errorf("3 s of data at the cap took %v", shaped)
	}
	if free := send(1, 0, 3*rate); free > time.Second {
		t.Errorf("unshaped: 6 MiB took %v", free)
	}
	t.Logf("shaped %v", shaped)

	if err := n.SetLink(1, false); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if c, err := n.DialContext(0)(ctx, "tcp", n.Addr(1)+":9"); err == nil {
		c.Close()
		t.Error("dialled a host whose link is down")
	}
	if out, err := n.Command(1, "true").CombinedOutput(); err != nil {
		t.Errorf("command in the namespace: %v %s", err, out)
	}
	closeAndCheck(t, n)
}

// Two datacenters: hosts 0 and 2 on switch a, 1 and 3 on switch b, the
// link between them shaped. Transfers across take the link's rate each
// way and are counted on it; transfers within a datacenter are neither
// slowed nor counted; Close leaves nothing behind.
func TestDCLink(t *testing.T) {
	const rate, size = 2 << 20, 4 << 20 // 2 s at the link's rate
	n := newNet(t, Config{Hosts: 4, DCs: []int{0, 1, 0, 1}, DCLink: rate})
	a0, b0, err := n.LinkBytes()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name     string
		from, to int
		min, max time.Duration
	}{
		{"a to b", 0, 1, 1600 * time.Millisecond, 4 * time.Second},
		{"b to a", 3, 2, 1600 * time.Millisecond, 4 * time.Second},
		{"within a", 0, 2, 0, time.Second},
		{"within b", 1, 3, 0, time.Second},
	} {
		d := send(t, n, c.from, c.to, size)
		if d < c.min || d > c.max {
			t.Errorf("%s: 4 MiB took %v, want %v to %v", c.name, d, c.min, c.max)
		}
		t.Logf("%s: %v", c.name, d)
	}
	a1, b1, err := n.LinkBytes()
	if err != nil {
		t.Fatal(err)
	}
	// Each way: one transfer's bytes, plus frame headers and the other
	// transfer's acknowledgements; the transfers within a datacenter
	// would add 4 MiB more to each.
	for _, x := range []int64{a1 - a0, b1 - b0} {
		if x < size || x > size*115/100 {
			t.Errorf("the link carried %d and %d bytes (a to b, b to a), want %d to %d each", a1-a0, b1-b0, size, size*115/100)
			break
		}
	}
	if err := n.ShapeDCLink(0); err != nil {
		t.Fatal(err)
	}
	if d := send(t, n, 0, 1, size); d > time.Second {
		t.Errorf("unshaped link: 4 MiB took %v", d)
	}
	closeAndCheck(t, n)
}

// send sends size bytes from host from to host to over TCP and returns how
// long it took until the receiver had them all.
func send(t *testing.T, n *Net, from, to int, size int64) time.Duration {
	t.Helper()
	ln, err := n.Listen(to, n.Addr(to)+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- -1
			return
		}
		defer c.Close()
		k, _ := io.Copy(io.Discard, c)
		got <- k
	}()
	start := time.Now()
	c, err := n.DialContext(from)(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(c, zeros{}, size); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if k := <-got; k != size {
		t.Fatalf("received %d of %d bytes", k, size)
	}
	return time.Since(start)
}

// closeAndCheck closes n and checks that none of its namespaces is left
// (the bridges and links live in them and go with them).
func closeAndCheck(t *testing.T, n *Net) {
	t.Helper()
	names := append([]string{n.sw}, n.hosts...)
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, name := range names {
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) > 0 && f[0] == name {
				t.Errorf("%s left behind", name)
			}
		}
	}
}

// The dialer's sockets live in the host's namespace: the host's address
// is not reachable from this process's own namespace.
func TestDialIsolated(t *testing.T) {
	n := newNet(t, Config{Hosts: 1})
	ln, err := n.Listen(0, n.Addr(0)+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	c, err := n.DialContext(0)(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if _, err := net.Listen("tcp", n.Addr(0)+":0"); err == nil {
		t.Error("the host's address exists outside its namespace")
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []Config{{}, {Hosts: -1}, {Hosts: 1, Rate: -1}, {Hosts: 2, DCs: []int{0}},
		{Hosts: 2, DCs: []int{0, 2}}, {Hosts: 2, DCLink: 1 << 20}, {Hosts: 2, DCs: []int{0, 1}, DCLink: -1}} {
		if c.Validate() == nil {
			t.Errorf("%+v: no error", c)
		}
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
