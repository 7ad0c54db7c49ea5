package swarm

import (
	"context"
	"sync"
	"testing"
	"time"
)

// Turns go first come, first served; a waiter that gives up leaves the
// queue, and one that gives up as its turn arrives passes the turn on.
func TestTurnsAreFIFO(t *testing.T) {
	var tr turns
	if err := tr.take(context.Background()); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var order []int
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr.take(context.Background())
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			tr.give()
		}()
		// Let each waiter queue before the next.
		for {
			tr.mu.Lock()
			n := len(tr.queue)
			tr.mu.Unlock()
			if n == i+1 {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := tr.take(ctx); err == nil {
		t.Fatal("took a busy turn with a cancelled context")
	}
	tr.give()
	wg.Wait()
	for i, v := range order {
		if v != i {
			t.Fatalf("turns out of order: %v", order)
		}
	}
	if tr.busy || len(tr.queue) != 0 {
		t.Fatalf("turns left busy=%v queue=%d", tr.busy, len(tr.queue))
	}
}
