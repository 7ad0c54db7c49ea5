package membership

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// BenchmarkBroadcast measures how long one broadcast takes to reach every
// member of a 50-node in-process cluster (default LAN gossip tuning,
// encryption on, push/pull every 2s as startCluster sets): from Broadcast
// to the 49th delivery. Cluster start-up is excluded. Besides the mean
// (ms/op) it reports the median, the worst, and how many deliveries the
// push/pull repair made because gossip missed a member; those set the
// tail.
//
//	go test -run '^$' -bench 'Broadcast$' -benchtime 40x ./orchestrate/membership
func BenchmarkBroadcast(b *testing.B) {
	const n = 50
	var (
		mu      sync.Mutex
		pending = map[string]int{} // payload -> receivers still missing
		reached = map[string]chan struct{}{}
	)
	nodes, took := startCluster(b, n, Config{SecretKey: testKey}, nil)
	b.Logf("%d nodes converged in %v", n, took)
	for _, nd := range nodes {
		nd.rec.mu.Lock()
		nd.rec.onMsg = func(msg []byte) {
			mu.Lock()
			defer mu.Unlock()
			k := string(msg)
			pending[k]--
			if pending[k] == 0 {
				close(reached[k])
			}
		}
		nd.rec.mu.Unlock()
	}
	repaired := func() (r uint64) {
		for _, nd := range nodes {
			r += nd.Stats().Repaired
		}
		return r
	}
	repairedBefore := repaired()
	times := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		msg := fmt.Sprintf("bench %d %d", b.N, i)
		done := make(chan struct{})
		mu.Lock()
		pending[msg] = n - 1
		reached[msg] = done
		mu.Unlock()
		start := time.Now()
		if err := nodes[i%n].Broadcast([]byte(msg)); err != nil {
			b.Fatal(err)
		}
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			b.Fatalf("broadcast %d did not reach everyone", i)
		}
		times = append(times, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(times)
	var total time.Duration
	for _, d := range times {
		total += d
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(total)/float64(b.N), "ms/op")
	b.ReportMetric(ms(times[len(times)/2]), "p50-ms")
	b.ReportMetric(ms(times[len(times)-1]), "max-ms")
	b.ReportMetric(float64(repaired()-repairedBefore), "repaired")
}

// BenchmarkBroadcastLoss measures how often epidemic gossip alone misses a
// member with the default tuning, before the push/pull repair. Each op is one round in which each of 20
// members broadcasts one message; the metric is missed deliveries per
// (member, message) pair.
//
//	go test -run '^$' -bench BroadcastLoss -benchtime 20x ./orchestrate/membership
func BenchmarkBroadcastLoss(b *testing.B) {
	const n = 20
	// No push/pull during the measurement, so that its repair does not
	// hide what gossip missed.
	nodes, _ := startCluster(b, n, Config{SecretKey: testKey, PushPullInterval: time.Hour}, nil)
	b.ResetTimer()
	for r := range b.N {
		for _, nd := range nodes {
			if err := nd.Broadcast(fmt.Appendf(nil, "%d %d %s", b.N, r, nd.Name())); err != nil {
				b.Fatal(err)
			}
		}
		waitQuiet(b, nodes)
	}
	b.StopTimer()
	missed, pairs := 0, 0
	for r := range b.N {
		for _, nd := range nodes {
			for _, from := range nodes {
				if from != nd {
					pairs++
					if nd.rec.count(fmt.Sprintf("%d %d %s", b.N, r, from.Name())) == 0 {
						missed++
					}
				}
			}
		}
	}
	var recv, dups uint64
	for _, nd := range nodes {
		s := nd.Stats()
		recv, dups = recv+s.MessagesReceived, dups+s.Duplicates
	}
	b.ReportMetric(float64(missed)/float64(pairs), "missed/pair")
	b.ReportMetric(float64(recv)/float64(recv-dups), "copies/delivery")
}
