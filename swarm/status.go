package swarm

import (
	"net"
	"net/netip"
	"time"

	"scatter/artifact/core"
)

// Status is what a node reports about itself: through gossip to the
// cluster, and to `scatter status`.
type Status struct {
	Name               string       `json:"name"`
	Origin             bool         `json:"origin,omitempty"`
	Repos              []RepoStatus `json:"repos"`
	ReceivedFromOrigin int64        `json:"received_from_origin"` // useful piece bytes
	ReceivedFromPeers  int64        `json:"received_from_peers"`
	Uploaded           int64        `json:"uploaded"`
	// UploadedMeta is the manifest and info bytes served to peers.
	UploadedMeta int64    `json:"uploaded_meta,omitempty"`
	BadPeers     []string `json:"bad_peers,omitempty"` // banned for data that failed verification
	// Clock is the node's time when it answered: the deploy host compares
	// it with its own to show each host's clock skew.
	Clock time.Time `json:"clock,omitzero"`
	// PeersConnected counts open peer-wire connections, over all torrents.
	PeersConnected int `json:"peers_connected,omitempty"`
	// Stalls counts the stalls begun since the daemon started, by reason.
	Stalls map[StallReason]int64 `json:"stalls,omitempty"`
	// WriteFailures counts received blocks that could not be written.
	WriteFailures int64 `json:"write_failures,omitempty"`
}

// RepoStatus lists a repo's releases, newest first.
type RepoStatus struct {
	Repo     string          `json:"repo"`
	Releases []ReleaseStatus `json:"releases"`
}

// ReleaseStatus is one release on one host.
type ReleaseStatus struct {
	Release core.ReleaseID `json:"release"`
	Version string         `json:"version"`
	State   State          `json:"state"`
	Kind    string         `json:"kind,omitempty"`
	Done    int64          `json:"done,omitempty"` // bytes of the torrent complete
	Total   int64          `json:"total,omitempty"`
	Peers   int            `json:"peers,omitempty"` // connected peers while fetching
	Stuck   string         `json:"stuck,omitempty"` // why a fetch makes no progress
	// StuckReason is Stuck's kind.
	StuckReason StallReason `json:"stuck_reason,omitempty"`
	Error       string      `json:"error,omitempty"`
	Seconds     float64     `json:"seconds,omitempty"` // fetch time, once staged
	// HeldSeconds is the time from the start of the fetch until every chunk
	// was in the store (before materializing).
	HeldSeconds float64   `json:"held_seconds,omitempty"`
	HeldAt      time.Time `json:"held_at,omitzero"`
	// Offloaded: on the origin, uploads stopped because enough hosts hold it.
	Offloaded bool `json:"offloaded,omitempty"`
	// TransferCPUSeconds and StageCPUSeconds are the daemon process's CPU
	// time from the start of the fetch until every chunk was in the store,
	// and from then until the tree was staged. They are the host's cost of
	// each phase when one release is fetched at a time in its own process,
	// as `scatter seed` does; in a process that runs many hosts (the
	// in-process bench) they are the whole process's.
	TransferCPUSeconds float64 `json:"transfer_cpu_seconds,omitempty"`
	StageCPUSeconds    float64 `json:"stage_cpu_seconds,omitempty"`
}

// Status reports the node's releases and counters.
func (n *Node) Status() Status {
	n.stalls.reportBanned()
	s := Status{Name: n.cfg.Name, Origin: n.cfg.Origin, Uploaded: n.e.Uploaded(), UploadedMeta: n.e.MetaUploaded(),
		PeersConnected: n.e.ActivePeers(), WriteFailures: n.e.WriteFailures(), Clock: n.cfg.Clock.Now()}
	origins := map[netip.Addr]bool{}
	for _, p := range n.cfg.Peers.Peers() {
		if h, _, err := net.SplitHostPort(p.BT); err == nil && p.Origin {
			if a, err := netip.ParseAddr(h); err == nil {
				origins[a] = true
			}
		}
	}
	for ip, b := range n.e.ReceivedFrom() {
		if origins[ip] {
			s.ReceivedFromOrigin += b
		} else {
			s.ReceivedFromPeers += b
		}
	}
	s.Stalls, s.BadPeers = n.stalls.report()
	s.Repos = n.reg.status()
	return s
}

// Release reports one release's status; false if it was not announced
// here (or was collected).
func (n *Node) Release(repo string, id core.ReleaseID) (ReleaseStatus, bool) {
	return n.reg.release(repo, id)
}

// Staged reports whether the release is staged (or, on the origin, seeded).
func (n *Node) Staged(repo string, id core.ReleaseID) bool { return n.reg.staged(repo, id) }

// HeldReleases lists the releases whose every chunk this node holds, for
// gossip state.
func (n *Node) HeldReleases() []core.ReleaseID { return n.reg.held() }
