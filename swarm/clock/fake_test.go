package clock

import (
	"testing"
	"time"
)

func TestFakeFiresInOrder(t *testing.T) {
	start := time.Unix(1000, 0)
	f := NewFake(start)
	a := f.After(3 * time.Second)
	tk := f.NewTicker(time.Second)
	ran := make(chan time.Time, 1)
	tm := f.AfterFunc(2*time.Second, func() { ran <- f.Now() })
	stopped := f.AfterFunc(time.Second, func() { t.Error("a stopped timer ran") })
	if !stopped.Stop() || stopped.Stop() {
		t.Fatal("Stop: want true once, then false")
	}
	if f.Pending() != 3 {
		t.Fatalf("pending %d, want 3", f.Pending())
	}
	f.Advance(999 * time.Millisecond)
	select {
	case <-tk.C():
		t.Fatal("ticked early")
	case <-a:
		t.Fatal("After fired early")
	default:
	}
	f.Advance(time.Millisecond)
	if got := <-tk.C(); !got.Equal(start.Add(time.Second)) {
		t.Fatalf("tick at %v", got)
	}
	f.Advance(5 * time.Second) // ticks at 2..6 s: the reader misses all but one
	if got := <-a; !got.Equal(start.Add(3 * time.Second)) {
		t.Fatalf("After at %v", got)
	}
	if got := <-ran; got.Before(start.Add(2 * time.Second)) {
		t.Fatalf("AfterFunc saw %v", got)
	}
	if tm.Stop() {
		t.Fatal("Stop of a timer that ran: want false")
	}
	<-tk.C()
	select {
	case <-tk.C():
		t.Fatal("more than one missed tick was kept")
	default:
	}
	tk.Stop()
	if f.Pending() != 0 || !f.Now().Equal(start.Add(6*time.Second)) {
		t.Fatalf("pending %d at %v", f.Pending(), f.Now())
	}
}
