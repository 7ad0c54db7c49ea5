package fanout

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"scatter/artifact/core"
	"scatter/bench"
	"scatter/bench/netns"
	"scatter/orchestrate/deploy"
	"scatter/orchestrate/host"
	"scatter/swarm"
)

// LinkHeadroom is how much faster than a daemon's own upload cap tc lets
// its link run in netns mode (Config.NetnsUncapped).
const LinkHeadroom = 1.05

// Ports every daemon uses in netns mode: each has its own address, so
// they can all use the defaults of `scatter seed`.
const (
	gossipPort = 7946
	httpPort   = 7947
)

// netnsFleet runs nodes as `scatter seed` processes, node i in namespace i
// of a bench/netns network, its uplink shaped by tc to the node's cap.
type netnsFleet struct {
	net     *netns.Net
	bin     string
	dir     string
	pub     string // the deploy key's public half, for --pubkey
	ckey    string // the cluster key file
	mu      sync.Mutex
	procs   map[*proc]bool // running
	cpu     float64        // CPU seconds of processes that ended
	peakRSS int64          // sum of the ended processes' peak RSS
	// uncapped: daemons without --upload-rate, tc alone (Config.NetnsUncapped).
	uncapped bool
	// gomaxprocs is each daemon's --procs; 0: none (Config.DaemonProcs).
	gomaxprocs int
}

// dcs, if not nil, puts node i on datacenter dcs[i]'s switch.
func newNetnsFleet(ctx context.Context, dir, bin string, nodes int, dcs []int, c *cluster) (*netnsFleet, error) {
	nw, err := netns.New(ctx, netns.Config{Hosts: nodes, DCs: dcs})
	if err != nil {
		return nil, err
	}
	f := &netnsFleet{net: nw, bin: bin, dir: dir, pub: filepath.Join(dir, "deploy.pub"),
		ckey: filepath.Join(dir, "cluster.key"), procs: map[*proc]bool{}}
	der, err := x509.MarshalPKIXPublicKey(c.key.Public().(ed25519.PublicKey))
	if err == nil {
		err = os.WriteFile(f.pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644)
	}
	if err == nil {
		err = os.WriteFile(f.ckey, []byte(base64.StdEncoding.EncodeToString(c.ckey)), 0o600)
	}
	if err != nil {
		nw.Close()
		return nil, fmt.Errorf("netns: %w", err)
	}
	return f, nil
}

// start starts node n's daemon in its namespace, shapes its uplink to its
// cap, and waits until its control socket answers.
func (f *netnsFleet) start(ctx context.Context, c *cluster, n *node, origin bool) (member, error) {
	link := n.up
	if !f.uncapped {
		link = int64(float64(n.up) * LinkHeadroom)
	}
	if err := f.net.Shape(n.i, link); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(n.dir, 0o755); err != nil {
		return nil, err
	}
	// --config "": never this machine's /etc/scatter/seed.yaml.
	args := []string{"--log-level", "info"}
	// For profiling the daemons (docs/development.md): each writes a CPU
	// profile to DIR/<name>.prof when it stops.
	if d := os.Getenv("SCATTER_BENCH_PROFILES"); d != "" {
		args = append(args, "--cpuprofile", filepath.Join(d, n.name+".prof"))
	}
	args = append(args, "seed", "--config", "", "--data", n.dir, "--pubkey", f.pub, "--name", n.name,
		"--bind", n.ip, "--gossip-port", strconv.Itoa(gossipPort), "--http-port", strconv.Itoa(httpPort),
		"--cluster-key", f.ckey, "--label", "scatter-bench")
	if !f.uncapped && n.up > 0 {
		args = append(args, "--upload-rate", strconv.FormatInt(n.up, 10))
	}
	if f.gomaxprocs > 0 {
		args = append(args, "--procs", strconv.Itoa(f.gomaxprocs))
	}
	if origin {
		args = append(args, "--origin")
	} else {
		cfg := filepath.Join(n.dir + ".yaml")
		if err := os.WriteFile(cfg, []byte(seedActions(net.JoinHostPort(n.ip, strconv.Itoa(httpPort)))), 0o644); err != nil {
			return nil, err
		}
		args = append(args, "--config", cfg)
	}
	if c.seed != "" {
		args = append(args, "--join", c.seed)
	}
	if c.bridges > 0 {
		args = append(args, "--bridges", strconv.Itoa(c.bridges))
	}
	if n.dc != "" && !c.blind {
		args = append(args, "--dc", n.dc)
	}
	logf, err := os.OpenFile(n.dir+".log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := f.net.Command(n.i, f.bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("scatter seed: %w", err)
	}
	p := &proc{f: f, n: n, cmd: cmd, exited: make(chan struct{}), ctl: host.DialControl(n.dir),
		http: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: f.net.DialContext(n.i)}}}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	f.mu.Lock()
	f.procs[p] = true
	f.mu.Unlock()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := p.members(ctx); err == nil {
			return p, nil
		} else if p.gone() != nil || time.Now().After(deadline) || ctx.Err() != nil {
			p.close()
			return nil, fmt.Errorf("scatter seed did not come up: %w; %s", err, p.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// seedActions is a host's seed.yaml: the actions the in-process hosts
// have (actions), with the TCP check aimed at the daemon's own metadata
// port, the one port every host surely has open.
func seedActions(app string) string {
	return `repos:
  ` + repo + `:
    actions:
      restart: {command: ["true"], timeout: 10s}
      tree: {command: [/bin/sh, -c, 'test -d "$SCATTER_RELEASE_DIR"'], timeout: 10s}
      app: {tcp: "` + app + `", timeout: 5s}
`
}

func (f *netnsFleet) cpuSeconds() float64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := f.cpu
	for p := range f.procs {
		t += bench.ProcCPU(p.cmd.Process.Pid)
	}
	return t
}

// close removes the namespaces, once every process has stopped.
func (f *netnsFleet) close() {
	f.mu.Lock()
	var ps []*proc
	for p := range f.procs {
		ps = append(ps, p)
	}
	f.mu.Unlock()
	for _, p := range ps {
		p.close()
	}
	f.net.Close()
}

// proc is a node's `scatter seed` process.
type proc struct {
	f      *netnsFleet
	n      *node
	cmd    *exec.Cmd
	ctl    *host.Control
	http   *http.Client // dials from the node's own namespace
	exited chan struct{}
	err    error // cmd.Wait's, once exited is closed
	once   sync.Once
}

var _ member = (*proc)(nil)

// gone says why the process is no longer running, or nil.
func (p *proc) gone() error {
	select {
	case <-p.exited:
		return fmt.Errorf("scatter seed exited: %v", p.err)
	default:
		return nil
	}
}

// status is the daemon's own status, from its metadata server, asked from
// inside its namespace (over its loopback: the uplink is not crossed).
func (p *proc) status(ctx context.Context) (swarm.Status, error) {
	var st swarm.Status
	if err := p.gone(); err != nil {
		return st, fmt.Errorf("%w; %s", err, p.logTail())
	}
	url := fmt.Sprintf("http://%s/v1/status", net.JoinHostPort(p.n.ip, strconv.Itoa(httpPort)))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return st, err
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return st, fmt.Errorf("status: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("status: %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("status: %w", err)
	}
	return st, nil
}

func (p *proc) release(ctx context.Context, id core.ReleaseID) (swarm.ReleaseStatus, bool, error) {
	st, err := p.status(ctx)
	if err != nil {
		return swarm.ReleaseStatus{}, false, err
	}
	for _, r := range st.Repos {
		if r.Repo != repo {
			continue
		}
		for _, rel := range r.Releases {
			if rel.Release == id {
				return rel, true, nil
			}
		}
	}
	return swarm.ReleaseStatus{}, false, nil
}

func (p *proc) counters(ctx context.Context) (counters, error) {
	st, err := p.status(ctx)
	return counters{fromOrigin: st.ReceivedFromOrigin, fromPeers: st.ReceivedFromPeers, uploaded: st.Uploaded}, err
}

// members are the live members the daemon trusts, its deploy targets, as
// it lists them on its control socket (a unix socket in its data
// directory: reachable from any namespace).
func (p *proc) members(ctx context.Context) ([]string, error) {
	ts, err := p.ctl.Targets(ctx, repo)
	var out []string
	for _, t := range ts {
		out = append(out, t.Name)
	}
	return out, err
}

func (p *proc) publish(ctx context.Context, ann []byte) error { return p.ctl.Announce(ctx, ann) }
func (p *proc) transport() deploy.Transport                   { return host.ControlTransport{C: p.ctl} }
func (p *proc) httpAddr() string                              { return net.JoinHostPort(p.n.ip, strconv.Itoa(httpPort)) }
func (p *proc) gossipAddr() string                            { return net.JoinHostPort(p.n.ip, strconv.Itoa(gossipPort)) }

// close stops the daemon as an operator would (SIGTERM: it leaves the
// cluster), killing it if it takes more than 10 s, and banks its CPU time
// and peak RSS, read just before it ends.
func (p *proc) close() error {
	p.once.Do(func() {
		pid := p.cmd.Process.Pid
		cpu, rss := bench.ProcCPU(pid), bench.ProcPeakRSS(pid)
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-p.exited
		}
		p.http.CloseIdleConnections()
		p.f.mu.Lock()
		delete(p.f.procs, p)
		p.f.cpu += cpu
		p.f.peakRSS += rss
		p.f.mu.Unlock()
	})
	return nil
}

// logTail is the end of the daemon's log, for errors.
func (p *proc) logTail() string {
	b, _ := os.ReadFile(p.n.dir + ".log")
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return fmt.Sprintf("log %s.log ends:\n%s", p.n.dir, bytes.TrimSpace(b))
}
