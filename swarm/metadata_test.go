package swarm

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"scatter/swarm/clock"
	"strings"
	"testing"
	"time"
)

// A node that stops sending in the middle of an answer is given up on
// after metaIdleTimeout of silence; one that sends slowly but steadily is
// not, even when the whole answer takes several times as long. The asker
// runs on a fake clock: the test moves it between the server's chunks.
func TestGetGivesUpOnlyOnSilence(t *testing.T) {
	next := make(chan bool) // the server sends a chunk (true) or falls silent (false)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		rc := http.NewResponseController(w)
		w.Header().Set("Content-Length", "100")
		w.WriteHeader(http.StatusOK)
		rc.Flush()
		for range 10 {
			select {
			case more := <-next:
				if !more {
					<-req.Context().Done()
					return
				}
			case <-req.Context().Done():
				return
			}
			w.Write([]byte(strings.Repeat("x", 10)))
			rc.Flush()
		}
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clk := clock.NewFake(time.Now())
	n := &Node{ctx: ctx, http: newMetaClient(), cfg: Config{Clock: clk}}
	addr := strings.TrimPrefix(srv.URL, "http://")

	got := make(chan int, 100) // bytes read so far, after each read returns
	get := func() <-chan error {
		errc := make(chan error, 1)
		go func() {
			errc <- n.getMeta(addr, "/", func(r io.Reader) error {
				buf, total := make([]byte, 100), 0
				for {
					k, err := r.Read(buf)
					if total += k; k > 0 {
						got <- total
					}
					if err == io.EOF {
						return nil
					} else if err != nil {
						return err
					}
				}
			})
		}()
		return errc
	}
	// send gives the asker one chunk and waits until it has read it (and
	// so restarted its idle timer), then lets most of the timeout pass.
	send := func(i int) {
		next <- true
		for total := 0; total < 10*(i+1); total = <-got {
		}
		clk.Advance(metaIdleTimeout * 9 / 10)
	}
	errc := get()
	for i := range 10 {
		send(i)
	}
	if err := <-errc; err != nil {
		t.Fatalf("steady answer over %v of silence-free time: %v", 9*metaIdleTimeout, err)
	}
	errc = get()
	for i := range 3 {
		send(i)
	}
	next <- false // 9/10 of the timeout has passed since the last byte
	select {
	case err := <-errc:
		t.Fatalf("gave up before metaIdleTimeout of silence: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	clk.Advance(metaIdleTimeout / 10)
	if err := <-errc; err == nil || !strings.Contains(err.Error(), "nothing received") {
		t.Fatalf("stalled answer: err %v, want a give-up after silence", err)
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
