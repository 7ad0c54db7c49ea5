package sim

import (
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
)

type kind uint8

const (
	kPeer     kind = iota // host to host over the peer wire
	kStripe               // origin to host over HTTP, the host's stripe
	kOriginBT             // origin to a stalled host over the peer wire
	kCentral              // origin to host, the whole release (RunCentral)
)

// flow is one piece (or, for kCentral, the whole release) moving from u to
// d. Its rate holds from last until the uploader is next re-rated.
type flow struct {
	u, d     int32
	piece    int32
	kind     kind
	ownsInfl bool  // it set d's in-flight bit for piece
	link     int32 // inter-DC link it crosses, or -1
	linkAt   int32 // its place in that link's list
	rem      float64
	rate     float64
	last     float64
	end      float64
}

// node is a host or, at index n, the origin.
type node struct {
	up     float64
	dc     int32
	flows  []int32 // flows it uploads
	next   float64 // earliest end of its flows
	hidx   int     // place in the heap
	dirty  bool
	nbr    []int32 // sorted neighbour indices (nil for the origin)
	pair   []int32 // flow it uploads to each neighbour, or -1
	cursor int     // where a slot-capped uploader next looks for takers

	alive    bool
	got      int
	done     float64
	lastProg float64
	fallback bool
	inWire   int  // flows it receives over the peer wire
	oconn    bool // it holds one of the origin's peer-wire connections
	owait    bool // it waits in line for one

	stripe             int32 // its stripe flow, or -1
	stripeNext, strEnd int32
	stripeOn, queued   bool
	obt                int32 // the origin's peer-wire flow to it, or -1

	fromOrigin, fromPeers float64
}

type sim struct {
	cfg      Config
	central  bool
	n        int // hosts; the origin is node n
	pieces   int
	words    int
	pieceLen int64
	now      float64
	rng      *rand.Rand

	nodes []node
	flows []flow
	free  []int32
	heap  []int32
	dirty []int32

	have  []uint64 // (n+1) rows of words; the origin's row is full
	infl  []uint64 // n rows: pieces in flight to the host
	avail []int32  // alive holders of each piece

	dcs     int
	topo    bool
	dcCount []int32  // per DC and piece: alive holders plus flows into the DC
	dcAny   []uint64 // per DC: dcCount > 0
	links   [][]int32
	linkCap float64

	slots, originSlots int
	activeStripes      int
	stripeQueue        []int32

	originConns int     // hosts connected to the origin's peer wire
	originWait  []int32 // stalled hosts waiting for a connection

	incomplete    int // alive hosts lacking the release
	completeAlive int
	offloaded     bool
	pendingRejoin []int32
	leaveAt       float64
	rejoinAt      float64
	nextTick      float64
	idleTicks     int

	originUp, crossDC float64
	transfers         int
}

// Run simulates swarm's fan-out of one release to cfg.Hosts hosts: disjoint
// stripes from the origin, then piece exchange between hosts.
func Run(cfg Config) (Result, error) {
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	return newSim(cfg, false).run()
}

// RunCentral simulates the central baseline: every host fetches the whole
// release from the origin alone (OriginSlots at a time, 0 meaning all at
// once), sharing its upload. It ignores the peer-exchange fields.
func RunCentral(cfg Config) (Result, error) {
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	return newSim(cfg, true).run()
}

func newSim(cfg Config, central bool) *sim {
	s := &sim{cfg: cfg, central: central, n: cfg.Hosts, pieceLen: cfg.pieceLen(), rng: cfg.rng(1)}
	s.pieces = int((cfg.Size + s.pieceLen - 1) / s.pieceLen)
	s.words = (s.pieces + 63) / 64
	s.dcs = cfg.dcs()
	s.topo = cfg.TopologyAware && s.dcs > 1
	s.slots, s.originSlots = cfg.UploadSlots, cfg.OriginSlots
	s.nodes = make([]node, s.n+1)
	for i := range s.nodes {
		nd := &s.nodes[i]
		nd.up, nd.dc = cfg.hostUpload(i), int32(i%s.dcs)
		nd.next, nd.done = math.Inf(1), math.Inf(1)
		nd.stripe, nd.obt = -1, -1
		nd.alive = true
	}
	o := &s.nodes[s.n]
	o.up, o.dc = cfg.originUpload(), 0
	s.have = make([]uint64, (s.n+1)*s.words)
	for p := range s.pieces {
		s.have[s.n*s.words+p/64] |= 1 << (p % 64)
	}
	s.infl = make([]uint64, s.n*s.words)
	s.avail = make([]int32, s.pieces)
	if s.topo {
		s.dcCount = make([]int32, s.dcs*s.pieces)
		s.dcAny = make([]uint64, s.dcs*s.words)
	}
	if s.dcs > 1 && cfg.InterDC > 0 {
		s.links = make([][]int32, s.dcs*s.dcs)
		s.linkCap = cfg.InterDC
	}
	s.heap = make([]int32, 0, s.n+1)
	for i := range s.nodes {
		s.nodes[i].hidx = len(s.heap)
		s.heap = append(s.heap, int32(i))
	}
	if !central {
		s.connect()
	}
	s.leaveAt, s.rejoinAt, s.nextTick = math.Inf(1), math.Inf(1), math.Inf(1)
	if cfg.Churn.Fraction > 0 && !central {
		su := float64(cfg.Size) / cfg.Upload
		s.leaveAt, s.rejoinAt = cfg.Churn.Leave*su, cfg.Churn.Rejoin*su
	}
	if cfg.stallAfter() > 0 && !central {
		s.nextTick = 1
	}
	return s
}

// connect builds the peer graph: everyone with everyone up to Neighbors+1
// hosts; beyond, each host dials random hosts until it has half its
// neighbours, and no host accepts more than Neighbors, as anacrolix caps
// established connections. A topology-aware host dials CrossPeers/2 hosts
// in other datacenters and the rest in its own.
func (s *sim) connect() {
	deg := s.cfg.neighbors()
	adj := make([][]int32, s.n)
	if s.n-1 <= deg {
		for i := range s.n {
			for j := range s.n {
				if i != j {
					adj[i] = append(adj[i], int32(j))
				}
			}
		}
	} else {
		r := s.cfg.rng(2)
		has := func(i, j int32) bool { return slices.Contains(adj[i], j) }
		byDC := make([][]int32, s.dcs)
		for i := range s.n {
			byDC[i%s.dcs] = append(byDC[i%s.dcs], int32(i))
		}
		// dial draws count neighbours from pool.
		type dial struct {
			pool  func() int32
			count int
		}
		anyHost := func() int32 { return int32(r.IntN(s.n)) }
		for _, i := range r.Perm(s.n) {
			want := []dial{{anyHost, deg / 2}}
			if s.topo {
				own := byDC[i%s.dcs]
				cross := s.cfg.crossPeers() / 2
				want = []dial{{func() int32 { return own[r.IntN(len(own))] }, deg/2 - cross}, {anyHost, cross}}
			}
			for k, w := range want {
				added := 0
				for try := 0; added < w.count && try < 20*w.count; try++ {
					j := w.pool()
					if int(j) == i || has(int32(i), j) || len(adj[j]) >= deg || len(adj[i]) >= deg {
						continue
					}
					if s.topo && k == 1 && j%int32(s.dcs) == int32(i%s.dcs) {
						continue
					}
					adj[i] = append(adj[i], j)
					adj[j] = append(adj[j], int32(i))
					added++
				}
			}
		}
	}
	for i := range s.n {
		slices.Sort(adj[i])
		s.nodes[i].nbr = adj[i]
		s.nodes[i].pair = make([]int32, len(adj[i]))
		for j := range adj[i] {
			s.nodes[i].pair[j] = -1
		}
	}
}

func (s *sim) run() (Result, error) {
	s.incomplete = s.n
	if s.central {
		for d := range s.n {
			s.startStripe(int32(d))
		}
	} else {
		all := make([]int32, s.n)
		for i := range all {
			all[i] = int32(i)
		}
		s.join(all, false)
	}
	s.flush()
	for s.incomplete > 0 || len(s.pendingRejoin) > 0 {
		top := s.nodes[s.heap[0]].next
		timer := min(s.leaveAt, s.rejoinAt, s.nextTick)
		if math.IsInf(top, 1) && math.IsInf(timer, 1) {
			return Result{}, fmt.Errorf("sim: stalled at %.1fs with %d hosts incomplete", s.now, s.incomplete)
		}
		if top <= timer {
			s.now = top
			s.complete(s.heap[0])
		} else {
			s.now = timer
			switch timer {
			case s.leaveAt:
				s.leaveAt = math.Inf(1)
				s.churnLeave()
			case s.rejoinAt:
				s.rejoinAt = math.Inf(1)
				if len(s.pendingRejoin) > 0 {
					s.join(s.pendingRejoin, true)
					s.pendingRejoin = nil
				}
			default:
				if err := s.tick(); err != nil {
					return Result{}, err
				}
			}
		}
		s.flush()
	}
	return s.result(), nil
}

// join starts the fetch of the given hosts, at time 0 or on rejoining:
// each takes its stripe slot among the alive hosts lacking the release.
func (s *sim) join(hosts []int32, rejoin bool) {
	for _, d := range hosts {
		nd := &s.nodes[d]
		if rejoin {
			nd.alive = true
			for p := range s.pieces {
				if s.has(d, p) {
					s.addHolder(d, p)
				}
			}
			if nd.got == s.pieces {
				s.completeAlive++
			} else {
				s.incomplete++
			}
		}
		// swarm's wait loop notes its first progress reading a second in.
		nd.lastProg, nd.fallback = s.now+1, false
	}
	var lacking []int32
	for i := range s.n {
		if s.nodes[i].alive && s.nodes[i].got < s.pieces {
			lacking = append(lacking, int32(i))
		}
	}
	for _, d := range hosts {
		if s.nodes[d].got == s.pieces {
			continue
		}
		if len(lacking) <= 1 {
			s.nodes[d].fallback = true
			s.tryOrigin(d)
			continue
		}
		slot, _ := slices.BinarySearch(lacking, d)
		first, end := slot*s.pieces/len(lacking), (slot+1)*s.pieces/len(lacking)
		for first < end && s.has(d, first) {
			first++
		}
		s.nodes[d].stripeNext, s.nodes[d].strEnd = int32(first), int32(end)
		if first < end {
			s.startStripe(d)
		}
	}
	if rejoin {
		s.refillAll()
		s.checkOffload()
	}
}

func (s *sim) startStripe(d int32) {
	if s.originSlots > 0 && s.activeStripes >= s.originSlots {
		s.nodes[d].queued = true
		s.stripeQueue = append(s.stripeQueue, d)
		return
	}
	s.activeStripes++
	s.nodes[d].stripeOn = true
	s.nextStripe(d)
}

// nextStripe starts d's next stripe piece, or ends its stripe.
func (s *sim) nextStripe(d int32) {
	nd := &s.nodes[d]
	if !s.central && nd.alive && nd.got < s.pieces && nd.stripeNext < nd.strEnd {
		p := nd.stripeNext
		nd.stripeNext++
		nd.stripe = s.start(int32(s.n), d, p, kStripe)
		return
	}
	if s.central && nd.alive && nd.got < s.pieces {
		nd.stripe = s.start(int32(s.n), d, -1, kCentral)
		return
	}
	s.stopStripe(d)
}

func (s *sim) stopStripe(d int32) {
	nd := &s.nodes[d]
	if nd.queued {
		nd.queued = false
		if i := slices.Index(s.stripeQueue, d); i >= 0 {
			s.stripeQueue = slices.Delete(s.stripeQueue, i, i+1)
		}
		return
	}
	if !nd.stripeOn {
		return
	}
	if nd.stripe >= 0 {
		s.abort(nd.stripe)
	}
	nd.stripeOn = false
	s.activeStripes--
	s.admitStripes()
}

// admitStripes starts queued stripes while the origin has free slots.
func (s *sim) admitStripes() {
	for len(s.stripeQueue) > 0 && (s.originSlots == 0 || s.activeStripes < s.originSlots) {
		q := s.stripeQueue[0]
		s.stripeQueue = s.stripeQueue[1:]
		s.nodes[q].queued = false
		s.activeStripes++
		s.nodes[q].stripeOn = true
		s.nextStripe(q)
	}
}

func (s *sim) has(d int32, p int) bool {
	return s.have[int(d)*s.words+p/64]&(1<<(p%64)) != 0
}

func (s *sim) pieceBytes(p int32) float64 {
	if p < 0 {
		return float64(s.cfg.Size)
	}
	return float64(min(s.pieceLen, s.cfg.Size-int64(p)*s.pieceLen))
}

// start begins moving piece p from u to d and returns the flow.
func (s *sim) start(u, d, p int32, k kind) int32 {
	var fi int32
	if n := len(s.free); n > 0 {
		fi = s.free[n-1]
		s.free = s.free[:n-1]
	} else {
		fi = int32(len(s.flows))
		s.flows = append(s.flows, flow{})
	}
	f := &s.flows[fi]
	*f = flow{u: u, d: d, piece: p, kind: k, link: -1, rem: s.pieceBytes(p), last: s.now}
	if p >= 0 {
		w, b := int(d)*s.words+int(p)/64, uint64(1)<<(p%64)
		if s.infl[w]&b == 0 {
			s.infl[w] |= b
			f.ownsInfl = true
		}
		if s.topo {
			s.dcInc(s.nodes[d].dc, p, 1)
		}
	}
	if s.links != nil && s.nodes[u].dc != s.nodes[d].dc {
		f.link = s.nodes[u].dc*int32(s.dcs) + s.nodes[d].dc
		f.linkAt = int32(len(s.links[f.link]))
		s.links[f.link] = append(s.links[f.link], fi)
		s.dirtyLink(f.link)
	}
	if k == kPeer || k == kOriginBT {
		s.nodes[d].inWire++
	}
	s.nodes[u].flows = append(s.nodes[u].flows, fi)
	s.markDirty(u)
	return fi
}

// end removes a finished or aborted flow.
func (s *sim) end(fi int32) {
	f := &s.flows[fi]
	u, d := &s.nodes[f.u], &s.nodes[f.d]
	if i := slices.Index(u.flows, fi); i >= 0 {
		last := len(u.flows) - 1
		u.flows[i] = u.flows[last]
		u.flows = u.flows[:last]
	}
	switch f.kind {
	case kPeer:
		j, _ := slices.BinarySearch(u.nbr, f.d)
		u.pair[j] = -1
		d.inWire--
	case kStripe, kCentral:
		d.stripe = -1
	case kOriginBT:
		d.obt = -1
		d.inWire--
	}
	if f.ownsInfl {
		s.infl[int(f.d)*s.words+int(f.piece)/64] &^= 1 << (f.piece % 64)
	}
	if s.topo && f.piece >= 0 {
		s.dcInc(d.dc, f.piece, -1)
	}
	if f.link >= 0 {
		l := s.links[f.link]
		last := l[len(l)-1]
		l[f.linkAt] = last
		s.flows[last].linkAt = f.linkAt
		s.links[f.link] = l[:len(l)-1]
		s.dirtyLink(f.link)
	}
	s.markDirty(f.u)
	s.free = append(s.free, fi)
}

// abort stops a flow before its end; the bytes it moved are wasted.
func (s *sim) abort(fi int32) {
	f := &s.flows[fi]
	s.account(f, min(f.rem, f.rate*(s.now-f.last)))
	s.end(fi)
}

func (s *sim) account(f *flow, b float64) {
	if f.u == int32(s.n) {
		s.originUp += b
		s.nodes[f.d].fromOrigin += b
	} else {
		s.nodes[f.d].fromPeers += b
	}
	if s.nodes[f.u].dc != s.nodes[f.d].dc {
		s.crossDC += b
	}
}

func (s *sim) markDirty(u int32) {
	if !s.nodes[u].dirty {
		s.nodes[u].dirty = true
		s.dirty = append(s.dirty, u)
	}
}

func (s *sim) dirtyLink(l int32) {
	for _, fi := range s.links[l] {
		s.markDirty(s.flows[fi].u)
	}
}

func (s *sim) dcInc(dc int32, p int32, by int32) {
	c := &s.dcCount[int(dc)*s.pieces+int(p)]
	*c += by
	w, b := int(dc)*s.words+int(p)/64, uint64(1)<<(p%64)
	if *c > 0 {
		s.dcAny[w] |= b
	} else {
		s.dcAny[w] &^= b
	}
}

// flush re-rates every uploader whose flows or links changed: each flow
// moves at its uploader's upload shared equally among its flows, or at its
// share of the inter-DC link if that is less.
func (s *sim) flush() {
	for _, u := range s.dirty {
		nd := &s.nodes[u]
		nd.dirty = false
		next := math.Inf(1)
		share := nd.up / float64(len(nd.flows))
		for _, fi := range nd.flows {
			f := &s.flows[fi]
			b := min(f.rem, f.rate*(s.now-f.last))
			s.account(f, b)
			f.rem -= b
			f.last = s.now
			f.rate = share
			if f.link >= 0 {
				f.rate = min(share, s.linkCap/float64(len(s.links[f.link])))
			}
			f.end = s.now + f.rem/f.rate
			next = min(next, f.end)
		}
		nd.next = next
		s.fix(int(nd.hidx))
	}
	s.dirty = s.dirty[:0]
}

// complete finishes the earliest flow of uploader u.
func (s *sim) complete(u int32) {
	nd := &s.nodes[u]
	fi := nd.flows[0]
	for _, g := range nd.flows[1:] {
		if s.flows[g].end < s.flows[fi].end || s.flows[g].end == s.flows[fi].end && g < fi {
			fi = g
		}
	}
	f := s.flows[fi] // a copy: end recycles the slot
	s.account(&f, f.rem)
	s.end(fi)
	s.transfers++
	d := f.d
	if f.kind == kCentral {
		s.finish(d)
		s.stopStripe(d)
		return
	}
	gained := s.deliver(d, int(f.piece))
	switch f.kind {
	case kStripe:
		if s.cfg.OriginRoundRobin && s.originSlots > 0 && len(s.stripeQueue) > 0 && s.nodes[d].alive &&
			s.nodes[d].got < s.pieces && s.nodes[d].stripeNext < s.nodes[d].strEnd {
			// Yield the slot: to the back of the line for the next piece.
			s.nodes[d].stripeOn, s.nodes[d].queued = false, true
			s.activeStripes--
			s.stripeQueue = append(s.stripeQueue, d)
			s.admitStripes()
		} else {
			s.nextStripe(d)
		}
	case kOriginBT:
		s.tryOrigin(d)
	case kPeer:
		if s.slots > 0 {
			// Slots rotate among the interested neighbours piece by piece,
			// so that no neighbour starves while others are served.
			s.fill(u)
		} else {
			s.tryStart(u, d)
		}
	}
	if gained {
		p := int(f.piece)
		dn := &s.nodes[d]
		for j, w := range dn.nbr {
			if dn.pair[j] < 0 && !s.has(w, p) && s.infl[int(w)*s.words+p/64]&(1<<(p%64)) == 0 {
				s.tryStart(d, w)
			}
		}
	}
}

// deliver gives d piece p and reports whether it was new.
func (s *sim) deliver(d int32, p int) bool {
	if s.has(d, p) {
		return false
	}
	s.have[int(d)*s.words+p/64] |= 1 << (p % 64)
	s.addHolder(d, p)
	nd := &s.nodes[d]
	nd.got++
	nd.lastProg = s.now
	if nd.got == s.pieces {
		s.finish(d)
		s.stopStripe(d)
		if nd.obt >= 0 {
			s.abort(nd.obt)
		}
	}
	return true
}

func (s *sim) addHolder(d int32, p int) {
	s.avail[p]++
	if s.topo {
		s.dcInc(s.nodes[d].dc, int32(p), 1)
	}
}

func (s *sim) finish(d int32) {
	nd := &s.nodes[d]
	nd.got = s.pieces
	nd.done = s.now
	s.releaseOrigin(d)
	s.incomplete--
	s.completeAlive++
	s.checkOffload()
}

// checkOffload stops the origin's peer-wire uploads while OffloadAfter
// alive hosts hold the release, and restarts them when they do not.
func (s *sim) checkOffload() {
	off := s.completeAlive >= s.cfg.offload()
	if off == s.offloaded {
		return
	}
	s.offloaded = off
	if off {
		aborted := false
		for d := range s.n {
			if s.nodes[d].obt >= 0 {
				s.abort(s.nodes[d].obt)
				aborted = true
			}
		}
		if aborted {
			// The pieces they carried are wanted again, from peers.
			s.refillAll()
		}
		return
	}
	for d := range s.n {
		s.tryOrigin(int32(d))
	}
}

// tryOrigin starts the origin's peer-wire upload to a stalled host. The
// origin, like every anacrolix client, keeps at most Neighbors
// connections; a stalled host beyond that waits its turn.
func (s *sim) tryOrigin(d int32) {
	nd := &s.nodes[d]
	if s.offloaded || !nd.fallback || !nd.alive || nd.got == s.pieces || nd.obt >= 0 {
		return
	}
	if !nd.oconn {
		if s.originConns >= s.cfg.neighbors() {
			if !nd.owait {
				nd.owait = true
				s.originWait = append(s.originWait, d)
			}
			return
		}
		nd.oconn = true
		s.originConns++
	}
	if p := s.pick(int32(s.n), d); p >= 0 {
		nd.obt = s.start(int32(s.n), d, p, kOriginBT)
	}
}

// releaseOrigin frees d's connection to the origin for the next in line.
func (s *sim) releaseOrigin(d int32) {
	nd := &s.nodes[d]
	if !nd.oconn {
		return
	}
	nd.oconn = false
	s.originConns--
	for len(s.originWait) > 0 && s.originConns < s.cfg.neighbors() {
		q := s.originWait[0]
		s.originWait = s.originWait[1:]
		s.nodes[q].owait = false
		s.tryOrigin(q)
	}
}

// tryStart starts u uploading to its neighbour d if u is free to and holds
// a piece d wants.
func (s *sim) tryStart(u, d int32) {
	un, dn := &s.nodes[u], &s.nodes[d]
	if !un.alive || !dn.alive || dn.got == s.pieces {
		return
	}
	if s.slots > 0 && len(un.flows) >= s.slots {
		return
	}
	j, ok := slices.BinarySearch(un.nbr, d)
	if !ok || un.pair[j] >= 0 {
		return
	}
	if p := s.pick(u, d); p >= 0 {
		un.pair[j] = s.start(u, d, p, kPeer)
	}
}

// fill gives a slot-capped uploader's free slots to neighbours in turn.
func (s *sim) fill(u int32) {
	un := &s.nodes[u]
	for k := 0; k < len(un.nbr) && len(un.flows) < s.slots; k++ {
		un.cursor = (un.cursor + 1) % len(un.nbr)
		if un.pair[un.cursor] < 0 {
			s.tryStart(u, un.nbr[un.cursor])
		}
	}
}

// pickLimit bounds the candidates pick weighs: the rarest of a sample of
// pieces, in the spirit of anacrolix's availability-ordered requests.
const pickLimit = 32

// pick chooses the piece u sends d: among those u holds and d neither holds
// nor is receiving, the one held by fewest hosts, scanning from a random
// word. A topology-aware host asks a remote uploader only for pieces its
// datacenter lacks.
func (s *sim) pick(u, d int32) int32 {
	hu := s.have[int(u)*s.words:][:s.words]
	hd := s.have[int(d)*s.words:][:s.words]
	id := s.infl[int(d)*s.words:][:s.words]
	var dc []uint64
	if s.topo && s.nodes[u].dc != s.nodes[d].dc {
		dc = s.dcAny[int(s.nodes[d].dc)*s.words:][:s.words]
	}
	best, bestAvail, seen := int32(-1), int32(math.MaxInt32), 0
	w0 := s.rng.IntN(s.words)
	for k := range s.words {
		w := w0 + k
		if w >= s.words {
			w -= s.words
		}
		m := hu[w] &^ hd[w] &^ id[w]
		if dc != nil {
			m &^= dc[w]
		}
		for m != 0 {
			p := w*64 + bits.TrailingZeros64(m)
			m &= m - 1
			if a := s.avail[p]; a < bestAvail {
				best, bestAvail = int32(p), a
			}
			if seen++; seen >= pickLimit {
				return best
			}
		}
	}
	return best
}

// refillAll starts every transfer that can start: after churn, when
// aborted flows leave pairs idle that the event-driven starts would miss.
func (s *sim) refillAll() {
	for d := range s.n {
		dn := &s.nodes[d]
		if !dn.alive || dn.got == s.pieces {
			continue
		}
		for _, v := range dn.nbr {
			s.tryStart(v, int32(d))
		}
		s.tryOrigin(int32(d))
	}
}

// tick runs once a simulated second, as swarm's wait loop: a host whose
// progress has not moved for StallAfter adds the origin as a peer. Progress
// is anacrolix's bytes completed, which counts blocks arriving over the
// peer wire but a stripe piece only once all of it has come over HTTP.
func (s *sim) tick() error {
	s.nextTick = s.now + 1
	started := false
	for d := range s.n {
		dn := &s.nodes[d]
		if dn.inWire > 0 {
			dn.lastProg = s.now
		}
		if dn.alive && dn.got < s.pieces && !dn.fallback && s.now-dn.lastProg > s.cfg.stallAfter() {
			dn.fallback = true
			s.tryOrigin(int32(d))
			started = true
		}
	}
	if len(s.nodes[s.heap[0]].flows) == 0 && !started && math.IsInf(s.leaveAt, 1) && math.IsInf(s.rejoinAt, 1) {
		if s.idleTicks++; float64(s.idleTicks) > s.cfg.stallAfter()+2 {
			return fmt.Errorf("sim: stalled at %.1fs with %d hosts incomplete and nothing moving", s.now, s.incomplete)
		}
	} else {
		s.idleTicks = 0
	}
	return nil
}

// churnLeave takes Churn.Fraction of the hosts, chosen by the seed, out of
// the swarm: every flow to or from them stops.
func (s *sim) churnLeave() {
	r := s.cfg.rng(3)
	k := int(s.cfg.Churn.Fraction*float64(s.n) + 0.5)
	if k == 0 {
		return
	}
	leavers := r.Perm(s.n)[:k]
	slices.Sort(leavers)
	for _, i := range leavers {
		d := int32(i)
		dn := &s.nodes[d]
		for len(dn.flows) > 0 {
			s.abort(dn.flows[0])
		}
		for _, v := range dn.nbr {
			vn := &s.nodes[v]
			if j, _ := slices.BinarySearch(vn.nbr, d); vn.pair[j] >= 0 {
				s.abort(vn.pair[j])
			}
		}
		s.stopStripe(d)
		if dn.obt >= 0 {
			s.abort(dn.obt)
		}
		s.releaseOrigin(d)
		dn.alive = false
		for p := range s.pieces {
			if s.has(d, p) {
				s.avail[p]--
				if s.topo {
					s.dcInc(dn.dc, int32(p), -1)
				}
			}
		}
		if dn.got == s.pieces {
			s.completeAlive--
		} else {
			s.incomplete--
		}
		s.pendingRejoin = append(s.pendingRejoin, d)
	}
	s.checkOffload()
	s.refillAll()
}

// The heap orders nodes by their next flow end, ties by index.
func (s *sim) less(i, j int) bool {
	a, b := &s.nodes[s.heap[i]], &s.nodes[s.heap[j]]
	return a.next < b.next || a.next == b.next && s.heap[i] < s.heap[j]
}

func (s *sim) swap(i, j int) {
	s.heap[i], s.heap[j] = s.heap[j], s.heap[i]
	s.nodes[s.heap[i]].hidx = i
	s.nodes[s.heap[j]].hidx = j
}

func (s *sim) fix(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !s.less(i, p) {
			break
		}
		s.swap(i, p)
		i = p
	}
	for {
		l := 2*i + 1
		if l >= len(s.heap) {
			return
		}
		m := l
		if r := l + 1; r < len(s.heap) && s.less(r, l) {
			m = r
		}
		if !s.less(m, i) {
			return
		}
		s.swap(i, m)
		i = m
	}
}
