package hostcost

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// appUnit is one unit of the stand-in application's work: hashing this
// many bytes, about 50 µs of one core.
const appUnit = 16 << 10

// appEvery is how often the application reports its count.
const appEvery = 50 * time.Millisecond

// RunApp is the stand-in application (`scatter bench-app`): workers
// goroutines hash a buffer over and over,
// and every appEvery the total of units done so far is written to w as a
// line. It returns when ctx ends. Its throughput is what the machine gives
// it: on a host that runs nothing else, about workers cores' worth.
func RunApp(ctx context.Context, w io.Writer, workers int) error {
	var done atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, appUnit)
			for ctx.Err() == nil {
				sum := sha256.Sum256(buf)
				buf[0] ^= sum[0]
				done.Add(1)
			}
		}()
	}
	t := time.NewTicker(appEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return nil
		case <-t.C:
			if _, err := fmt.Fprintln(w, done.Load()); err != nil {
				return fmt.Errorf("bench-app: %w", err)
			}
		}
	}
}

// app is a running stand-in application, seen from the harness.
type app struct {
	cmd     *exec.Cmd
	mu      sync.Mutex
	samples []sample // every count it reported, in order
	exited  chan struct{}
}

// sample is the application's count and when it was reported.
type sample struct {
	at    time.Time
	count float64
}

// sample is the last count.
func (a *app) sample() sample {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.samples) == 0 {
		return sample{}
	}
	return a.samples[len(a.samples)-1]
}

// at is the count at t, interpolated between the reports around it.
func (a *app) at(t time.Time) sample {
	a.mu.Lock()
	defer a.mu.Unlock()
	i := sort.Search(len(a.samples), func(i int) bool { return !a.samples[i].at.Before(t) })
	switch {
	case len(a.samples) == 0:
		return sample{}
	case i == 0:
		return a.samples[0]
	case i == len(a.samples):
		return a.samples[i-1]
	}
	s0, s1 := a.samples[i-1], a.samples[i]
	f := t.Sub(s0.at).Seconds() / s1.at.Sub(s0.at).Seconds()
	return sample{t, s0.count + f*(s1.count-s0.count)}
}

// rate is the units per second between two samples.
func rate(s0, s1 sample) float64 {
	if d := s1.at.Sub(s0.at).Seconds(); d > 0 {
		return (s1.count - s0.count) / d
	}
	return 0
}

func (r *run) startApp(ctx context.Context) (*app, error) {
	cmd := exec.Command(r.cfg.Binary, "bench-app", "--workers", strconv.Itoa(r.cfg.AppWorkers))
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench-app: %w", err)
	}
	a := &app{cmd: cmd, exited: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			n, err := strconv.ParseInt(sc.Text(), 10, 64)
			if err == nil {
				a.mu.Lock()
				a.samples = append(a.samples, sample{time.Now(), float64(n)})
				a.mu.Unlock()
			}
		}
		cmd.Wait()
		close(a.exited)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for a.sample().count == 0 {
		if time.Now().After(deadline) || ctx.Err() != nil {
			a.stop()
			return nil, fmt.Errorf("bench-app reported nothing in 10 s")
		}
		time.Sleep(appEvery)
	}
	return a, nil
}

func (a *app) stop() {
	a.cmd.Process.Kill()
	<-a.exited
}

// alone measures the application running alone for d.
func (a *app) alone(ctx context.Context, d time.Duration) (float64, error) {
	s0 := a.sample()
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(d):
	}
	return rate(s0, a.sample()), nil
}

// appAloneWindow is how long the application runs alone, before and after
// the fetches.
const appAloneWindow = 3 * time.Second

// appLoad runs the stand-in application alone, then during a fetch by a
// default host and one by a host run with the share setting (shareFirst:
// in the other order), then alone again.
func (r *run) appLoad(ctx context.Context, dir string, shareFirst bool) (*AppRound, error) {
	a, err := r.startApp(ctx)
	if err != nil {
		return nil, err
	}
	defer a.stop()
	before, err := a.alone(ctx, appAloneWindow)
	if err != nil {
		return nil, err
	}
	var out AppRound
	runs := []struct {
		name  string
		extra []string
		into  *AppFetch
	}{{"default", nil, &out.Default}, {"share", r.cfg.Share, &out.Share}}
	if shareFirst {
		runs[0], runs[1] = runs[1], runs[0]
	}
	for _, x := range runs {
		r.settle(ctx)
		var end time.Time
		f, err := r.fetch(ctx, filepath.Join(dir, "app-"+x.name), func() { end = time.Now() }, x.extra...)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", x.name, err)
		}
		// The fetch's own span: the host's last attempt, from its start.
		start := end.Add(-time.Duration(f.Wall * float64(time.Second)))
		*x.into = AppFetch{Fetch: f, App: rate(a.at(start), a.at(end))}
	}
	after, err := a.alone(ctx, appAloneWindow)
	if err != nil {
		return nil, err
	}
	out.Alone = (before + after) / 2
	out.Default.Relative = ratio(out.Default.App, out.Alone)
	out.Share.Relative = ratio(out.Share.App, out.Alone)
	return &out, nil
}
