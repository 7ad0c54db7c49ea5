package membership

import (
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Why a node rejoins. memberlist forgets a dead member GossipToTheDeadTime
// (30 s) after declaring it dead, and then never contacts it again: after a
// daemon restart or a partition longer than that, the two sides each carry
// on as a cluster of their own and nothing merges them. A member that
// restarts learns nobody unless something tells it whom to join. So every
// Node given Seeds or a KnownFile keeps itself in the cluster:
//
//   - it remembers every member it has seen alive, name and address, in
//     KnownFile, and rejoins them on start;
//   - while a seed (a configured join address) or a remembered member is
//     missing from its member list, it joins them again, backing off from
//     RejoinMin to RejoinMax between attempts (a few remembered members per
//     attempt: one live member brings the whole of its side by push/pull);
//   - otherwise it joins the seeds every RejoinEvery, which merges the
//     halves of a partition when each half kept more than one member;
//   - it forgets a member that leaves gracefully at once, and one not seen
//     alive for ForgetAfter.
//
// rejoinPolicy is that decision, with no I/O and no clock of its own: the
// Node's loop (rejoinLoop) feeds it the member list and the time, runs the
// joins it asks for and reports what they reached.

// Known is a member this node has seen alive: what it rejoins.
type Known struct {
	Name string    `json:"name"`
	Addr string    `json:"addr"` // gossip address, ip:port
	Seen time.Time `json:"seen"` // last seen alive
}

// rejoinAttempt is one join the policy asks for.
type rejoinAttempt struct {
	addrs   []string
	missing []string // seeds and remembered members absent, "name (addr)"
	reason  string
	seeds   bool // includes every seed: counts as the periodic seed join
}

// sampleAbsent is how many absent remembered members one attempt tries:
// one that answers brings its side's whole member list, so a handful is
// plenty, and a fleet's worth of dead addresses never costs more than this
// many dials per attempt.
const sampleAbsent = 8

type rejoinPolicy struct {
	self     string
	selfAddr string
	seeds    []string
	min, max time.Duration
	every    time.Duration // periodic seed join
	forget   time.Duration
	saveGap  time.Duration // seen times alone are saved at most this often

	known     map[string]Known
	delay     time.Duration
	next      time.Time // no attempt before
	lastSeeds time.Time // the seeds were last joined
	rotate    int       // where the next sample of absent members starts

	changed   bool // names or addresses changed since the last save
	seenMoved bool // only seen times changed
	lastSave  time.Time
}

func newRejoinPolicy(self, selfAddr string, seeds []string, known []Known, min, max, every, forget time.Duration, now time.Time) *rejoinPolicy {
	p := &rejoinPolicy{self: self, selfAddr: selfAddr, seeds: slices.Clone(seeds), min: min, max: max,
		every: every, forget: forget, saveGap: time.Minute, known: map[string]Known{}, delay: min,
		lastSeeds: now, lastSave: now}
	for _, k := range known {
		if k.Name == "" || k.Name == self || k.Addr == "" || now.Sub(k.Seen) >= forget {
			continue
		}
		if old, ok := p.known[k.Name]; !ok || k.Seen.After(old.Seen) {
			p.known[k.Name] = k
		}
	}
	return p
}

func addrOf(m Member) string {
	return netip.AddrPortFrom(m.Addr, uint16(m.Port)).String()
}

// observe remembers the alive members.
func (p *rejoinPolicy) observe(now time.Time, alive []Member) {
	for _, m := range alive {
		if m.Name == p.self || !m.Addr.IsValid() {
			continue
		}
		a := addrOf(m)
		old, ok := p.known[m.Name]
		if !ok || old.Addr != a {
			p.changed = true
		} else if !old.Seen.Equal(now) {
			p.seenMoved = true
		}
		p.known[m.Name] = Known{Name: m.Name, Addr: a, Seen: now}
	}
	for name, k := range p.known {
		if now.Sub(k.Seen) >= p.forget {
			delete(p.known, name)
			p.changed = true
		}
	}
}

// left forgets a member that left gracefully: it said it will not be back
// at that address, and will rejoin by itself if it returns.
func (p *rejoinPolicy) left(name string) {
	if _, ok := p.known[name]; ok {
		delete(p.known, name)
		p.changed = true
	}
}

// save reports whether the remembered members should be written now, and
// if so counts them as written.
func (p *rejoinPolicy) save(now time.Time) ([]Known, bool) {
	if !p.changed && !(p.seenMoved && now.Sub(p.lastSave) >= p.saveGap) {
		return nil, false
	}
	p.changed, p.seenMoved, p.lastSave = false, false, now
	return p.remembered(), true
}

// remembered lists the remembered members by name.
func (p *rejoinPolicy) remembered() []Known {
	out := make([]Known, 0, len(p.known))
	for _, k := range p.known {
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b Known) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// due returns the join to attempt now, if any. alive must include this
// node.
func (p *rejoinPolicy) due(now time.Time, alive []Member) (rejoinAttempt, bool) {
	if now.Before(p.next) {
		return rejoinAttempt{}, false
	}
	names := map[string]bool{}
	addrs := map[string]bool{}
	others := 0
	for _, m := range alive {
		names[m.Name] = true
		addrs[addrOf(m)] = true
		if m.Name != p.self {
			others++
		}
	}
	alone := others == 0
	var absentSeeds []string
	for _, s := range p.seeds {
		if s == p.selfAddr {
			continue
		}
		if ap, err := netip.ParseAddrPort(s); err == nil {
			if !addrs[netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String()] {
				absentSeeds = append(absentSeeds, s)
			}
		} else if alone {
			// A host name: which member it names is unknown here, so it
			// counts as present whenever this node is not alone.
			absentSeeds = append(absentSeeds, s)
		}
	}
	var absent []Known
	for _, k := range p.remembered() {
		if !names[k.Name] && k.Addr != p.selfAddr {
			absent = append(absent, k)
		}
	}
	var a rejoinAttempt
	switch {
	case len(absentSeeds) > 0:
		a.addrs = absentSeeds
		a.seeds = len(absentSeeds) == len(p.seeds)
		a.reason = "seed not a member: " + strings.Join(absentSeeds, ", ")
		if alone {
			a.reason = "alone"
		}
	case len(absent) > 0:
		a.reason = "remembered members missing"
		if alone {
			a.reason = "alone"
		}
	case len(p.seeds) > 0 && now.Sub(p.lastSeeds) >= p.every:
		a.addrs, a.seeds, a.reason = slices.Clone(p.seeds), true, "periodic"
	default:
		p.delay = p.min
		return rejoinAttempt{}, false
	}
	a.missing = slices.Clone(absentSeeds)
	for _, k := range absent {
		a.missing = append(a.missing, k.Name+" ("+k.Addr+")")
	}
	// A sample of the absent remembered members, rotating so that every
	// one is tried in turn.
	if n := len(absent); n > 0 {
		k := min(sampleAbsent, n)
		start := p.rotate % n
		for i := range k {
			a.addrs = append(a.addrs, absent[(start+i)%n].Addr)
		}
		p.rotate = (start + k) % n
	}
	a.addrs = dedupe(a.addrs)
	return a, true
}

// result records what an attempt reached (addresses), and schedules the
// next: soon if everything answered, after a doubled wait (at most max)
// if something did not.
func (p *rejoinPolicy) result(now time.Time, a rejoinAttempt, reached []string) {
	if len(reached) == len(a.addrs) {
		p.delay = p.min
	} else {
		p.delay = min(2*p.delay, p.max)
	}
	p.next = now.Add(p.delay)
	if a.seeds && len(reached) > 0 {
		p.lastSeeds = now
	}
}

// nameOf says which remembered member an address is, or "".
func (p *rejoinPolicy) nameOf(addr string) string {
	for _, k := range p.known {
		if k.Addr == addr {
			return k.Name
		}
	}
	return ""
}

func dedupe(xs []string) []string {
	seen := map[string]bool{}
	out := xs[:0]
	for _, x := range xs {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}
