package swarm

import (
	"context"
	"flag"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"
)

var metaRuns = flag.Int("meta.runs", 5, "fetches per case in BenchmarkMetadataUnderAbuse")

// BenchmarkMetadataUnderAbuse reports how long an honest host takes to get
// a release's manifest from the origin (capped at 1 MiB/s), the median of
// -meta.runs fetches, with no abuse and with an enrolled host abusing the
// metadata servers: dropping every answer from the origin midway as often
// as it may, and answering 503 to every request as a peer (the honest host
// then leaves the origin to it for metaOriginWait).
//
//	go test ./swarm -run XXX -bench MetadataUnderAbuse -benchtime 1x [-meta.runs 5]
func BenchmarkMetadataUnderAbuse(b *testing.B) {
	for _, abused := range []bool{false, true} {
		name := "honest"
		if abused {
			name = "abused"
		}
		b.Run(name, func(b *testing.B) {
			for range b.N {
				metaDelay(b, abused)
			}
		})
	}
}

func metaDelay(b *testing.B, abused bool) {
	c := newCluster(b)
	const abuser = "127.0.0.241"
	if abused {
		ln := metaAbuser(b, "127.0.0.242", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "busy", http.StatusServiceUnavailable)
		})
		c.extra = []Peer{{Name: "abuser", HTTP: abuser + ":9"}, {Name: "busybody", HTTP: ln}}
	}
	const upload = 1 << 20
	origin := c.start("origin", 240, true, upload)
	sm, _ := c.publish(genTree(b, 8<<20, false), "1")
	c.waitStaged(sm, []string{"origin"}, 60*time.Second)
	h := c.start("honest", 243, false, 0)
	path := "/v1/repos/mw/releases/" + sm.ID.String() + "/manifest"
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	if abused {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+origin.HTTPAddr()+path, nil)
				if resp, err := clientFrom(abuser).Do(req); err == nil {
					resp.Body.Close()
				}
				select {
				case <-ctx.Done():
				case <-time.After(5 * time.Millisecond):
				}
			}
		}()
	}
	defer func() { cancel(); wg.Wait() }()
	var took []time.Duration
	for range *metaRuns {
		start := time.Now()
		if err := h.fetcher.meta.fromPeers(path, func(r io.Reader) error { _, err := io.Copy(io.Discard, r); return err }); err != nil {
			b.Fatal(err)
		}
		took = append(took, time.Since(start))
		time.Sleep(time.Second) // past the honest host's own hold on the origin
	}
	slices.Sort(took)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(took[len(took)/2]), "median-ms")
	b.ReportMetric(ms(took[len(took)-1]), "max-ms")
}
