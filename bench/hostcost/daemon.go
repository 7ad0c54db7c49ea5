package hostcost

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"scatter/artifact/core"
	"scatter/artifact/datadir"
	"scatter/bench"
	"scatter/orchestrate/host"
	"scatter/swarm"
)

// Loopback addresses of the two daemons. No test binds them; every port is
// chosen by the kernel, so runs side by side do not collide. A stock client
// connects from 127.0.0.1, which the daemons let in (--allow-clients).
const (
	originIP = "127.0.89.1"
	hostIP   = "127.0.89.2"
	clients  = "127.0.0.1/32"
	repo     = "mw"
	label    = "scatter-hostcost"
)

// daemon is one `scatter seed` process.
type daemon struct {
	name, data string
	cmd        *exec.Cmd
	ctl        *host.Control
	exited     chan struct{}
	err        error // cmd.Wait's, once exited is closed
	started    time.Time
	gossip     string // its gossip address, host:port
}

// startDaemon starts `scatter seed` with data directory data and waits until
// its control socket answers.
func (r *run) startDaemon(ctx context.Context, name, data, ip string, extra ...string) (*daemon, error) {
	if err := os.MkdirAll(data, 0o755); err != nil {
		return nil, err
	}
	// --config "": never this machine's /etc/scatter/seed.yaml.
	args := []string{"--log-level", "info", "seed", "--config", "", "--data", data, "--pubkey", r.key + ".pub",
		"--name", name, "--bind", ip, "--gossip-port", "0", "--bt-port", "0", "--http-port", "0",
		"--admin-addr", "", "--cluster-key", r.ckey, "--label", label, "--allow-clients", clients}
	args = append(args, extra...)
	logf, err := os.OpenFile(data+".log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	d := &daemon{name: name, data: data, cmd: exec.Command(r.cfg.Binary, args...), ctl: host.DialControl(data),
		exited: make(chan struct{}), started: time.Now()}
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	if err := d.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("scatter seed: %w", err)
	}
	go func() {
		d.err = d.cmd.Wait()
		logf.Close()
		close(d.exited)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := d.ctl.Status(ctx)
		if err == nil {
			if d.gossip, err = d.gossipAddr(); err == nil {
				return d, nil
			}
		}
		if d.gone() != nil || time.Now().After(deadline) || ctx.Err() != nil {
			d.stop()
			return nil, fmt.Errorf("scatter seed %s did not come up: %w; %s", name, errors.Join(err, d.gone(), ctx.Err()), d.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (d *daemon) pid() int { return d.cmd.Process.Pid }

// cpu is the process's CPU seconds so far.
func (d *daemon) cpu() float64 { return bench.ProcCPU(d.pid()) }

// gone says why the process is no longer running, or nil.
func (d *daemon) gone() error {
	select {
	case <-d.exited:
		return fmt.Errorf("scatter seed %s exited: %v", d.name, d.err)
	default:
		return nil
	}
}

// stop stops the daemon as an operator would (SIGTERM: it leaves the
// cluster), killing it if it takes more than 10 s.
func (d *daemon) stop() {
	if d.gone() != nil {
		return
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(10 * time.Second):
		d.cmd.Process.Kill()
		<-d.exited
	}
}

// gossipAddr is the gossip address the daemon's log names when it starts
// ("scatter seed: NAME BUILD gossip HOST:PORT, …"): its status names the
// member's IP only.
func (d *daemon) gossipAddr() (string, error) {
	b, err := os.ReadFile(d.data + ".log")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if _, rest, ok := strings.Cut(line, " gossip "); ok && strings.HasPrefix(line, "scatter seed:") {
			return strings.TrimSuffix(strings.Fields(rest)[0], ","), nil
		}
	}
	return "", errors.New("no gossip address in its log yet")
}

// logTail is the end of the daemon's log, for errors.
func (d *daemon) logTail() string {
	b, _ := os.ReadFile(d.data + ".log")
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return fmt.Sprintf("log %s.log ends:\n%s", d.data, bytes.TrimSpace(b))
}

// self is the daemon's own entry in its cluster status.
func (d *daemon) self(ctx context.Context) (host.MemberStatus, error) {
	s, err := d.ctl.Status(ctx)
	if err != nil {
		return host.MemberStatus{}, err
	}
	for _, m := range s.Members {
		if m.Name == s.Self {
			return m, nil
		}
	}
	return host.MemberStatus{}, fmt.Errorf("%s does not list itself among the members", d.name)
}

// release is the daemon's status of release id, once it knows it.
func (d *daemon) release(ctx context.Context, id core.ReleaseID) (swarm.ReleaseStatus, bool, error) {
	m, err := d.self(ctx)
	if err != nil || m.Status == nil {
		return swarm.ReleaseStatus{}, false, err
	}
	for _, rs := range m.Status.Repos {
		for _, rel := range rs.Releases {
			if rs.Repo == repo && rel.Release == id {
				return rel, true, nil
			}
		}
	}
	return swarm.ReleaseStatus{}, false, nil
}

// staged is what waitStaged saw.
type staged struct {
	rel      swarm.ReleaseStatus
	cpu      float64       // the daemon's CPU seconds when it was seen staged
	peakRSS  int64         // its peak resident set size then (VmHWM)
	wall     time.Duration // from the daemon's start
	failures int           // failed attempts seen before
}

// waitStaged polls the daemon until release id is staged there. A failed
// attempt is counted and waited out: the daemon tries again by itself
// (a host that learns of a release as it joins may ask the origin before
// the origin knows it, and be refused).
func (d *daemon) waitStaged(ctx context.Context, id core.ReleaseID, timeout time.Duration) (staged, error) {
	deadline := time.Now().Add(timeout)
	var failures int
	var lastErr string
	for {
		rel, ok, err := d.release(ctx, id)
		switch {
		case err != nil:
			return staged{}, fmt.Errorf("%s status: %w; %s", d.name, err, d.logTail())
		case ok && rel.State == swarm.Staged:
			return staged{rel, d.cpu(), bench.ProcPeakRSS(d.pid()), time.Since(d.started), failures}, nil
		case ok && rel.State == swarm.Failed && rel.Error != lastErr:
			failures++
			lastErr = rel.Error
		case ok && rel.State != swarm.Failed:
			lastErr = ""
		}
		switch {
		case time.Now().After(deadline):
			return staged{}, fmt.Errorf("%s did not stage the release in %s (%s, %d of %d bytes, %s %s); %s",
				d.name, timeout, rel.State, rel.Done, rel.Total, rel.Stuck, rel.Error, d.logTail())
		}
		select {
		case <-ctx.Done():
			return staged{}, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// seedHost copies the enrolled host's identity (its key and the roster)
// into a fresh data directory: a host started there is enrolled already
// and holds nothing.
func (r *run) seedHost(data string) error {
	if err := os.MkdirAll(data, 0o755); err != nil {
		return err
	}
	from, to := datadir.Data(r.identity), datadir.Data(data)
	for _, f := range [][2]string{{from.HostKey(), to.HostKey()}, {from.Roster(), to.Roster()}} {
		b, err := os.ReadFile(f[0])
		if err == nil {
			err = os.WriteFile(f[1], b, 0o600)
		}
		if err != nil {
			return fmt.Errorf("host identity: %w", err)
		}
	}
	return nil
}
