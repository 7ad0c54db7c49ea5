package swarm

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"scatter/artifact"
)

// Property 1: with every host capped at the same upload rate, hosts get most
// of the release from each other: the origin uploads at most 1.5 copies.
func TestPeersShare(t *testing.T) {
	n := 20
	if testing.Short() {
		n = 8
	}
	origin := openStore(t)
	r1, _ := buildReleases(t, origin, 8<<20)
	full, err := MakeTorrent(origin, r1.sm, nil, Full)
	if err != nil {
		t.Fatal(err)
	}
	S := full.Layout.Length
	U := S / 2 // per-host upload: S/U = 2 s
	oe, err := NewEngine(EngineConfig{ListenAddr: "127.0.0.30:0", UploadRate: U})
	if err != nil {
		t.Fatal(err)
	}
	defer oe.Close()
	if _, err := oe.Add(origin, full.Layout, full.Info); err != nil {
		t.Fatal(err)
	}
	type host struct {
		e  *Engine
		st *artifact.Store
		x  *Transfer
	}
	hosts := make([]host, n)
	addrs := []string{oe.Addr()}
	for i := range hosts {
		e, err := NewEngine(EngineConfig{ListenAddr: fmt.Sprintf("127.0.0.%d:0", 31+i), UploadRate: U})
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		st := openStore(t)
		if err := st.PutManifest(r1.sm); err != nil {
			t.Fatal(err)
		}
		hosts[i] = host{e: e, st: st}
		addrs = append(addrs, e.Addr())
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, n)
	times := make([]time.Duration, n)
	for i := range hosts {
		x, err := hosts[i].e.Add(hosts[i].st, full.Layout, full.Info)
		if err != nil {
			t.Fatal(err)
		}
		hosts[i].x = x
		x.AddPeers(addrs)
		x.Download()
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = x.Wait(ctx)
			times[i] = time.Since(start)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("host %d: %v", i, err)
		}
	}
	for i := range hosts {
		if problems, err := artifact.Verify(context.Background(), hosts[i].st, r1.sm.Manifest); err != nil || len(problems) > 0 {
			t.Fatalf("host %d: %v %v", i, problems, err)
		}
	}
	last := time.Duration(0)
	for _, d := range times {
		last = max(last, d)
	}
	up := oe.Uploaded()
	t.Logf("%d hosts, S=%d, S/U=%.1fs: origin uploaded %.2f S; last host %.1fs (%.2f S/U)",
		n, S, float64(S)/float64(U), float64(up)/float64(S), last.Seconds(), last.Seconds()*float64(U)/float64(S))
	if float64(up) > 1.5*float64(S) {
		t.Fatalf("origin uploaded %.2f copies, want at most 1.5", float64(up)/float64(S))
	}
}
