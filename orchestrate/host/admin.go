package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// DefaultAdminAddr is where `scatter seed` serves /metrics, /healthz and
// /readyz unless told otherwise: loopback only, so that exposing them is a
// decision (--admin-addr 10.0.0.5:7948 for a scraper elsewhere).
const DefaultAdminAddr = "127.0.0.1:7948"

// ServeAdmin serves the admin listener on addr until the host closes:
//
//	GET /metrics  the metrics in g, Prometheus text format
//	GET /healthz  200 while the daemon runs (liveness)
//	GET /readyz   200 when Health is ready, else 503; both with Health as JSON
//
// It returns the address it listens on (addr may have port 0).
func (h *Host) ServeAdmin(addr string, g prometheus.Gatherer) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("admin listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorLog: slogPrinter{h}}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		hl := h.Health()
		w.Header().Set("Content-Type", "application/json")
		if !hl.Ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		json.NewEncoder(w).Encode(hl)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	h.wg.Add(2)
	go func() {
		defer h.wg.Done()
		<-h.stop
		srv.Close()
	}()
	go func() {
		defer h.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			h.log.Error("admin listener stopped", "err", err)
		}
	}()
	return ln.Addr().String(), nil
}

// slogPrinter hands promhttp's errors to the host's log.
type slogPrinter struct{ h *Host }

func (p slogPrinter) Println(v ...any) { p.h.log.Warn("metrics", "err", fmt.Sprint(v...)) }

// Run is the daemon, `scatter seed`: it starts a host with cfg, serves its
// control socket and, unless adminAddr is "", its admin listener with a
// registry of its own (the host's metrics, the Go runtime's and the
// process's), calls started once everything listens, and runs until ctx
// ends. It then leaves the cluster.
func Run(ctx context.Context, cfg Config, adminAddr string, started func(h *Host, admin string)) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg.Metrics = reg
	h, err := Start(ctx, cfg)
	if err != nil {
		return err
	}
	if err := h.ServeControl(); err != nil {
		h.Close()
		return err
	}
	admin := ""
	if adminAddr != "" {
		if admin, err = h.ServeAdmin(adminAddr, reg); err != nil {
			h.Close()
			return err
		}
	}
	if started != nil {
		started(h, admin)
	}
	<-ctx.Done()
	h.log.Info("leaving the cluster")
	return h.Close()
}
