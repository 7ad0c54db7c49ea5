package swarm

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"scatter/swarm/clock"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A node that sends less than metaMinRate over a metaRateWindow — silent,
// or trickling a byte every 9 s — is given up on after that window; one
// that sends slowly but steadily is not, even when the whole answer takes
// many windows. The asker runs on a fake clock: the test moves it between
// the server's chunks.
func TestGetGivesUpOnSilenceAndTrickle(t *testing.T) {
	const chunk = metaMinRate * int(metaRateWindow/time.Second) // one window's minimum
	next := make(chan int)                                      // the server sends this many bytes, or falls silent (0)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		rc := http.NewResponseController(w)
		w.Header().Set("Content-Length", strconv.Itoa(10*chunk))
		w.WriteHeader(http.StatusOK)
		rc.Flush()
		sent := 0
		for sent < 10*chunk {
			select {
			case k := <-next:
				if k == 0 {
					<-req.Context().Done()
					return
				}
				w.Write(bytes.Repeat([]byte("x"), k))
				rc.Flush()
				sent += k
			case <-req.Context().Done():
				return
			}
		}
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clk := clock.NewFake(time.Now())
	n := &metaClient{ctx: ctx, http: metaHTTP(netip.Addr{}), clock: clk}
	addr := strings.TrimPrefix(srv.URL, "http://")

	got := make(chan int, 100) // bytes read so far, after each read returns
	var total int
	get := func() <-chan error {
		errc := make(chan error, 1)
		total = 0
		go func() {
			errc <- n.get(addr, "/", func(r io.Reader) error {
				buf, total := make([]byte, 64<<10), 0
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
	// send gives the asker k bytes and waits until it has read them, then
	// lets 9/10 of a window pass.
	send := func(k int) {
		select {
		case next <- k:
		case <-time.After(30 * time.Second): // a deadline for a hang, not a measure
			t.Fatalf("the server no longer takes bytes: the asker gave up on an answer of %d bytes so far", total)
		}
		for want := total + k; total < want; total = <-got {
		}
		clk.Advance(metaRateWindow * 9 / 10)
	}
	errc := get()
	for range 10 {
		send(chunk)
	}
	if err := <-errc; err != nil {
		t.Fatalf("steady answer over %v: %v", 9*metaRateWindow, err)
	}

	errc = get()
	send(chunk)
	select {
	case err := <-errc:
		t.Fatalf("gave up within the first window: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	next <- 0 // silence from here
	clk.Advance(metaRateWindow / 10)
	clk.Advance(metaRateWindow) // the second window passes with nothing
	if err := <-errc; err == nil || !strings.Contains(err.Error(), "bytes/s") {
		t.Fatalf("silent answer: err %v, want a give-up", err)
	}

	errc = get()
	send(1)
	send(1) // a byte every 9 s: the first window ends with 2 bytes
	if err := <-errc; err == nil || !strings.Contains(err.Error(), "bytes/s") {
		t.Fatalf("trickling answer: err %v, want a give-up", err)
	}
}

// A node asked for metadata it is receiving says busy (ask again), so that
// the asker waits for it instead of going to the origin; for anything else
// it does not hold it says not found.
func TestNotHeldWhileReceiving(t *testing.T) {
	n := &metaServer{}
	const path = "/v1/repos/mw/releases/ab/manifest"
	defer n.receiving(path)()
	for p, want := range map[string]int{path: http.StatusServiceUnavailable, "/v1/repos/mw/releases/cd/manifest": http.StatusNotFound} {
		rec := httptest.NewRecorder()
		n.notHeld(rec, httptest.NewRequest(http.MethodGet, p, nil), errors.New("not in store"))
		if rec.Code != want {
			t.Errorf("%s: %d, want %d", p, rec.Code, want)
		}
	}
}
