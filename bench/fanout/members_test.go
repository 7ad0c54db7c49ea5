package fanout

import (
	"context"
	"strings"
	"testing"
	"time"
)

// seesMember is a member whose only working method is members: it sees
// the names it was given.
type seesMember struct {
	member
	seen []string
}

func (m seesMember) members(context.Context) ([]string, error) { return m.seen, nil }

// A host that sees fewer members is named with whom it misses in the
// timeout's error (and in the progress lines, from 10 s on); a converged
// cluster passes.
func TestWaitMembersNamesLaggards(t *testing.T) {
	all := []string{"origin", "h001", "h002"}
	c := &cluster{orig: &node{name: "origin"}}
	c.orig.m = seesMember{seen: all}
	for _, name := range all[1:] {
		c.hosts = append(c.hosts, &node{name: name, m: seesMember{seen: all}})
	}
	say := func(string, ...any) {} // progress lines start at 10 s
	if err := c.waitMembers(t.Context(), 3, time.Second, say); err != nil {
		t.Fatalf("converged cluster: %v", err)
	}
	c.hosts[1].m = seesMember{seen: []string{"h002", "origin"}}
	err := c.waitMembers(t.Context(), 3, 300*time.Millisecond, say)
	if err == nil || !strings.Contains(err.Error(), "h002 sees 2 (missing h001)") || strings.Contains(err.Error(), "origin sees") {
		t.Fatalf("err = %v, want it to name h002 missing h001 and no one else", err)
	}
}
