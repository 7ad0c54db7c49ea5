// Package netns builds a small network out of Linux network namespaces for
// tests and `scatter bench --netns`: one "switch" namespace holding a
// bridge, and one namespace per host joined to it by a veth pair, each host
// with its own address and, if asked, a tc token bucket on its uplink so
// that what it sends is capped at a rate on a real network stack.
//
// Every address lives only inside these namespaces (10.77.0.0/16 on the
// bridge): nothing is routed to or from the namespace the caller runs in.
// The caller reaches a host through a process started in its namespace
// (Command) or a socket opened there (DialContext), and through files.
//
// Creating namespaces needs root and iproute2 (ip, tc); Check says what is
// missing. Close removes every namespace the Net made; names carry the
// creating process's ID, so Sweep can remove those a killed run left.
package netns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrUnavailable is returned (wrapped) when namespaces cannot be made
// here: not root, iproute2 missing, or the kernel refuses.
var ErrUnavailable = errors.New("network namespaces unavailable")

// namePrefix starts the name of every namespace this package makes,
// followed by the creating process's ID.
const namePrefix = "scb"

// dev is each host's end of its veth pair, inside its namespace.
const dev = "eth0"

// Config sizes a Net. The zero value of each field means its default.
type Config struct {
	Hosts int // namespaces besides the switch; at least 1
	// Rate caps each host's uplink in bytes per second with tc's token
	// bucket filter; 0 leaves links unshaped. Shape changes one host's.
	Rate int64
}

// Validate checks the configuration without changing it.
func (c Config) Validate() error {
	switch {
	case c.Hosts < 1 || c.Hosts > 60000:
		return fmt.Errorf("netns: %d hosts: want 1 to 60000", c.Hosts)
	case c.Rate < 0:
		return fmt.Errorf("netns: negative rate %d", c.Rate)
	}
	return nil
}

// Net is a set of namespaces made by New. Its methods may be called
// concurrently; Close must be called once, when nothing uses it.
type Net struct {
	prefix string
	sw     string
	hosts  []string
}

// Check says why namespaces cannot be made here, or nil.
func Check() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: need root (CI runs as root)", ErrUnavailable)
	}
	for _, tool := range []string{"ip", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%w: %s not found (install iproute2)", ErrUnavailable, tool)
		}
	}
	return nil
}

// New makes the namespaces. On error, whatever it made is removed again;
// if ctx is cancelled part way, New stops and removes it too.
func New(ctx context.Context, cfg Config) (n *Net, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := Check(); err != nil {
		return nil, err
	}
	Sweep()
	p := fmt.Sprintf("%s%d", namePrefix, os.Getpid())
	n = &Net{prefix: p, sw: p + "-sw"}
	// Several Nets in one process (tests) must not share names.
	for i := 0; nsExists(n.sw); i++ {
		n.prefix = fmt.Sprintf("%s%d.%d", namePrefix, os.Getpid(), i)
		n.sw = n.prefix + "-sw"
	}
	if err := ip("netns", "add", n.sw); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	defer func() {
		if err != nil {
			n.Close()
			n = nil
		}
	}()
	for _, args := range [][]string{
		{"-n", n.sw, "link", "add", "br0", "type", "bridge"},
		{"-n", n.sw, "link", "set", "br0", "up"},
		{"-n", n.sw, "link", "set", "lo", "up"},
	} {
		if err := ip(args...); err != nil {
			return n, err
		}
	}
	for i := range cfg.Hosts {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		h := fmt.Sprintf("%s-h%d", n.prefix, i)
		if err := ip("netns", "add", h); err != nil {
			return n, err
		}
		n.hosts = append(n.hosts, h)
		s := fmt.Sprintf("s%d", i)
		for _, args := range [][]string{
			{"-n", h, "link", "add", dev, "type", "veth", "peer", "name", s, "netns", n.sw},
			{"-n", h, "addr", "add", n.Addr(i) + "/16", "dev", dev},
			{"-n", h, "link", "set", dev, "up"},
			{"-n", h, "link", "set", "lo", "up"},
			{"-n", n.sw, "link", "set", s, "master", "br0"},
			{"-n", n.sw, "link", "set", s, "up"},
		} {
			if err := ip(args...); err != nil {
				return n, err
			}
		}
		if cfg.Rate > 0 {
			if err := n.Shape(i, cfg.Rate); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// Hosts is the number of host namespaces.
func (n *Net) Hosts() int { return len(n.hosts) }

// Name is host i's namespace, as `ip netns` lists it.
func (n *Net) Name(i int) string { return n.hosts[i] }

// Addr is host i's address, which exists only inside the namespaces.
func (n *Net) Addr(i int) string { return fmt.Sprintf("10.77.%d.%d", i/250, i%250+1) }

// Shape caps what host i sends at rate bytes per second (its upload),
// replacing any earlier cap; 0 removes the cap. The token bucket's burst is
// 10 ms at the rate, at least 64 KiB; packets wait in its queue up to 200 ms.
func (n *Net) Shape(i int, rate int64) error {
	tc := func(args ...string) error {
		return run("ip", append([]string{"netns", "exec", n.hosts[i], "tc", "qdisc"}, args...)...)
	}
	tc("del", "dev", dev, "root") // none yet is fine
	if rate == 0 {
		return nil
	}
	burst := max(64<<10, rate/100)
	return tc("add", "dev", dev, "root", "tbf", "rate", strconv.FormatInt(rate*8, 10)+"bit",
		"burst", strconv.FormatInt(burst, 10), "latency", "200ms")
}

// SetLink takes host i's link down (up false) or up again: a partition.
func (n *Net) SetLink(i int, up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	return ip("-n", n.hosts[i], "link", "set", dev, state)
}

// Command is an exec.Cmd that runs name with args in host i's namespace
// (through `ip netns exec`, which execs it: the process's ID is the
// command's).
func (n *Net) Command(i int, name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.hosts[i], name}, args...)...)
}

// DialContext is a dial function, for net/http's Transport and the like,
// whose sockets are made in host i's namespace: connections from this
// process that start there, as if host i dialed.
func (n *Net) DialContext(i int) func(ctx context.Context, network, addr string) (net.Conn, error) {
	path := "/var/run/netns/" + n.hosts[i]
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		var conn net.Conn
		err := inNamespace(path, func() error {
			// The socket is made by this goroutine, on this thread, before
			// DialContext waits for the connection: it stays in the
			// namespace it was made in.
			var err error
			conn, err = d.DialContext(ctx, network, addr)
			return err
		})
		return conn, err
	}
}

// Listen opens a TCP listener on addr in host i's namespace.
func (n *Net) Listen(i int, addr string) (net.Listener, error) {
	var ln net.Listener
	err := inNamespace("/var/run/netns/"+n.hosts[i], func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	})
	return ln, err
}

// inNamespace runs f on a thread switched into the network namespace at
// path, and switches back. A thread that cannot switch back is never
// reused: the goroutine exits locked, and the runtime ends the thread.
func inNamespace(path string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns: %w", err)
			return
		}
		defer self.Close()
		target, err := os.Open(path)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns: %w", err)
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns: enter %s: %w", path, err)
			return
		}
		ferr := f()
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("netns: return from %s: %w", path, err))
			return // still locked: the thread ends with the goroutine
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Close removes every namespace the Net made. Processes still running in
// one keep it alive, unnamed, until they exit: stop them first.
func (n *Net) Close() error {
	var errs []error
	for _, h := range append(n.hosts, n.sw) {
		if err := ip("netns", "del", h); err != nil {
			errs = append(errs, err)
		}
	}
	n.hosts = nil
	return errors.Join(errs...)
}

// Sweep removes namespaces this package made in processes that no longer
// run (a run killed before it could clean up). It never touches another
// live process's namespaces, nor any it did not name.
func Sweep() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], namePrefix) {
			continue
		}
		pid, _, ok := strings.Cut(strings.TrimPrefix(f[0], namePrefix), "-")
		pid, _, _ = strings.Cut(pid, ".")
		p, err := strconv.Atoi(pid)
		if !ok || err != nil || p <= 0 {
			continue
		}
		if _, err := os.Stat("/proc/" + pid); err == nil {
			continue
		}
		ip("netns", "del", f[0])
	}
}

func nsExists(name string) bool {
	_, err := os.Stat("/var/run/netns/" + name)
	return err == nil
}

func ip(args ...string) error { return run("ip", args...) }

func run(name string, args ...string) error {
	var out bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out.Bytes()))
	}
	return nil
}
