package fleet

import (
	"errors"
	"scatter/artifact/core"
	"scatter/orchestrate/host"
	"scatter/swarm"
	"strings"
	"testing"
)

// A version label wins over an ID prefix that happens to match it; an ID
// prefix still works, and a prefix shared by two releases is refused.
func TestResolveReleaseVersionBeatsPrefix(t *testing.T) {
	id := func(s string) core.ReleaseID {
		r, err := core.ParseReleaseID(s + strings.Repeat("0", 64-len(s)))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	v1, v2, v3 := id("24d6"), id("b814"), id("b8ff")
	st := &host.ClusterStatus{Self: "me", Members: []host.MemberStatus{{
		Name: "me",
		Status: &swarm.Status{Repos: []swarm.RepoStatus{{Repo: "mw", Releases: []swarm.ReleaseStatus{
			{Release: v3, Version: "3"}, {Release: v2, Version: "2"}, {Release: v1, Version: "1"},
		}}}},
	}}}
	for _, c := range []struct {
		want string
		id   core.ReleaseID
		err  string
	}{
		{"2", v2, ""},
		{"24d6", v1, ""},
		{"b814", v2, ""},
		{"", v3, ""},
		{"b8", core.ReleaseID{}, "ambiguous"},
		{"7", core.ReleaseID{}, "not retained"},
	} {
		got, _, err := resolveRelease(st, nil, nil, PlanOptions{Repo: "mw", Release: c.want})
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) || !errors.Is(err, ErrInvalid) {
				t.Errorf("release %q: err %v, want %q", c.want, err, c.err)
			}
			continue
		}
		if err != nil || got != c.id {
			t.Errorf("release %q: got %s, %v; want %s", c.want, got.Short(), err, c.id.Short())
		}
	}
}
