package swarm

import (
	"fmt"
	"io"
	"net/url"
	"os"

	"github.com/anacrolix/torrent/metainfo"

	"scatter/artifact/core"
	"scatter/artifact/datadir"
)

// StockTorrent is a release's torrent as a stock BitTorrent client takes
// it: the info bytes a host serves, announced to a tracker on a daemon's
// metadata server. The data is the release's chunks as stored (zstd
// frames, back to back).
type StockTorrent struct {
	mi   metainfo.MetaInfo
	name string
}

// OpenStockTorrent reads the info bytes of a release's torrent of kind
// ("full" or "delta") from repo, where publish or a fetch saved them.
func OpenStockTorrent(repo datadir.Repo, id core.ReleaseID, kind, tracker string) (*StockTorrent, error) {
	if kind != Full.String() && kind != Delta.String() {
		return nil, fmt.Errorf("torrent kind: want full or delta, got %q", kind)
	}
	info, err := os.ReadFile(repo.Torrent(id, kind))
	if err != nil {
		return nil, fmt.Errorf("no %s torrent for release %s in this store (is it published or staged here?): %w", kind, id.Short(), err)
	}
	return &StockTorrent{mi: metainfo.MetaInfo{InfoBytes: info, Announce: tracker, CreatedBy: "scatter"},
		name: id.String() + "." + kind}, nil
}

// Write writes the .torrent file.
func (t *StockTorrent) Write(w io.Writer) error { return t.mi.Write(w) }

// Magnet is the torrent's magnet link.
func (t *StockTorrent) Magnet() string {
	ih := t.mi.HashInfoBytes()
	return fmt.Sprintf("magnet:?xt=urn:btih:%s&dn=%s&tr=%s", ih.HexString(), url.QueryEscape(t.name), url.QueryEscape(t.mi.Announce))
}
