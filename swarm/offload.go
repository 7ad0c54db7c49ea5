package swarm

import (
	"scatter/artifact/core"
	"time"
)

// offloadEvery is how often the origin counts the hosts holding each release.
const offloadEvery = 250 * time.Millisecond

// offloadLoop stops the origin uploading a release once enough hosts hold
// it: the origin's uplink is the one every host would otherwise share, and
// from then on the hosts serve each other. If hosts holding it leave, the
// origin serves again.
func (n *Node) offloadLoop() {
	defer n.wg.Done()
	tick := n.cfg.Clock.NewTicker(offloadEvery)
	defer tick.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-tick.C():
		}
		holders := map[core.ReleaseID]int{}
		for _, p := range n.cfg.Peers.Peers() {
			if p.Origin {
				continue
			}
			for _, id := range p.Holds {
				holders[id]++
			}
		}
		for _, id := range n.reg.offload(func(id core.ReleaseID) bool { return holders[id] >= n.cfg.OffloadAfter }) {
			n.cfg.Log.Info("origin upload", "release", id, "hosts_holding", holders[id], "serving", holders[id] < n.cfg.OffloadAfter)
		}
	}
}
