package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"scatter/orchestrate/membership"
)

// ErrNoClusterKey is Validate's answer to a host with no gossip key.
var ErrNoClusterKey = errors.New("host: a cluster key is required: it encrypts gossip and keeps strangers out " +
	"(make one with: umask 077; head -c 32 /dev/urandom | base64 > cluster.key; then --cluster-key cluster.key)")

// ReloadClusterKey reads Config.ClusterKeyFile again and makes its keys
// the gossip keys: the first line is sent under, the others accepted. It
// is how a key rotates without downtime (docs/operations.md): each step of
// the rotation is an edit of the file on every host and a reload.
func (h *Host) ReloadClusterKey() (installed int, err error) {
	if h.cfg.ClusterKeyFile == "" {
		return 0, errors.New("host: no cluster key file to reload (the daemon was started without --cluster-key)")
	}
	primary, others, err := membership.LoadKeyFile(h.cfg.ClusterKeyFile)
	if err != nil {
		return 0, err
	}
	if err := h.ml.SetKeys(primary, others); err != nil {
		return 0, fmt.Errorf("reload cluster key: %w", err)
	}
	_, installed = h.ml.Keys()
	h.log.Info("cluster key reloaded", "file", h.cfg.ClusterKeyFile, "keys", installed)
	return installed, nil
}

// keyRoutes adds the control socket's cluster key commands:
// POST /v1/cluster-key/reload.
func (h *Host) keyRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/cluster-key/reload", func(w http.ResponseWriter, r *http.Request) {
		n, err := h.ReloadClusterKey()
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]int{"keys": n})
	})
}

// ReloadClusterKey has the daemon read its cluster key file again
// (Host.ReloadClusterKey) and returns how many keys it now accepts.
func (c *Control) ReloadClusterKey(ctx context.Context) (int, error) {
	resp, err := c.do(ctx, http.MethodPost, "/v1/cluster-key/reload", nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var out struct{ Keys int }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return 0, fmt.Errorf("reload cluster key: %w", err)
	}
	return out.Keys, nil
}

// dataPlaneClient is an HTTP client for other hosts' metadata servers. It
// dials from this host's bind address: they let in hosts by address.
func (h *Host) dataPlaneClient(timeout time.Duration) *http.Client {
	d := &net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(h.cfg.BindAddr)}}
	return &http.Client{Timeout: timeout, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
}
