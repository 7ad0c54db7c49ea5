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
	send := func(from, to int, size int64) time.Duration {
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
	for _, c := range []Config{{}, {Hosts: -1}, {Hosts: 1, Rate: -1}} {
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
