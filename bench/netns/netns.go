// Package netns builds a small network out of Linux network namespaces for
// tests and `scatter bench --netns`: one "switch" namespace holding a
// bridge, and one namespace per host joined to it by a veth pair, each host
// with its own address and, if asked, a tc token bucket on its uplink so
// that what it sends is capped at a rate on a real network stack.
//
// With Config.DCs the switch namespace holds two bridges instead, the
// switches of datacenters a and b, joined by one veth pair: the link
// between the datacenters, a layer-2 link whose two directions can each be
// capped by a token bucket (Config.DCLink) and whose bytes are counted
// (LinkBytes). The hosts of both datacenters share one subnet, so any host
// reaches any other, across the link when they are on different switches.
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
	"encoding/json"
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

// The link between datacenters (Config.DCs): linkA is its end on DC a's
// bridge, so what linkA sends goes from a to b; linkB the other end.
const (
	linkA = "dca"
	linkB = "dcb"
)

// Config sizes a Net. The zero value of each field means its default.
type Config struct {
	Hosts int // namespaces besides the switch; at least 1
	// Rate caps each host's uplink in bytes per second with tc's token
	// bucket filter; 0 leaves links unshaped. Shape changes one host's.
	Rate int64
	// DCs, if not nil, splits the hosts between two switches, datacenter
	// a (0) and datacenter b (1), joined by one link: DCs[i] is host i's.
	// It has one entry per host. Nil: one switch, no link.
	DCs []int
	// DCLink caps each direction of the link between the datacenters in
	// bytes per second, with a token bucket like Rate's; 0 leaves it
	// unshaped. ShapeDCLink changes it.
	DCLink int64
}

// Validate checks the configuration without changing it.
func (c Config) Validate() error {
	switch {
	case c.Hosts < 1 || c.Hosts > 60000:
		return fmt.Errorf("netns: %d hosts: want 1 to 60000", c.Hosts)
	case c.Rate < 0 || c.DCLink < 0:
		return fmt.Errorf("netns: negative rate")
	case c.DCs != nil && len(c.DCs) != c.Hosts:
		return fmt.Errorf("netns: %d DCs for %d hosts: want one per host", len(c.DCs), c.Hosts)
	case c.DCs == nil && c.DCLink > 0:
		return errors.New("netns: DCLink without DCs: there is no link between datacenters")
	}
	for i, dc := range c.DCs {
		if dc != 0 && dc != 1 {
			return fmt.Errorf("netns: host %d in datacenter %d: want 0 (a) or 1 (b)", i, dc)
		}
	}
	return nil
}

// Net is a set of namespaces made by New. Its methods may be called
// concurrently; Close must be called once, when nothing uses it.
type Net struct {
	prefix string
	sw     string
	hosts  []string
	twoDC  bool
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
	setup := [][]string{
		{"-n", n.sw, "link", "add", "br0", "type", "bridge"},
		{"-n", n.sw, "link", "set", "br0", "up"},
		{"-n", n.sw, "link", "set", "lo", "up"},
	}
	if cfg.DCs != nil {
		// DC b's bridge, and the link: a veth pair with an end on each.
		// One link and no other path between the bridges, so no loop.
		n.twoDC = true
		setup = append(setup, [][]string{
			{"-n", n.sw, "link", "add", "br1", "type", "bridge"},
			{"-n", n.sw, "link", "set", "br1", "up"},
			{"-n", n.sw, "link", "add", linkA, "type", "veth", "peer", "name", linkB},
			{"-n", n.sw, "link", "set", linkA, "master", "br0"},
			{"-n", n.sw, "link", "set", linkB, "master", "br1"},
			{"-n", n.sw, "link", "set", linkA, "up"},
			{"-n", n.sw, "link", "set", linkB, "up"},
		}...)
	}
	for _, args := range setup {
		if err := ip(args...); err != nil {
			return n, err
		}
	}
	if cfg.DCLink > 0 {
		if err := n.ShapeDCLink(cfg.DCLink); err != nil {
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
		s, br := fmt.Sprintf("s%d", i), "br0"
		if cfg.DCs != nil && cfg.DCs[i] == 1 {
			br = "br1"
		}
		for _, args := range [][]string{
			{"-n", h, "link", "add", dev, "address", mac(i), "type", "veth", "peer", "name", s, "netns", n.sw},
			{"-n", h, "addr", "add", n.Addr(i) + "/16", "dev", dev},
			{"-n", h, "link", "set", dev, "up"},
			{"-n", h, "link", "set", "lo", "up"},
			{"-n", n.sw, "link", "set", s, "master", br},
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
	// Every host knows every other's MAC address from the start, so none
	// ever asks by ARP. The kernel's neighbour table is shared by all
	// namespaces and holds at most gc_thresh3 (1024 by default) learned
	// entries: 33 hosts that all talk to each other need 1056, and runs
	// side by side add up, after which ARP fails ("no route to host").
	// Permanent entries do not count towards that limit.
	for i, h := range n.hosts {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		var batch strings.Builder
		for j := range n.hosts {
			if j != i {
				fmt.Fprintf(&batch, "neigh replace %s lladdr %s dev %s nud permanent\n", n.Addr(j), mac(j), dev)
			}
		}
		cmd := exec.Command("ip", "-n", h, "-batch", "-")
		cmd.Stdin = strings.NewReader(batch.String())
		if out, err := cmd.CombinedOutput(); err != nil {
			return n, fmt.Errorf("ip -n %s -batch (neighbours): %w: %s", h, err, bytes.TrimSpace(out))
		}
	}
	return n, nil
}

// mac is host i's MAC address: locally administered, unique in the Net.
func mac(i int) string { return fmt.Sprintf("02:77:00:%02x:%02x:%02x", i>>16&0xff, i>>8&0xff, i&0xff) }

// Hosts is the number of host namespaces.
func (n *Net) Hosts() int { return len(n.hosts) }

// Name is host i's namespace, as `ip netns` lists it.
func (n *Net) Name(i int) string { return n.hosts[i] }

// Addr is host i's address, which exists only inside the namespaces.
func (n *Net) Addr(i int) string { return fmt.Sprintf("10.77.%d.%d", i/250, i%250+1) }

// Shape caps what host i sends at rate bytes per second (its upload),
// replacing any earlier cap; 0 removes the cap. The token bucket's burst is
// 10 ms at the rate, at least 64 KiB; packets wait in its queue up to 200 ms.
func (n *Net) Shape(i int, rate int64) error { return shape(n.hosts[i], dev, rate) }

// ShapeDCLink caps each direction of the link between the datacenters at
// rate bytes per second, as Shape caps an uplink; 0 removes the caps.
func (n *Net) ShapeDCLink(rate int64) error {
	if !n.twoDC {
		return errors.New("netns: one datacenter: no link to shape")
	}
	return errors.Join(shape(n.sw, linkA, rate), shape(n.sw, linkB, rate))
}

// LinkBytes is what the link between the datacenters has carried so far,
// each way: every byte of every frame (Ethernet headers included) that
// crossed, whoever sent it. Differences of two readings count a span.
func (n *Net) LinkBytes() (aToB, bToA int64, err error) {
	if !n.twoDC {
		return 0, 0, errors.New("netns: one datacenter: no link to count")
	}
	out, err := exec.Command("ip", "-n", n.sw, "-j", "-s", "link", "show", "dev", linkA).Output()
	if err != nil {
		return 0, 0, fmt.Errorf("netns: link counters: %w", err)
	}
	var links []struct {
		Stats struct {
			RX, TX struct {
				Bytes int64 `json:"bytes"`
			}
		} `json:"stats64"`
	}
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		return 0, 0, fmt.Errorf("netns: link counters: %w: %s", err, bytes.TrimSpace(out))
	}
	// A veth pair: what one end sends, the other receives.
	return links[0].Stats.TX.Bytes, links[0].Stats.RX.Bytes, nil
}

// shape puts a token bucket on what device dev in namespace ns sends, or
// removes it (rate 0). The burst is 10 ms at the rate, at least 64 KiB;
// packets wait in its queue up to 200 ms.
func shape(ns, dev string, rate int64) error {
	tc := func(args ...string) error {
		return run("ip", append([]string{"netns", "exec", ns, "tc", "qdisc"}, args...)...)
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
