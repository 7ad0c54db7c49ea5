package swarm

import (
	"errors"
	"log/slog"
	"testing"
	"time"

	"scatter/artifact/core"
)

// The registry walks a release through its states as the repo's fetch loop
// drives it: Queued on announcement, Fetching when the loop takes it,
// Failed with a retry time, Fetching again once that time is due, Staged.
// It keeps at most Keep releases' announcements: an older one arriving
// late is refused, and so is one it already knows. No fetch, no network:
// the loop's calls are made by hand, on a fixed clock.
func TestRegistryStatesAndRetention(t *testing.T) {
	g := newRegistry(t.TempDir(), nil, 2, slog.New(slog.DiscardHandler))
	r, opened, err := g.open("mw")
	if err != nil || !opened {
		t.Fatalf("open: opened %v, err %v", opened, err)
	}
	if again, opened, err := g.open("mw"); err != nil || opened || again != r {
		t.Fatalf("second open: opened %v, err %v, same repo %v", opened, err, again == r)
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ann := func(i byte) *Announcement {
		return &Announcement{Repo: "mw", Version: string('0' + i), Release: core.ReleaseID{i}, Time: t0.Add(time.Duration(i) * time.Hour)}
	}
	a1, a2 := ann(1), ann(2)
	for _, a := range []*Announcement{a2, a1} {
		if !g.add(r, a, nil) {
			t.Fatalf("release %s refused", a.Version)
		}
	}
	if g.add(r, ann(0), nil) {
		t.Error("a release older than the newest Keep was queued")
	}
	if g.add(r, a1, nil) {
		t.Error("a release already known was queued again")
	}
	state := func(a *Announcement) State {
		st, ok := g.release("mw", a.Release)
		if !ok {
			t.Fatalf("release %s unknown", a.Version)
		}
		return st.State
	}

	now := t0.Add(24 * time.Hour)
	rel, _ := g.next(r, now)
	if rel == nil || rel.ann != a1 || state(a1) != Fetching || state(a2) != Queued {
		t.Fatalf("next took %v: states %v, %v; want the oldest, fetching", rel, state(a1), state(a2))
	}
	g.finish(rel, now, errors.New("no peers"), RetryAfter)
	if st, _ := g.release("mw", a1.Release); st.State != Failed || st.Error != "no peers" {
		t.Fatalf("after a failed fetch: %v %q", st.State, st.Error)
	}
	rel, _ = g.next(r, now)
	if rel == nil || rel.ann != a2 {
		t.Fatalf("next took %v, want the queued release before a failed one", rel)
	}
	g.finish(rel, now, nil, RetryAfter)
	if rel, retryAt := g.next(r, now); rel != nil || !retryAt.Equal(now.Add(RetryAfter)) {
		t.Fatalf("next before the retry is due: %v, retry at %v, want none until %v", rel, retryAt, now.Add(RetryAfter))
	}
	rel, _ = g.next(r, now.Add(RetryAfter))
	if rel == nil || rel.ann != a1 || state(a1) != Fetching {
		t.Fatalf("next once the retry is due took %v", rel)
	}
	g.finish(rel, now.Add(RetryAfter+time.Second), nil, RetryAfter)
	if !g.staged("mw", a1.Release) || !g.staged("mw", a2.Release) || g.staged("mw", ann(0).Release) {
		t.Fatal("both retained releases should be staged, the refused one unknown")
	}
	rs := g.status()
	if len(rs) != 1 || len(rs[0].Releases) != 2 || rs[0].Releases[0].Release != a2.Release {
		t.Fatalf("status %+v: want one repo, its two releases newest first", rs)
	}
	if st := rs[0].Releases[1]; st.Error != "" || st.Seconds != 1 {
		t.Errorf("retried release: error %q, %v s from its last start; want none, 1 s", st.Error, st.Seconds)
	}
}
