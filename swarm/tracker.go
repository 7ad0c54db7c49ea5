package swarm

import (
	"net/http"
	"net/netip"

	"github.com/anacrolix/torrent/bencode"
)

// tracker is a minimal HTTP tracker, so that a stock BitTorrent client
// given a release's .torrent finds scatter hosts. It answers, for any
// torrent of a release this node knows, with every live host's peer-wire
// address (its own included); it records nothing about the asker. Both
// functions are called from concurrent requests and must not block.
type tracker struct {
	knows func(InfoHash) bool // a torrent of a release the node knows
	peers func() []string     // peer-wire addresses, this host's included
}

func (t tracker) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	fail := func(reason string) {
		b, _ := bencode.Marshal(map[string]any{"failure reason": reason})
		w.Write(b)
	}
	ih := req.URL.Query().Get("info_hash")
	if len(ih) != 20 {
		fail("info_hash must be 20 bytes")
		return
	}
	var h InfoHash
	copy(h[:], ih)
	if !t.knows(h) {
		fail("unknown torrent")
		return
	}
	addrs := t.peers()
	compact := req.URL.Query().Get("compact") != "0"
	var peers any
	if compact {
		var b []byte
		for _, a := range addrs {
			ap, err := netip.ParseAddrPort(a)
			if err != nil || !ap.Addr().Is4() {
				continue
			}
			ip := ap.Addr().As4()
			b = append(append(b, ip[:]...), byte(ap.Port()>>8), byte(ap.Port()))
		}
		peers = b
	} else {
		var list []map[string]any
		for _, a := range addrs {
			if ap, err := netip.ParseAddrPort(a); err == nil {
				list = append(list, map[string]any{"ip": ap.Addr().String(), "port": ap.Port()})
			}
		}
		peers = list
	}
	b, err := bencode.Marshal(map[string]any{"interval": 30, "peers": peers})
	if err != nil {
		fail(err.Error())
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Write(b)
}
