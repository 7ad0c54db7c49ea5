package rollout

import (
	"fmt"
	"testing"
	"time"
)

// bytesIn hands out fuzz input a byte at a time, zeros when it runs out.
type bytesIn struct{ b []byte }

func (r *bytesIn) next() int {
	if len(r.b) == 0 {
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return int(c)
}

// FuzzMachine drives a Machine with a plan and a sequence of inputs read
// from the fuzz data, then lets time run out, and checks that it never
// panics, always ends, emits Done exactly once and nothing after it, and
// keeps the invariants of checkTrace.
func FuzzMachine(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{8, 2, 0x25, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{6, 1, 0x02, 0x01, 1, 0, 0, 0xff, 0, 1, 3, 4, 30, 0, 0, 7, 0, 2, 1, 6})
	f.Add([]byte{5, 0, 0x83, 0x00, 2, 1, 3, 0, 1, 1, 5, 200, 0, 2, 0, 6, 0, 3, 2, 1, 0, 9})
	f.Add([]byte{7, 3, 0x01, 0x02, 3, 0, 4, 0x80, 4, 10, 0, 3, 1, 1, 4, 40, 0, 4, 0, 6, 4, 90})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := &bytesIn{data}
		n := 1 + r.next()%8
		p := Plan{
			To:            "new",
			Hosts:         hostNames(n),
			From:          map[string]string{},
			Canary:        r.next() % 4,
			RetryEvery:    2 * time.Second,
			StageTimeout:  20 * time.Second,
			ActionTimeout: 10 * time.Second,
		}
		b := r.next()
		p.Batch = Size{N: b % 5, Percent: b&0x80 != 0}
		if p.Batch.Percent {
			p.Batch.N = (b % 5) * 25
		}
		l := r.next()
		p.FailureLimit = Size{N: l % 3, Percent: l&0x80 != 0}
		if p.FailureLimit.Percent {
			p.FailureLimit.N = (l % 3) * 30
		}
		flags := r.next()
		if flags&1 != 0 {
			p.Observe = 15 * time.Second
		}
		if flags&2 != 0 {
			p.OnAbort = OnAbortHalt
		}
		if flags&4 != 0 {
			p.SkipStage = true
		}
		for i, h := range p.Hosts {
			switch (flags>>3 + i) % 4 {
			case 0:
				p.From[h] = "old"
			case 1:
				p.From[h] = "older"
			case 2:
				p.From[h] = "old"
			case 3: // no previous release
			}
		}
		m, err := New(p)
		if err != nil {
			t.Fatalf("New: %v", err)
		}

		now := epoch
		var log []Action
		abortAt := -1
		sent := map[int][]string{}
		var steps []int
		emit := func(acts []Action) {
			for _, a := range acts {
				if a.Kind.ToHosts() && !a.Resend {
					sent[a.Step] = a.Hosts
					steps = append(steps, a.Step)
				}
			}
			log = append(log, acts...)
		}
		ack := func(op int) {
			step, host := 1+r.next()%10, fmt.Sprintf("h%d", 1+r.next()%9)
			if len(steps) > 0 && op%3 != 0 {
				step = steps[len(steps)-1-r.next()%len(steps)]
				if hs := sent[step]; len(hs) > 0 {
					host = hs[r.next()%len(hs)]
				}
			}
			emit(m.Ack(now, Ack{Host: host, Step: step, OK: op%5 != 0, Error: "bad"}))
		}
		emit(m.Start(now))
		for len(r.b) > 0 {
			switch op := r.next(); op % 8 {
			case 0, 1, 2, 3:
				ack(op)
			case 4, 5:
				now = now.Add(time.Duration(r.next()%40) * 500 * time.Millisecond)
				emit(m.Tick(now))
			case 6:
				if abortAt < 0 {
					abortAt = len(log)
				}
				emit(m.Abort(now))
			case 7:
				emit(m.Start(now))
			}
		}
		// Let every timeout pass: the deploy must end.
		for i := 0; i < 4*n+10; i++ {
			if _, done := m.Done(); done {
				break
			}
			now = now.Add(time.Minute)
			emit(m.Tick(now))
		}
		if _, done := m.Done(); !done {
			t.Fatalf("not done after all timeouts passed")
		}
		for _, step := range steps {
			for _, h := range sent[step] {
				if a := m.Ack(now, Ack{Host: h, Step: step, OK: true}); a != nil {
					t.Fatalf("Ack after Done returned %v", a)
				}
			}
		}
		if m.Tick(now.Add(time.Hour)) != nil || m.Abort(now) != nil || m.Start(now) != nil {
			t.Fatalf("input after Done returned actions")
		}
		checkTrace(t, m, log, abortAt)
	})
}
