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
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"scatter/orchestrate/agent"
	"scatter/swarm"
)

// ControlSocket is the name of the control socket in the data directory.
// Only the daemon's user may connect to it (mode 0600): it can publish.
const ControlSocket = "control.sock"

// ClusterStatus is what `scatter status` shows: every member as gossip sees
// it, with the status each reports over its metadata server.
type ClusterStatus struct {
	Self    string         `json:"self"`
	Members []MemberStatus `json:"members"`
}

// MemberStatus is one member's entry.
type MemberStatus struct {
	Name   string        `json:"name"`
	Addr   string        `json:"addr"`
	HTTP   string        `json:"http"` // metadata server and tracker, ip:port
	Role   string        `json:"role"`
	DC     string        `json:"dc,omitempty"`
	Rack   string        `json:"rack,omitempty"`
	Error  string        `json:"error,omitempty"` // why its status could not be read
	Status *swarm.Status `json:"status,omitempty"`
	// Deploy is what runs on the member, per repo, as gossip last said.
	Deploy []agent.RepoState `json:"deploy,omitempty"`
}

// ClusterStatus asks every live member for its status, in parallel, each
// with a short deadline: an unreachable member is reported, not waited for.
func (h *Host) ClusterStatus(ctx context.Context) ClusterStatus {
	members := h.ml.Members()
	out := ClusterStatus{Self: h.cfg.Name, Members: make([]MemberStatus, len(members))}
	client := &http.Client{Timeout: 2 * time.Second}
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
		ms := MemberStatus{Name: m.Name, Addr: m.Addr.String(), Role: m.Meta.Role, DC: m.Meta.DC, Rack: m.Meta.Rack,
			HTTP: net.JoinHostPort(m.Addr.String(), strconv.Itoa(m.Meta.Ports["http"])), Deploy: deploy[m.Name]}
		if m.Name == h.cfg.Name {
			s := h.sw.Status()
			ms.Status = &s
			out.Members[i] = ms
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := fetchStatus(ctx, client, "http://"+ms.HTTP+"/v1/status")
			if err != nil {
				ms.Error = err.Error()
			} else {
				ms.Status = s
			}
			out.Members[i] = ms
		}()
	}
	wg.Wait()
	sort.Slice(out.Members, func(i, j int) bool { return out.Members[i].Name < out.Members[j].Name })
	return out
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
	path := filepath.Join(h.cfg.DataDir, ControlSocket)
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return fmt.Errorf("control socket %s: another daemon is running on this data directory", path)
	}
	os.Remove(path) // a stale socket from a crash
	// Connecting needs write permission on the socket: with the usual
	// umask it is born 0755, so only the owner can connect even before the
	// chmod below tightens it to 0600.
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("control socket: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(h.ClusterStatus(r.Context()))
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
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
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
	path := filepath.Join(dataDir, ControlSocket)
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

// Announce hands a signed announcement to the daemon to publish.
func (c *Control) Announce(ctx context.Context, ann []byte) error {
	resp, err := c.do(ctx, http.MethodPost, "/v1/announce", bytes.NewReader(ann))
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}
