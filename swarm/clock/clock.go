// Package clock is the one source of time for package swarm. The swarm's
// decisions — when a fetch counts as stalled, when it reconnects, when it
// falls back to the origin, when a failed fetch is tried again, how long a
// metadata slot is held, when the origin reconsiders its uploads — read
// this clock, so tests drive them in virtual time (Fake) instead of waiting
// real seconds.
//
// Two things stay on the wall clock, and the interface says so: deadlines
// on sockets, which the kernel enforces (IODeadline), and waiting for the
// BitTorrent engine's own goroutines to catch up (Poll), which run in real
// time whatever the test's clock says.
package clock

import (
	"context"
	"time"
)

// Clock tells the time and schedules wake-ups. Implementations are safe for
// concurrent use.
type Clock interface {
	Now() time.Time
	Since(t time.Time) time.Duration
	// After delivers the time on the channel once d has passed.
	After(d time.Duration) <-chan time.Time
	// NewTicker delivers the time every d, dropping ticks a slow reader
	// misses, as time.Ticker does.
	NewTicker(d time.Duration) Ticker
	// AfterFunc calls f in its own goroutine once d has passed.
	AfterFunc(d time.Duration, f func()) Timer
	// IODeadline is a socket deadline d from now, on the wall clock.
	IODeadline(d time.Duration) time.Time
	// Poll calls done every interval of real time until it returns true
	// (true), limit passes (limit 0: no limit) or ctx ends (false).
	Poll(ctx context.Context, every, limit time.Duration, done func() bool) bool
}

// Ticker is a running ticker.
type Ticker interface {
	C() <-chan time.Time
	Stop()
}

// Timer is a pending AfterFunc.
type Timer interface {
	// Stop cancels the call; false if it already ran or was stopped.
	Stop() bool
	// Reset schedules the call d from now, whether or not it ran; false if
	// it had already run or been stopped.
	Reset(d time.Duration) bool
}

// Real is the wall clock.
type Real struct{}

var _ Clock = Real{}

func (Real) Now() time.Time                         { return time.Now() }
func (Real) Since(t time.Time) time.Duration        { return time.Since(t) }
func (Real) After(d time.Duration) <-chan time.Time { return time.After(d) }
func (Real) NewTicker(d time.Duration) Ticker       { return realTicker{time.NewTicker(d)} }
func (Real) AfterFunc(d time.Duration, f func()) Timer {
	return time.AfterFunc(d, f)
}
func (Real) IODeadline(d time.Duration) time.Time { return time.Now().Add(d) }
func (Real) Poll(ctx context.Context, every, limit time.Duration, done func() bool) bool {
	return poll(ctx, every, limit, done)
}

type realTicker struct{ t *time.Ticker }

func (t realTicker) C() <-chan time.Time { return t.t.C }
func (t realTicker) Stop()               { t.t.Stop() }

// poll is Poll on the wall clock, for both clocks: what it waits for runs
// in real time.
func poll(ctx context.Context, every, limit time.Duration, done func() bool) bool {
	deadline := time.Now().Add(limit)
	for {
		if done() {
			return true
		}
		if limit > 0 && time.Now().After(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(every):
		}
	}
}
