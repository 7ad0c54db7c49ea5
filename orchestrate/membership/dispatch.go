package membership

import "sync"

// dispatcher runs callbacks one at a time, in order, on its own goroutine,
// so that memberlist's goroutines never wait for application code and
// application code never runs while memberlist holds its locks (memberlist
// calls its event delegate with its node lock held; a callback that called
// back into memberlist from there would deadlock).
//
// The queue of events is unbounded for membership events, which churn
// bounds, and bounded by max for message and state events, which the
// network controls.
type dispatcher struct {
	max int

	mu       sync.Mutex
	queue    []func() // pending; queue[head:] is live
	head     int
	bounded  int // pending events that count against max
	isBound  []bool
	closed   bool
	wake     chan struct{} // capacity 1: "the queue may be non-empty"
	finished chan struct{} // closed when run returns
}

func newDispatcher(max int) *dispatcher {
	d := &dispatcher{
		max:      max,
		wake:     make(chan struct{}, 1),
		finished: make(chan struct{}),
	}
	go d.run()
	return d
}

// push queues f. A bounded event is refused when max bounded events are
// already waiting; push reports whether f was queued. It never blocks.
func (d *dispatcher) push(f func(), bounded bool) bool {
	d.mu.Lock()
	if d.closed || (bounded && d.bounded >= d.max) {
		d.mu.Unlock()
		return false
	}
	d.queue = append(d.queue, f)
	d.isBound = append(d.isBound, bounded)
	if bounded {
		d.bounded++
	}
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
	return true
}

// next pops the oldest event, or reports that there is none or that the
// dispatcher is closed.
func (d *dispatcher) next() (f func(), ok, closed bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, false, true
	}
	if d.head == len(d.queue) {
		d.queue, d.isBound, d.head = d.queue[:0], d.isBound[:0], 0
		return nil, false, false
	}
	f = d.queue[d.head]
	if d.isBound[d.head] {
		d.bounded--
	}
	d.queue[d.head] = nil
	d.head++
	// Let the garbage collector have a long-drained prefix back.
	if d.head > 1024 && d.head*2 > len(d.queue) {
		n := copy(d.queue, d.queue[d.head:])
		copy(d.isBound, d.isBound[d.head:])
		clear(d.queue[n:])
		d.queue, d.isBound, d.head = d.queue[:n], d.isBound[:n], 0
	}
	return f, true, false
}

func (d *dispatcher) run() {
	defer close(d.finished)
	for {
		f, ok, closed := d.next()
		if closed {
			return
		}
		if ok {
			f()
			continue
		}
		<-d.wake
	}
}

// close discards pending events and stops the goroutine after the running
// callback, if any, returns. It does not wait, so a callback may call it.
func (d *dispatcher) close() {
	d.mu.Lock()
	d.closed = true
	d.queue, d.isBound, d.head, d.bounded = nil, nil, 0, 0
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}
