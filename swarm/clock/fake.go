package clock

import (
	"context"
	"sort"
	"sync"
	"time"
)

// Fake is a clock that moves only when told (Advance). Tests give it to a
// node to cross stall, retry and fallback thresholds without waiting for
// them. IODeadline and Poll stay on the wall clock (see the package doc).
type Fake struct {
	mu      sync.Mutex
	now     time.Time
	waiters []*waiter
}

var _ Clock = (*Fake)(nil)

type waiter struct {
	at     time.Time
	period time.Duration  // tickers: > 0
	ch     chan time.Time // After and tickers
	fn     func()         // AfterFunc
	done   bool           // fired (one-shot) or stopped
}

// NewFake returns a fake clock reading start.
func NewFake(start time.Time) *Fake { return &Fake{now: start} }

func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *Fake) Since(t time.Time) time.Duration { return f.Now().Sub(t) }

// add schedules w d from now.
func (f *Fake) add(w *waiter, d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w.at = f.now.Add(max(d, 0))
	f.waiters = append(f.waiters, w)
}

func (f *Fake) After(d time.Duration) <-chan time.Time {
	w := &waiter{ch: make(chan time.Time, 1)}
	f.add(w, d)
	return w.ch
}

func (f *Fake) NewTicker(d time.Duration) Ticker {
	if d <= 0 {
		panic("clock: non-positive ticker interval")
	}
	w := &waiter{period: d, ch: make(chan time.Time, 1)}
	f.add(w, d)
	return &fakeTicker{f: f, w: w}
}

func (f *Fake) AfterFunc(d time.Duration, fn func()) Timer {
	w := &waiter{fn: fn}
	f.add(w, d)
	return &fakeTimer{f: f, w: w}
}

func (f *Fake) IODeadline(d time.Duration) time.Time { return time.Now().Add(d) }

func (f *Fake) Poll(ctx context.Context, every, limit time.Duration, done func() bool) bool {
	return poll(ctx, every, limit, done)
}

// Advance moves the clock forward by d, firing in order of their times
// every After, tick and AfterFunc that falls due on the way.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	end := f.now.Add(d)
	for {
		w := f.nextLocked(end)
		if w == nil {
			break
		}
		f.now = w.at
		switch {
		case w.period > 0:
			select {
			case w.ch <- w.at:
			default: // a slow reader misses the tick, as with time.Ticker
			}
			w.at = w.at.Add(w.period)
		case w.fn != nil:
			w.done = true
			go w.fn()
		default:
			w.done = true
			w.ch <- w.at
		}
	}
	f.now = end
	f.compactLocked()
	f.mu.Unlock()
}

// Pending counts the wake-ups scheduled and not yet fired or stopped: a
// test waits for a loop to arm its timer before it advances.
func (f *Fake) Pending() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, w := range f.waiters {
		if !w.done {
			n++
		}
	}
	return n
}

func (f *Fake) nextLocked(end time.Time) *waiter {
	var next *waiter
	for _, w := range f.waiters {
		if !w.done && !w.at.After(end) && (next == nil || w.at.Before(next.at)) {
			next = w
		}
	}
	return next
}

func (f *Fake) compactLocked() {
	live := f.waiters[:0]
	for _, w := range f.waiters {
		if !w.done {
			live = append(live, w)
		}
	}
	clear(f.waiters[len(live):])
	f.waiters = live
	sort.SliceStable(f.waiters, func(i, j int) bool { return f.waiters[i].at.Before(f.waiters[j].at) })
}

type fakeTicker struct {
	f *Fake
	w *waiter
}

func (t *fakeTicker) C() <-chan time.Time { return t.w.ch }
func (t *fakeTicker) Stop() {
	t.f.mu.Lock()
	t.w.done = true
	t.f.mu.Unlock()
}

type fakeTimer struct {
	f *Fake
	w *waiter
}

func (t *fakeTimer) Reset(d time.Duration) bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	was := !t.w.done
	t.w.done, t.w.at = false, t.f.now.Add(max(d, 0))
	for _, w := range t.f.waiters {
		if w == t.w {
			return was
		}
	}
	t.f.waiters = append(t.f.waiters, t.w)
	return was
}

func (t *fakeTimer) Stop() bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	was := !t.w.done
	t.w.done = true
	return was
}
