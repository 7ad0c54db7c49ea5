package swarm

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// A node that stops sending in the middle of an answer is given up on
// after metaIdleTimeout; one that sends slowly but steadily is not, even
// when the whole answer takes several times as long.
func TestGetGivesUpOnlyOnSilence(t *testing.T) {
	old := metaIdleTimeout
	metaIdleTimeout = 300 * time.Millisecond
	t.Cleanup(func() { metaIdleTimeout = old })

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		rc := http.NewResponseController(w)
		w.Header().Set("Content-Length", "100")
		w.WriteHeader(http.StatusOK)
		for i := range 10 {
			if req.URL.Path == "/stall" && i == 3 {
				<-req.Context().Done()
				return
			}
			w.Write([]byte(strings.Repeat("x", 10)))
			rc.Flush()
			time.Sleep(100 * time.Millisecond)
		}
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := &Node{ctx: ctx, http: newMetaClient()}
	addr := strings.TrimPrefix(srv.URL, "http://")

	get := func(path string) ([]byte, error) {
		var b []byte
		err := n.getMeta(addr, path, func(r io.Reader) (err error) {
			b, err = readAtMost(r, 1000)
			return err
		})
		return b, err
	}
	start := time.Now()
	b, err := get("/steady")
	if err != nil || len(b) != 100 {
		t.Fatalf("steady answer over %v: %d bytes, %v", time.Since(start), len(b), err)
	}
	start = time.Now()
	_, err = get("/stall")
	if err == nil || !strings.Contains(err.Error(), "nothing received") {
		t.Fatalf("stalled answer: err %v, want a give-up after silence", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("gave up after %v, want about %v", d, metaIdleTimeout)
	}
}

// A node asked for metadata it is receiving says busy (ask again), so that
// the asker waits for it instead of going to the origin; for anything else
// it does not hold it says not found.
func TestNotHeldWhileReceiving(t *testing.T) {
	n := &Node{}
	const path = "/v1/repos/mw/releases/ab/manifest"
	n.receiving.Store(path, true)
	for p, want := range map[string]int{path: http.StatusServiceUnavailable, "/v1/repos/mw/releases/cd/manifest": http.StatusNotFound} {
		rec := httptest.NewRecorder()
		n.notHeld(rec, httptest.NewRequest(http.MethodGet, p, nil), errors.New("not in store"))
		if rec.Code != want {
			t.Errorf("%s: %d, want %d", p, rec.Code, want)
		}
	}
}
