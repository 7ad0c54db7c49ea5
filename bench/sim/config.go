package sim

import (
	"errors"
	"fmt"
	"math/rand/v2"

	"scatter/swarm"
)

// Config describes one simulated fan-out. The zero value of every optional
// field means the default written beside it, chosen to match the real swarm
// (package swarm and the anacrolix/torrent defaults it keeps).
type Config struct {
	// Hosts is the number of fetching hosts (the origin is extra).
	Hosts int `json:"hosts"`
	// Size is S, the bytes of the release's torrent.
	Size int64 `json:"size"`
	// PieceLen is the piece length; 0 picks swarm's rule: Size/1024 rounded
	// up to a power of two, between 16 KiB and 4 MiB.
	PieceLen int64 `json:"piece_len,omitempty"`
	// Upload is U, every host's upload cap in bytes per second. Download is
	// unlimited, as in swarm.
	Upload float64 `json:"upload"`
	// OriginUpload is the origin's upload cap; 0 means Upload.
	OriginUpload float64 `json:"origin_upload,omitempty"`
	// Uploads overrides Upload for some hosts, by host index
	// (heterogeneous uplinks; see SlowHosts).
	Uploads map[int]float64 `json:"uploads,omitempty"`

	// Neighbors is how many peer connections a host keeps; 0 means 50,
	// anacrolix's EstablishedConnsPerTorrent. Below Neighbors+1 hosts every
	// host connects to every other.
	Neighbors int `json:"neighbors,omitempty"`
	// UploadSlots caps the transfers a host uploads at once, sharing its
	// upload equally among them; 0 means no cap: every interested neighbour
	// is unchoked, as swarm configures anacrolix.
	UploadSlots int `json:"upload_slots,omitempty"`
	// OriginSlots caps the stripes the origin serves at once, in slot order;
	// 0 means every stripe at once, as swarm's origin does. (An experiment:
	// with more hosts than pieces, serving every stripe at once delivers
	// every piece only at S/U_origin.)
	OriginSlots int `json:"origin_slots,omitempty"`
	// OriginRoundRobin, with OriginSlots, makes a stripe give up its slot
	// after each piece, so the origin serves one piece per host in turn
	// rather than one host's stripe after another. (An experiment.)
	OriginRoundRobin bool `json:"origin_round_robin,omitempty"`

	// DCs is the number of datacenters; 0 or 1 means one. Host i is in
	// datacenter i mod DCs; the origin is in datacenter 0.
	DCs int `json:"dcs,omitempty"`
	// InterDC caps, in bytes per second, each direction of the link between
	// two datacenters; 0 means unlimited.
	InterDC float64 `json:"inter_dc,omitempty"`
	// TopologyAware makes a host keep CrossPeers of its neighbours in other
	// datacenters (the rest in its own) and ask a remote neighbour only for
	// pieces that no host of its own datacenter holds or is receiving.
	TopologyAware bool `json:"topology_aware,omitempty"`
	// CrossPeers is the remote neighbours a topology-aware host keeps; 0
	// means 4.
	CrossPeers int `json:"cross_peers,omitempty"`

	// Churn makes some hosts leave mid-fan-out and rejoin later.
	Churn Churn `json:"churn,omitzero"`
	// StallAfter is how long, in seconds, a host may receive nothing before
	// it adds the origin as a peer-wire peer (swarm's fallback); 0 means 10,
	// negative means never.
	StallAfter float64 `json:"stall_after,omitempty"`
	// OffloadAfter is how many hosts must hold the release before the
	// origin stops uploading on the peer wire; 0 means 2.
	OffloadAfter int `json:"offload_after,omitempty"`

	// Seed makes the run reproducible: the same Config gives the same
	// Result.
	Seed uint64 `json:"seed"`
}

// Churn makes Fraction of the hosts (chosen by the seed) leave at time
// Leave and rejoin at Rejoin, both in units of S/U. A host that leaves keeps
// the pieces it holds, and on rejoining starts its fetch again as the
// daemon does: a new stripe among the hosts that still lack the release.
type Churn struct {
	Fraction float64 `json:"fraction,omitempty"`
	Leave    float64 `json:"leave,omitempty"`
	Rejoin   float64 `json:"rejoin,omitempty"`
}

// SlowHosts sets the upload of every host whose index is a multiple of
// round(1/fraction) to Upload*factor: fraction 0.1, factor 0.25 makes one
// host in ten upload at U/4.
func (c *Config) SlowHosts(fraction, factor float64) {
	if fraction <= 0 {
		return
	}
	step := max(1, int(1/fraction+0.5))
	if c.Uploads == nil {
		c.Uploads = map[int]float64{}
	}
	for i := 0; i < c.Hosts; i += step {
		c.Uploads[i] = c.Upload * factor
	}
}

// Validate checks c without changing it.
func (c Config) Validate() error {
	switch {
	case c.Hosts < 1:
		return errors.New("sim: Hosts must be at least 1")
	case c.Size < 1:
		return errors.New("sim: Size must be positive")
	case c.PieceLen < 0:
		return errors.New("sim: negative PieceLen")
	case c.Upload <= 0:
		return errors.New("sim: Upload must be positive")
	case c.OriginUpload < 0 || c.InterDC < 0:
		return errors.New("sim: negative rate")
	case c.Neighbors < 0 || c.UploadSlots < 0 || c.OriginSlots < 0 || c.DCs < 0 || c.CrossPeers < 0 || c.OffloadAfter < 0:
		return errors.New("sim: negative count")
	case c.Churn.Fraction < 0 || c.Churn.Fraction > 1:
		return errors.New("sim: Churn.Fraction must be between 0 and 1")
	case c.Churn.Fraction > 0 && !(c.Churn.Leave >= 0 && c.Churn.Rejoin > c.Churn.Leave):
		return errors.New("sim: churn needs 0 <= Leave < Rejoin")
	}
	if c.pieceLen() > 0 && (c.Size+c.pieceLen()-1)/c.pieceLen() > 1<<20 {
		return fmt.Errorf("sim: %d pieces is too many", (c.Size+c.pieceLen()-1)/c.pieceLen())
	}
	for i, u := range c.Uploads {
		if i < 0 || i >= c.Hosts || u <= 0 {
			return fmt.Errorf("sim: Uploads[%d] = %g: host out of range or rate not positive", i, u)
		}
	}
	return nil
}

// PieceLenFor is swarm's piece length rule (swarm.PieceLenFor), so the
// simulator cuts a release exactly as the real torrents do.
func PieceLenFor(size int64) int64 { return swarm.PieceLenFor(size) }

func (c Config) pieceLen() int64 {
	if c.PieceLen > 0 {
		return c.PieceLen
	}
	return PieceLenFor(c.Size)
}

func (c Config) originUpload() float64 {
	if c.OriginUpload > 0 {
		return c.OriginUpload
	}
	return c.Upload
}

func (c Config) hostUpload(i int) float64 {
	if u, ok := c.Uploads[i]; ok {
		return u
	}
	return c.Upload
}

func (c Config) neighbors() int  { return defInt(c.Neighbors, 50) }
func (c Config) crossPeers() int { return defInt(c.CrossPeers, 4) }
func (c Config) dcs() int        { return defInt(c.DCs, 1) }
func (c Config) offload() int    { return defInt(c.OffloadAfter, 2) }

func (c Config) stallAfter() float64 {
	if c.StallAfter == 0 {
		return 10
	}
	return c.StallAfter
}

func defInt(v, d int) int {
	if v == 0 {
		return d
	}
	return v
}

func (c Config) rng(stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(c.Seed, stream))
}
