package host

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"scatter/artifact/core"
	"scatter/artifact/datadir"
	"scatter/artifact/keys"
	"scatter/orchestrate/agent"
	"scatter/orchestrate/command"
	"scatter/orchestrate/deploy"
	"scatter/orchestrate/membership"
	"scatter/orchestrate/trust"
	"scatter/swarm"
)

// ClusterStatus is what `scatter status` shows: every member as gossip sees
// it, with the status each reports over its metadata server.
type ClusterStatus struct {
	Self    string         `json:"self"`
	Members []MemberStatus `json:"members"`
	// Health is the local daemon's own: what its /readyz says.
	Health Health `json:"health"`
	// Warnings are what the local daemon found wrong that is not a
	// member's state: gossip in a format it cannot read, for one.
	Warnings []string `json:"warnings,omitempty"`
	// Joined is how this daemon last joined the cluster.
	Joined membership.JoinInfo `json:"joined"`
	// Roster is the version of the roster this host holds.
	Roster uint64 `json:"roster"`
	// Refused counts statements refused, by kind and reason
	// ("ack:bad-signature", "holds:not-enrolled"…).
	Refused map[string]uint64 `json:"refused,omitempty"`
}

// JoinLine says in one line when and through whom the daemon last joined
// the cluster, and what goes wrong if its rejoins fail.
func (s ClusterStatus) JoinLine(now time.Time) string {
	j := s.Joined
	var b strings.Builder
	switch {
	case j.At.IsZero() && len(s.Members) > 1:
		b.WriteString("has joined through nobody: the others joined through it")
	case j.At.IsZero():
		b.WriteString("alone: has joined nobody yet")
	default:
		fmt.Fprintf(&b, "joined %s ago (%s) through %s (%s)", now.Sub(j.At).Round(time.Second),
			j.At.Local().Format("15:04:05"), strings.Join(j.Via, ", "), j.Reason)
	}
	fmt.Fprintf(&b, "; %d members seen, %d remembered", len(s.Members), j.Remembered)
	if len(j.Missing) > 0 {
		fmt.Fprintf(&b, "; missing, rejoined every few seconds: %s", strings.Join(j.Missing, ", "))
		if j.Failures > 0 {
			fmt.Fprintf(&b, " (the last %d attempts reached nobody: %s)", j.Failures, j.Error)
		}
	}
	return b.String()
}

// MemberStatus is one member's entry.
type MemberStatus struct {
	Name string `json:"name"`
	Addr string `json:"addr"`
	HTTP string `json:"http"` // metadata server and tracker, ip:port
	Role string `json:"role"`
	DC   string `json:"dc,omitempty"`
	Rack string `json:"rack,omitempty"`
	// Build is the scatter build it runs (version.Info.Short), as its
	// signed advertisement says.
	Build string `json:"build,omitempty"`
	// Trust is how far the roster vouches for the member (TrustEnrolled,
	// TrustPending, TrustNewKey, TrustBadMeta); Key its advertised key's
	// fingerprint.
	Trust  string        `json:"trust"`
	Key    string        `json:"key,omitempty"`
	Error  string        `json:"error,omitempty"` // why its status could not be read
	Status *swarm.Status `json:"status,omitempty"`
	// Deploy is what runs on the member, per repo, as gossip last said.
	Deploy []agent.RepoState `json:"deploy,omitempty"`
	// Skew is how far the member's clock is ahead of this host's (behind
	// if negative), measured when its status was read; zero for this
	// host, and when the member did not say.
	Skew time.Duration `json:"skew,omitempty"`
}

// Mix is one repo whose hosts run different releases: what an interrupted
// deploy leaves behind.
type Mix struct {
	Repo string
	// Runs lists the hosts on each release, most hosts first; the zero
	// release collects hosts that run none.
	Runs []ReleaseHosts
}

// ReleaseHosts is the hosts running one release.
type ReleaseHosts struct {
	Release core.ReleaseID
	Hosts   []string
}

// Mixed lists the repos whose members (the origin aside) run different
// releases, as gossip last reported them. Members that never ran the repo
// are left out.
func (s ClusterStatus) Mixed() []Mix {
	by := map[string]map[core.ReleaseID][]string{}
	for _, m := range s.Members {
		if m.Role == "origin" {
			continue
		}
		for _, r := range m.Deploy {
			if r.Current.IsZero() && r.Last == nil {
				continue
			}
			if by[r.Repo] == nil {
				by[r.Repo] = map[core.ReleaseID][]string{}
			}
			by[r.Repo][r.Current] = append(by[r.Repo][r.Current], m.Name)
		}
	}
	var out []Mix
	for repo, rels := range by {
		if len(rels) < 2 {
			continue
		}
		mix := Mix{Repo: repo}
		for id, hosts := range rels {
			sort.Strings(hosts)
			mix.Runs = append(mix.Runs, ReleaseHosts{id, hosts})
		}
		sort.Slice(mix.Runs, func(i, j int) bool {
			a, b := mix.Runs[i], mix.Runs[j]
			if len(a.Hosts) != len(b.Hosts) {
				return len(a.Hosts) > len(b.Hosts)
			}
			return a.Release.String() < b.Release.String()
		})
		out = append(out, mix)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Repo < out[j].Repo })
	return out
}

// ClusterStatus asks every live member for its status, in parallel, each
// with a short deadline: an unreachable member is reported, not waited for.
func (h *Host) ClusterStatus(ctx context.Context) ClusterStatus {
	members := h.ml.Members()
	out := ClusterStatus{Self: h.cfg.Name, Members: make([]MemberStatus, len(members)), Joined: h.ml.Joined(),
		Roster: h.book.Version(), Refused: h.tally.Counts()}
	client := h.dataPlaneClient(2 * time.Second)
	own := h.agent.State()
	h.mu.Lock()
	deploy := map[string][]agent.RepoState{}
	for name, st := range h.states {
		deploy[name] = st.Repos
	}
	h.mu.Unlock()
	deploy[h.cfg.Name] = own
	var wg sync.WaitGroup
	for i, m := range members {
		e, trusted := h.classify(m)
		ms := MemberStatus{Name: m.Name, Addr: m.Addr.String(), Role: m.Meta.Role, DC: m.Meta.DC, Rack: m.Meta.Rack, Build: m.Meta.Build,
			HTTP: net.JoinHostPort(m.Addr.String(), strconv.Itoa(m.Meta.Ports["http"])), Deploy: deploy[m.Name],
			Trust: trusted, Key: keys.Fingerprint(metaKey(m))}
		if trusted == TrustEnrolled {
			ms.Role, ms.DC, ms.Rack = roleOf(e), e.DC, e.Rack
		}
		if trusted != TrustEnrolled && m.Name != h.cfg.Name {
			ms.Error = untrustedWhy(trusted)
			out.Members[i] = ms
			continue
		}
		if m.Name == h.cfg.Name {
			s := h.sw.Status()
			ms.Status = &s
			out.Health = h.health(s)
			out.Members[i] = ms
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := h.now()
			s, err := fetchStatus(ctx, client, "http://"+ms.HTTP+"/v1/status")
			t1 := h.now()
			if err != nil {
				ms.Error = err.Error()
			} else {
				ms.Status = s
				if !s.Clock.IsZero() {
					ms.Skew = s.Clock.Sub(t0.Add(t1.Sub(t0) / 2))
				}
			}
			out.Members[i] = ms
		}()
	}
	wg.Wait()
	sort.Slice(out.Members, func(i, j int) bool { return out.Members[i].Name < out.Members[j].Name })
	for reason, n := range h.tally.Counts() {
		if strings.HasSuffix(reason, ":"+trust.Reason(trust.ErrUnknownVersion)) {
			out.Warnings = append(out.Warnings, fmt.Sprintf("refused %d %s statement(s) in a format version this build "+
				"cannot read: a member runs a newer scatter; upgrade this host", n, strings.TrimSuffix(reason, ":unknown-version")))
		}
	}
	sort.Strings(out.Warnings)
	if st := h.ml.Stats(); st.FormatRefused > 0 {
		out.Warnings = append(out.Warnings, fmt.Sprintf("refused %d gossip message(s) in format version(s) %v, which this build "+
			"cannot read: a member runs a newer scatter; upgrade this host", st.FormatRefused, st.FormatVersions))
	}
	return out
}

func untrustedWhy(st string) string {
	switch st {
	case TrustPending:
		return "pending: not on the roster; nothing it says counts (scatter hosts approve)"
	case TrustNewKey:
		return "NEW KEY: advertises a key the roster does not hold; not trusted until approved or revoked"
	}
	return "its advertisement does not verify against its roster key: ignored"
}

func fetchStatus(ctx context.Context, c *http.Client, url string) (*swarm.Status, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, errors.New(resp.Status)
	}
	var s swarm.Status
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&s); err != nil {
		return nil, err
	}
	return &s, nil
}

// ServeControl serves the control socket in the data directory until the
// host closes: GET /v1/status and POST /v1/announce.
func (h *Host) ServeControl() error {
	path := datadir.Data(h.cfg.DataDir).ControlSocket()
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return fmt.Errorf("control socket %s: another daemon is running on this data directory", path)
	}
	os.Remove(path) // a stale socket from a crash
	// Connecting needs write permission on the socket: with the usual
	// umask it is born 0755, so only the owner can connect even before the
	// chmod below sets it to 0660, group deployers (0600 without the group).
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	if err := h.access.share(path, 0o660); err != nil {
		if h.cfg.Deployers != "" {
			ln.Close()
			return fmt.Errorf("control socket: give it to the deployers group %s (the daemon's user must be a member): %w", h.access.group, err)
		}
		// The default group exists but is not the daemon's to give: keep
		// the socket to the daemon's user, as without the group.
		h.log.Warn("control socket: cannot give it to the deployers group; only root and the daemon's user may use it", "group", h.access.group, "err", err)
		h.access.gid = -1
		if err := h.access.share(path, 0o600); err != nil {
			ln.Close()
			return fmt.Errorf("control socket: %w", err)
		}
	}
	if h.access.gid < 0 {
		h.log.Info("control socket: the deployers group does not exist; only root and the daemon's user may use it", "group", h.access.group)
	}
	mux := http.NewServeMux()
	h.custodyRoutes(mux)
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(h.ClusterStatus(r.Context()))
	})
	mux.HandleFunc("GET /v1/ping", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(Ping{Name: h.cfg.Name, Boot: h.boot})
	})
	mux.HandleFunc("GET /v1/engine", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, h.sw.Engine().Status())
	})
	mux.HandleFunc("POST /v1/announce", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(io.LimitReader(r.Body, 4096))
		if err == nil {
			err = h.Publish(b)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /v1/command", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(io.LimitReader(r.Body, command.MaxSize+1))
		if err == nil {
			var to []string
			if t := r.URL.Query().Get("to"); t != "" {
				to = strings.Split(t, ",")
			}
			err = h.SendCommand(b, to)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /v1/acks", func(w http.ResponseWriter, r *http.Request) {
		deploy := r.URL.Query().Get("deploy")
		if deploy == "" {
			http.Error(w, "deploy= is required", http.StatusBadRequest)
			return
		}
		acks, cancel := h.Subscribe(deploy)
		defer cancel()
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(http.StatusOK)
		fl, _ := w.(http.Flusher)
		if fl != nil {
			fl.Flush()
		}
		enc := json.NewEncoder(w)
		for {
			select {
			case <-r.Context().Done():
				return
			case <-h.stop:
				return
			case a := <-acks:
				if err := enc.Encode(a); err != nil {
					return
				}
				if fl != nil {
					fl.Flush()
				}
			}
		}
	})
	mux.HandleFunc("POST /v1/deploy-report", func(w http.ResponseWriter, r *http.Request) {
		var rep DeployReport
		if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&rep); err != nil || rep.Repo == "" {
			http.Error(w, fmt.Sprintf("bad deploy report: %v", err), http.StatusBadRequest)
			return
		}
		h.ReportDeploy(rep)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /v1/roster", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(h.book.Raw())
	})
	mux.HandleFunc("POST /v1/roster", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(io.LimitReader(r.Body, trust.MaxRosterSize+1))
		if err == nil {
			err = h.SetRoster(b)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /v1/hosts", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(h.Hosts())
	})
	mux.HandleFunc("GET /v1/members", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(h.Targets(r.URL.Query().Get("repo")))
	})
	h.keyRoutes(mux)
	// Every request is attributed to the Unix user on the other end of the
	// socket (SO_PEERCRED) and refused unless root, the daemon's user or a
	// deployer.
	srv := &http.Server{Handler: h.access.guard(mux), ReadHeaderTimeout: 10 * time.Second, ConnContext: peerCred}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		<-h.stop
		srv.Close()
		os.Remove(path)
	}()
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			h.log.Error("control socket stopped", "err", err)
		}
	}()
	return nil
}

// Control is a client of a daemon's control socket.
type Control struct {
	path string
	c    *http.Client
}

// DialControl returns a client for the daemon serving dataDir.
func DialControl(dataDir string) *Control {
	path := datadir.Data(dataDir).ControlSocket()
	return &Control{path: path, c: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}}
}

func (c *Control) do(ctx context.Context, method, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://scatter"+path, body)
	if err != nil {
		return nil, err
	}
	resp, err := c.c.Do(req)
	if errors.Is(err, syscall.EACCES) {
		return nil, fmt.Errorf("control socket %s: permission denied: only root, the daemon's user and the deployers group may use it: %w", c.path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("no daemon answers on %s (is `scatter seed` running with this --data?): %w", c.path, err)
	}
	if resp.StatusCode >= 300 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		return nil, fmt.Errorf("daemon: %s", bytesTrim(msg))
	}
	return resp, nil
}

func bytesTrim(b []byte) string {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return string(b)
}

// Tracker is the tracker URL on the daemon's own metadata server, for
// stock BitTorrent clients.
func (c *Control) Tracker(ctx context.Context) (string, error) {
	s, err := c.Status(ctx)
	if err != nil {
		return "", err
	}
	for _, m := range s.Members {
		if m.Name == s.Self {
			return "http://" + m.HTTP + "/announce", nil
		}
	}
	return "", errors.New("the daemon does not list itself among the members")
}

// Status asks the daemon for the cluster status.
func (c *Control) Status(ctx context.Context) (*ClusterStatus, error) {
	resp, err := c.do(ctx, http.MethodGet, "/v1/status", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var s ClusterStatus
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return nil, fmt.Errorf("daemon status: %w", err)
	}
	return &s, nil
}

// Engine returns the local BitTorrent engine's state in anacrolix's words:
// each torrent's pieces and, per connection, choke and interest flags and
// requests in flight either way.
func (c *Control) Engine(ctx context.Context) (string, error) {
	resp, err := c.do(ctx, http.MethodGet, "/v1/engine", nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("daemon engine state: %w", err)
	}
	return string(b), nil
}

// ReportDeploy tells the daemon how a deploy run from this host goes, for
// its metrics (see DeployReport).
func (c *Control) ReportDeploy(ctx context.Context, r DeployReport) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	resp, err := c.do(ctx, http.MethodPost, "/v1/deploy-report", bytes.NewReader(b))
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// Announce hands a signed announcement to the daemon to publish.
func (c *Control) Announce(ctx context.Context, ann []byte) error {
	resp, err := c.do(ctx, http.MethodPost, "/v1/announce", bytes.NewReader(ann))
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// Target is a member as a deploy sees it: its labels, and what it runs of
// one repo as gossip last said.
type Target struct {
	Name   string          `json:"name"`
	Role   string          `json:"role"`
	DC     string          `json:"dc,omitempty"`
	Rack   string          `json:"rack,omitempty"`
	Deploy agent.RepoState `json:"deploy"`
	// Known is false when gossip has brought no deploy state for the
	// member yet.
	Known bool `json:"known"`
}

// Labels are what a scatter.yaml selector matches.
func (t Target) Labels() map[string]string {
	return map[string]string{"name": t.Name, "role": t.Role, "dc": t.DC, "rack": t.Rack}
}

// Targets lists the live enrolled members, by name, with the roster's
// labels and their state for repo. A pending host is never a target.
func (h *Host) Targets(repo string) []Target {
	states := h.DeployState(repo)
	var out []Target
	for _, m := range h.enrolled() {
		st, ok := states[m.Member.Name]
		out = append(out, Target{Name: m.Member.Name, Role: roleOf(m.Entry), DC: m.Entry.DC, Rack: m.Entry.Rack, Deploy: st, Known: ok})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Name is the daemon's member name: the controller name in commands.
func (h *Host) Name() string { return h.cfg.Name }

// ControlTransport carries a deploy's commands and acks through a
// daemon's control socket; it implements deploy.Transport.
type ControlTransport struct {
	C *Control
	// Errs receives transport errors of the ack stream (nil: dropped).
	Errs func(error)
}

// SendCommand hands a signed command to the daemon.
func (t ControlTransport) SendCommand(b []byte, to []string) error {
	path := "/v1/command"
	if len(to) > 0 {
		path += "?to=" + url.QueryEscape(strings.Join(to, ","))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := t.C.do(ctx, http.MethodPost, path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// Subscribe streams the daemon's acks for a deploy, reconnecting if the
// stream breaks, until cancel.
func (t ControlTransport) Subscribe(deploy string) (<-chan *command.Ack, func()) {
	ch := make(chan *command.Ack, 1024)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	go func() {
		first := true
		for ctx.Err() == nil {
			resp, err := t.C.do(ctx, http.MethodGet, "/v1/acks?deploy="+url.QueryEscape(deploy), nil)
			if first {
				close(ready)
				first = false
			}
			if err != nil {
				if t.Errs != nil && ctx.Err() == nil {
					t.Errs(err)
				}
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
				continue
			}
			dec := json.NewDecoder(resp.Body)
			for {
				var a command.Ack
				if err := dec.Decode(&a); err != nil {
					break
				}
				select {
				case ch <- &a:
				case <-ctx.Done():
				}
			}
			resp.Body.Close()
		}
	}()
	// Acks sent before the stream is up would be lost: wait for it.
	<-ready
	return ch, cancel
}

// Ping is the daemon's answer to a liveness check.
type Ping struct {
	Name string `json:"name"`
	// Boot is random per daemon start: a different Boot is a different
	// daemon, which knows nothing of the subscriptions of the last one.
	Boot string `json:"boot"`
}

// Ping checks that the daemon answers, within ctx.
func (c *Control) Ping(ctx context.Context) (Ping, error) {
	var p Ping
	resp, err := c.do(ctx, http.MethodGet, "/v1/ping", nil)
	if err != nil {
		return p, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&p); err != nil {
		return p, fmt.Errorf("daemon ping: %w", err)
	}
	return p, nil
}

// Liveness of the daemon as a deploy watches it: a ping every PingEvery,
// each given PingTimeout; the daemon is lost after LostAfter without an
// answer, or at once when its socket refuses connections (nobody
// listens: it died) or a different daemon answers (it restarted).
const (
	PingEvery   = 250 * time.Millisecond
	PingTimeout = 500 * time.Millisecond
	LostAfter   = 1500 * time.Millisecond
)

// ErrDaemonLost is what ControlTransport.Lost reports, wrapped.
var ErrDaemonLost = errors.New("lost the local daemon")

var _ deploy.Monitor = ControlTransport{}

// Lost watches the daemon (deploy.Monitor).
func (t ControlTransport) Lost(ctx context.Context) <-chan error {
	out := make(chan error, 1)
	go func() {
		var boot string
		lastOK := time.Now()
		tick := time.NewTicker(PingEvery)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			pctx, cancel := context.WithTimeout(ctx, PingTimeout)
			p, err := t.C.Ping(pctx)
			cancel()
			if ctx.Err() != nil {
				return
			}
			var lost error
			switch {
			case err == nil && boot != "" && p.Boot != boot:
				lost = fmt.Errorf("%w: the daemon on %s restarted (a new daemon knows nothing of this deploy)", ErrDaemonLost, t.C.path)
			case err == nil:
				boot, lastOK = p.Boot, time.Now()
			case errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT):
				lost = fmt.Errorf("%w: nothing listens on %s any more (the daemon died)", ErrDaemonLost, t.C.path)
			case time.Since(lastOK) >= LostAfter:
				lost = fmt.Errorf("%w: the daemon on %s has not answered for %v (it hangs, is stopped, or its socket is gone)",
					ErrDaemonLost, t.C.path, time.Since(lastOK).Round(100*time.Millisecond))
			}
			if lost != nil {
				out <- lost
				return
			}
		}
	}()
	return out
}

// Targets asks the daemon for the live members and their state of repo.
func (c *Control) Targets(ctx context.Context, repo string) ([]Target, error) {
	resp, err := c.do(ctx, http.MethodGet, "/v1/members?repo="+url.QueryEscape(repo), nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out []Target
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("daemon members: %w", err)
	}
	return out, nil
}

// Roster returns the signed roster the daemon holds (empty if none).
func (c *Control) Roster(ctx context.Context) ([]byte, error) {
	resp, err := c.do(ctx, http.MethodGet, "/v1/roster", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, trust.MaxRosterSize+1))
	if err != nil {
		return nil, fmt.Errorf("daemon roster: %w", err)
	}
	return b, nil
}

// SetRoster hands a deploy-signed roster to the daemon, which keeps and
// spreads it; an older one than the daemon holds is refused.
func (c *Control) SetRoster(ctx context.Context, raw []byte) error {
	resp, err := c.do(ctx, http.MethodPost, "/v1/roster", bytes.NewReader(raw))
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// Hosts asks the daemon for the roster's hosts and the pending members.
func (c *Control) Hosts(ctx context.Context) (*HostsView, error) {
	resp, err := c.do(ctx, http.MethodGet, "/v1/hosts", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var v HostsView
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return nil, fmt.Errorf("daemon hosts: %w", err)
	}
	return &v, nil
}
