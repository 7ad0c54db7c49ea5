package swarm

import (
	"fmt"
	"time"
)

// pieceFetch is the piece transfer of one release's fetch on this host,
// from the moment its torrent is added until every piece is in: the
// stripe from the origin and the peer wire. Its state belongs to the one
// goroutine that runs follow; the stripe's goroutine reports to it by a
// message (stripe), the engine by its completion (done), time by the
// node's clock. What others read of it (why it is stuck) follow records
// in the registry (setStuck).
type pieceFetch struct {
	fr  *fetcher // the fetch it is part of
	rel *release
	x   *Transfer
	// stripe delivers the stripe's outcome from the origin, once; nil when
	// the host took no stripe or the outcome is in.
	stripe <-chan error
	// hadStripe: the host took a stripe from the origin.
	hadStripe bool
	// fallback: the origin is one of this transfer's peer-wire peers (the
	// stripe failed or was pointless, or the fetch stalled).
	fallback bool

	last           int64     // bytes complete at the last tick
	lastProgress   time.Time // when they last grew
	rejectedBefore int64     // rejects counted before the stall began
	lastReconnect  time.Time
}

// follow runs the transfer to its end, adding peers as membership finds
// them and noting why it stalls.
//
// A transfer that makes no progress while a connected peer holds a piece
// it lacks closes its connections and dials them again (see
// Transfer.Reconnect): after reconnectAfter (or StallAfter, if shorter)
// when peers rejected requests during the stall, after StallAfter
// otherwise, and again as often while the stall lasts. Not while
// downloads pause after a failed write: fresh connections would not help.
//
// A host whose own stripe is done and which then makes no progress for
// orphanAfter falls back to the origin at once instead of after
// StallAfter: what it misses is most likely a stripe nobody took — its
// host left, or, for a delta, hosts disagreed for a moment on who fetches
// which torrent — and no peer will ever have it.
func (f *pieceFetch) follow() error {
	fr, x := f.fr, f.x
	done := make(chan error, 1)
	go func() { done <- x.Wait(fr.ctx) }()
	tick := fr.cfg.Clock.NewTicker(followEvery)
	defer tick.Stop()
	f.last, _ = x.Progress()
	f.lastProgress = fr.cfg.Clock.Now()
	f.rejectedBefore = x.Rejected()
	for {
		addrs := fr.peers.addrs(f.fallback)
		if !fr.cfg.Origin {
			// The origin never dials hosts: a connection it opened would let
			// them ask it for anything, and each piece should leave it once,
			// as a stripe.
			x.AddPeers(addrs)
		}
		select {
		case err := <-done:
			fr.stalls.reportBanned()
			return err
		case err := <-f.stripe:
			f.stripe = nil
			if err != nil && fr.ctx.Err() == nil {
				fr.cfg.Log.Warn("stripe from the origin failed; fetching it from the swarm", "release", f.rel.ann.Release, "err", err)
				f.fallback = true
			}
			continue
		case <-tick.C():
		}
		f.tick(len(addrs))
		fr.stalls.reportBanned()
	}
}

// tick checks the transfer's progress once: it notes a stall and its
// reason, falls back to the origin, and reconnects, as follow describes.
// known is how many peer addresses the transfer was given.
func (f *pieceFetch) tick(known int) {
	fr, x, clk := f.fr, f.x, f.fr.cfg.Clock
	got, _ := x.Progress()
	if got != f.last {
		f.last, f.lastProgress, f.rejectedBefore = got, clk.Now(), x.Rejected()
		f.setStuck("", "")
		return
	}
	stalled := clk.Since(f.lastProgress)
	if f.hadStripe && !f.fallback && f.stripe == nil && stalled > min(orphanAfter, fr.cfg.StallAfter) {
		fr.cfg.Log.Info("own stripe done, no progress: fetching what is left from the origin too",
			"release", f.rel.ann.Release, "stalled", stalled.Round(time.Millisecond))
		f.fallback = true
	}
	rejected := x.Rejected() - f.rejectedBefore
	every := min(reconnectAfter, fr.cfg.StallAfter)
	holding := -1 // peers holding a missing piece, counted once a tick when needed
	if stalled >= every {
		holding = x.PeersWithMissing()
	}
	if stalled >= fr.cfg.StallAfter {
		f.fallback = true
		// Right after a reconnect the host is briefly unconnected: not a
		// reason worth reporting.
		if clk.Since(f.lastReconnect) >= reconnectGrace {
			f.setStuck(f.diagnose(known, holding, rejected))
		}
	}
	evidence := rejected > 0 || stalled >= fr.cfg.StallAfter
	if stalled >= every && clk.Since(f.lastReconnect) >= every && evidence && !x.Paused() && holding > 0 {
		fr.cfg.Log.Info("no progress although peers hold missing pieces: reconnecting to them",
			"release", f.rel.ann.Release, "stalled", stalled.Round(time.Millisecond),
			"peers_holding", holding, "rejected_requests", rejected)
		x.Reconnect()
		x.AddPeers(fr.peers.addrs(f.fallback))
		f.lastReconnect = clk.Now()
	}
}

// followEvery is how often follow looks at a transfer's progress;
// orphanAfter, reconnectAfter and reconnectGrace: see follow.
const (
	followEvery    = time.Second
	orphanAfter    = 3 * time.Second
	reconnectAfter = 5 * time.Second
	reconnectGrace = 2 * time.Second
)

// setStuck records why the transfer makes no progress ("" once it moves
// again) and logs each new reason. When a stall begins it also logs
// the transfer's state in the engine (each connection's choke and
// interest flags, requests in flight either way, pieces held): what tells
// a peer that will not send from a host that does not ask.
func (f *pieceFetch) setStuck(reason StallReason, why string) {
	fr, rel := f.fr, f.rel
	wasReason, was := fr.reg.setStuck(rel, reason, why)
	if reason != "" && reason != wasReason {
		fr.stalls.begun(reason)
	}
	if why == was {
		return
	}
	if why != "" {
		fr.cfg.Log.Warn("fetch stalled", "release", rel.ann.Release, "why", why)
		if was == "" {
			fr.cfg.Log.Info("engine state at the stall", "release", rel.ann.Release, "state", f.x.Status())
		}
	}
	fr.cfg.OnChange()
}

// diagnose says why the transfer makes no progress, as a kind and in
// words. known is how many peer addresses it was given, holding how many
// connected peers hold a piece it lacks, rejected how many Reject messages
// peers sent since progress stopped.
func (f *pieceFetch) diagnose(known, holding int, rejected int64) (StallReason, string) {
	fr, x, since := f.fr, f.x, f.lastProgress
	st := x.Stats()
	bad := len(fr.stalls.bannedIPs())
	werr, werrAt := x.WriteErr()
	switch {
	case known == 0:
		return StallNoPeers, "no peers: membership knows no other host"
	case werr != nil && werrAt.After(since):
		return StallWriteFailed, fmt.Sprintf("writing received blocks fails (downloads pause %s, then retry): %v", writeRetry, werr)
	case st.ActivePeers == 0 && bad > 0:
		return StallPeersBanned, fmt.Sprintf("no usable peers: %d banned for sending data that failed verification", bad)
	case st.ActivePeers == 0:
		return StallNotConnected, fmt.Sprintf("not connected to any of %d known peers", known)
	case holding == 0:
		return StallNoHolder, fmt.Sprintf("connected to %d peers, none holds a missing piece", st.ActivePeers)
	case st.PiecesDirtiedBad.Int64() > 0:
		return StallBadPieces, fmt.Sprintf("%d pieces failed verification", st.PiecesDirtiedBad.Int64())
	case rejected > 0:
		return StallRejected, fmt.Sprintf("%d peers hold missing pieces but none is sending; they sent %d rejects since the stall began "+
			"(failed reads, or answers to our cancels); reconnecting about every %s",
			holding, rejected, min(reconnectAfter, fr.cfg.StallAfter))
	default:
		return StallNotSending, fmt.Sprintf("%d peers hold missing pieces but none is sending: choking, rate-limited, or not answering "+
			"(reconnecting about every %s)", holding, min(reconnectAfter, fr.cfg.StallAfter))
	}
}
