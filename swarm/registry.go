package swarm

import (
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"scatter/artifact"
	"scatter/artifact/core"
	"scatter/artifact/datadir"
)

// registry is what a node knows of its repos: each repo's store and
// directory, the releases announced for it with their State, retention
// (Keep, retention.go), and the layouts the node serves as stripes. Its
// lock guards the repos map, every release's fields and the layouts; it is
// taken only in the registry's methods and never held while calling out,
// except into a release's Transfers (status, offload), whose locks are
// below it.
//
// A release's State is written by one goroutine, its repo's fetch loop
// (fetch.go), through next and finish; Announce creates it Queued and
// wakes that loop. Everyone else reads.
type registry struct {
	data datadir.Data
	pub  ed25519.PublicKey
	keep int
	log  *slog.Logger

	mu      sync.Mutex
	repos   map[string]*repo
	layouts map[string]*Layout // parsed layouts served as stripes, by "<id>.<kind>"
}

type repo struct {
	name string
	dir  datadir.Repo
	st   *artifact.Store
	rels map[core.ReleaseID]*release
	wake chan struct{} // pokes the repo's fetch loop
}

// release is what a node knows about one announced release. Its fields
// are guarded by the registry's lock.
type release struct {
	ann     *Announcement
	signed  []byte
	state   State
	err     error
	kind    Kind
	total   int64       // bytes of the torrent fetched
	x       *Transfer   // the fetch, while it runs
	seeds   []*Transfer // torrents served once complete
	started time.Time
	done    time.Time
	stuck   string
	reason  StallReason // stuck's kind, for counting
	// retryAt: when a failed fetch is tried again.
	retryAt time.Time
	// offloaded: the origin has stopped uploading this release.
	offloaded bool
	// held: every chunk is in the store (set before staging finishes).
	held   bool
	heldAt time.Time
	// The process's CPU time when the fetch started, when every chunk was
	// in the store, and when staging ended (processCPU).
	cpuStart, cpuHeld, cpuDone time.Duration
}

// statusLocked is rel's status; the registry's lock is held.
func (rel *release) statusLocked() ReleaseStatus {
	x := ReleaseStatus{Release: rel.ann.Release, Version: rel.ann.Version, State: rel.state, Stuck: rel.stuck, StuckReason: rel.reason, Offloaded: rel.offloaded}
	if rel.state != Queued {
		x.Kind = rel.kind.String()
	}
	if rel.err != nil {
		x.Error = rel.err.Error()
	}
	x.Total = rel.total
	if rel.state == Staged {
		x.Done = rel.total
	}
	if rel.x != nil {
		x.Done, x.Total = rel.x.Progress()
		x.Peers = rel.x.Stats().ActivePeers
	}
	if rel.state == Staged {
		x.Seconds = rel.done.Sub(rel.started).Seconds()
	}
	if rel.held {
		x.HeldSeconds = rel.heldAt.Sub(rel.started).Seconds()
		x.HeldAt = rel.heldAt
		x.TransferCPUSeconds = (rel.cpuHeld - rel.cpuStart).Seconds()
	}
	if rel.state == Staged && rel.held {
		x.StageCPUSeconds = (rel.cpuDone - rel.cpuHeld).Seconds()
	}
	return x
}

func newRegistry(dataDir string, pub ed25519.PublicKey, keep int, log *slog.Logger) *registry {
	return &registry{data: datadir.Data(dataDir), pub: pub, keep: keep, log: log,
		repos: map[string]*repo{}, layouts: map[string]*Layout{}}
}

// open returns the named repo, opening its store and directories on first
// use; opened reports that it did (its fetch loop is the caller's to start).
func (g *registry) open(name string) (r *repo, opened bool, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if r, ok := g.repos[name]; ok {
		return r, false, nil
	}
	dir := g.data.Repo(name)
	for _, sub := range []string{dir.Announcements(), dir.Torrents(), dir.Releases()} {
		if err := os.MkdirAll(sub, 0o755); err != nil {
			return nil, false, fmt.Errorf("swarm: repo %s: %w", name, err)
		}
	}
	st, err := artifact.OpenStore(dir.Dir(), g.log.With("repo", name))
	if err != nil {
		return nil, false, err
	}
	// A crash during materialize leaves a hidden partial tree: remove it.
	for _, err := range artifact.RemovePartialTrees(dir.Releases()) {
		g.log.Warn("startup cleanup", "err", err)
	}
	r = &repo{name: name, dir: dir, st: st, rels: map[core.ReleaseID]*release{}, wake: make(chan struct{}, 1)}
	g.repos[name] = r
	return r, true, nil
}

// get returns the named repo, nil if the node has none of that name.
func (g *registry) get(name string) *repo {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.repos[name]
}

// add records a verified announcement of r's as Queued (poke r's fetch
// loop then). It reports false, changing nothing, for a release already known or
// older than the newest Keep ones: a late joiner needs only what is
// retained.
func (g *registry) add(r *repo, a *Announcement, signed []byte) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := r.rels[a.Release]; ok {
		return false
	}
	newer := 0
	for _, rel := range r.rels {
		if rel.ann.Time.After(a.Time) {
			newer++
		}
	}
	if newer >= g.keep {
		return false
	}
	r.rels[a.Release] = &release{ann: a, signed: signed, state: Queued}
	return true
}

// poke wakes r's fetch loop: a release was queued.
func (r *repo) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// next picks r's next release to fetch and marks it Fetching: the oldest
// queued one, else the oldest failed one whose retry is due at now. With
// none, it returns when the next retry falls due (zero: none pending).
// Only r's fetch loop calls it.
func (g *registry) next(r *repo, now time.Time) (*release, time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var next *release
	var retryAt time.Time
	older := func(a, b *release) bool { return b == nil || a.ann.Time.Before(b.ann.Time) }
	for _, rel := range r.rels {
		if rel.state == Queued && older(rel, next) {
			next = rel
		}
	}
	if next == nil {
		for _, rel := range r.rels {
			if rel.state != Failed {
				continue
			}
			if !rel.retryAt.After(now) {
				if older(rel, next) {
					next = rel
				}
			} else if retryAt.IsZero() || rel.retryAt.Before(retryAt) {
				retryAt = rel.retryAt
			}
		}
	}
	if next != nil {
		next.state, next.started = Fetching, now
		next.cpuStart, next.cpuHeld, next.cpuDone = processCPU(), 0, 0
		return next, time.Time{}
	}
	return nil, retryAt
}

// transferring records the torrent a Fetching release is fetched by.
func (g *registry) transferring(rel *release, x *Transfer, kind Kind) {
	g.mu.Lock()
	defer g.mu.Unlock()
	rel.x, rel.kind, rel.total = x, kind, x.Layout.Length
}

// holding records that every chunk of rel is in the store, at now.
func (g *registry) holding(rel *release, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	rel.held, rel.heldAt, rel.cpuHeld = true, now, processCPU()
}

// seeding records the torrents rel is served by once staged.
func (g *registry) seeding(rel *release, seeds []*Transfer) {
	g.mu.Lock()
	defer g.mu.Unlock()
	rel.seeds = seeds
}

// finish ends rel's fetch at now: Staged, or Failed with err and tried
// again retryAfter later. Only the repo's fetch loop calls it.
func (g *registry) finish(rel *release, now time.Time, err error, retryAfter time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	rel.x = nil
	rel.done, rel.cpuDone = now, processCPU()
	if err != nil {
		rel.state, rel.err, rel.retryAt = Failed, err, now.Add(retryAfter)
	} else {
		rel.state, rel.err, rel.stuck, rel.reason = Staged, nil, "", ""
	}
}

// setStuck records why rel's fetch makes no progress ("" once it moves
// again) and returns what it said before.
func (g *registry) setStuck(rel *release, reason StallReason, why string) (wasReason StallReason, was string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	wasReason, was = rel.reason, rel.stuck
	rel.reason, rel.stuck = reason, why
	return wasReason, was
}

// offload turns upload off for every served release that off names, and
// on again for the others; it returns the releases it changed.
func (g *registry) offload(off func(core.ReleaseID) bool) []core.ReleaseID {
	g.mu.Lock()
	defer g.mu.Unlock()
	var changed []core.ReleaseID
	for _, r := range g.repos {
		for id, rel := range r.rels {
			o := off(id)
			if o == rel.offloaded || len(rel.seeds) == 0 && rel.x == nil {
				continue
			}
			rel.offloaded = o
			for _, x := range append(rel.seeds, rel.x) {
				if x != nil {
					x.SetUpload(!o)
				}
			}
			changed = append(changed, id)
		}
	}
	return changed
}

// holds reports whether r's store has the manifest and every chunk of id.
func (g *registry) holds(r *repo, id core.ReleaseID) bool {
	g.mu.Lock()
	rel := r.rels[id]
	held := rel != nil && rel.held
	g.mu.Unlock()
	if held {
		// Kept releases' chunks are pinned: no need to decode a manifest
		// of megabytes to ask the store about each of them.
		return true
	}
	t, err := r.st.Table(id, g.pub)
	if err != nil {
		return false
	}
	defer t.Close()
	for i := range t.Len() {
		if c, err := t.Ref(i); err != nil || !r.st.HasChunk(c.ID) {
			return false
		}
	}
	return true
}

// newestStaged is r's newest staged release but except, as a base to
// materialize from; nil if none.
func (g *registry) newestStaged(r *repo, except core.ReleaseID) *artifact.Previous {
	g.mu.Lock()
	var best *release
	for id, rel := range r.rels {
		if id != except && (rel.state == Staged) && (best == nil || rel.ann.Time.After(best.ann.Time)) {
			best = rel
		}
	}
	g.mu.Unlock()
	if best == nil {
		return nil
	}
	return &artifact.Previous{Release: best.ann.Release, Dir: r.dir.Release(best.ann.Release)}
}

// layout returns the layout of repo's release id of the given kind, parsed
// once: the fetch's or seed's own if the node serves that torrent, else
// from the stored info bytes and manifest.
func (g *registry) layout(r *repo, id core.ReleaseID, kind string) (*Layout, error) {
	key := id.String() + "." + kind
	g.mu.Lock()
	l := g.layouts[key]
	if rel := r.rels[id]; l == nil && rel != nil {
		for _, x := range append([]*Transfer{rel.x}, rel.seeds...) {
			if x != nil && x.Layout.Kind.String() == kind {
				l = x.Layout // shares the fetch's chunk table
			}
		}
	}
	g.mu.Unlock()
	if l != nil {
		return l, nil
	}
	info, err := r.infoBytes(id, kind)
	if err != nil {
		return nil, err
	}
	t, err := r.st.Table(id, g.pub)
	if err != nil {
		return nil, err
	}
	if l, err = ParseInfo(info, t); err != nil {
		return nil, err
	}
	g.mu.Lock()
	g.layouts[key] = l
	g.mu.Unlock()
	return l, nil
}

// infoBytes reads the stored info bytes of release id's torrent of kind.
func (r *repo) infoBytes(id core.ReleaseID, kind string) ([]byte, error) {
	if kind != Full.String() && kind != Delta.String() {
		return nil, fmt.Errorf("unknown torrent kind %q", kind)
	}
	return os.ReadFile(r.dir.Torrent(id, kind))
}

// announcements returns the signed announcements of the retained
// releases, oldest first.
func (g *registry) announcements() [][]byte {
	g.mu.Lock()
	defer g.mu.Unlock()
	var rels []*release
	for _, r := range g.repos {
		for _, rel := range r.rels {
			rels = append(rels, rel)
		}
	}
	sort.Slice(rels, func(i, j int) bool { return rels[i].ann.Time.Before(rels[j].ann.Time) })
	out := make([][]byte, len(rels))
	for i, rel := range rels {
		out[i] = rel.signed
	}
	return out
}

// knows reports whether h is the full or delta torrent of a release the
// node knows.
func (g *registry) knows(h InfoHash) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, r := range g.repos {
		for _, rel := range r.rels {
			if rel.ann.Full == h || (rel.ann.Delta == h && !h.IsZero()) {
				return true
			}
		}
	}
	return false
}

// status lists every repo's releases, repos by name, releases newest first.
func (g *registry) status() []RepoStatus {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []RepoStatus
	for _, r := range g.repos {
		rs := RepoStatus{Repo: r.name}
		for _, rel := range r.rels {
			rs.Releases = append(rs.Releases, rel.statusLocked())
		}
		sort.Slice(rs.Releases, func(i, j int) bool {
			return r.rels[rs.Releases[i].Release].ann.Time.After(r.rels[rs.Releases[j].Release].ann.Time)
		})
		out = append(out, rs)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Repo < out[j].Repo })
	return out
}

// release reports one release's status; false if it is not known.
func (g *registry) release(repo string, id core.ReleaseID) (ReleaseStatus, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	r := g.repos[repo]
	if r == nil || r.rels[id] == nil {
		return ReleaseStatus{}, false
	}
	return r.rels[id].statusLocked(), true
}

// staged reports whether the release is Staged.
func (g *registry) staged(repo string, id core.ReleaseID) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	r := g.repos[repo]
	if r == nil {
		return false
	}
	rel := r.rels[id]
	return rel != nil && rel.state == Staged
}

// held lists the releases whose every chunk the node holds.
func (g *registry) held() []core.ReleaseID {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []core.ReleaseID
	for _, r := range g.repos {
		for id, rel := range r.rels {
			if rel.held {
				out = append(out, id)
			}
		}
	}
	return out
}

// close closes every repo's store.
func (g *registry) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, r := range g.repos {
		r.st.Close()
	}
}

// writeFileAtomic writes a small file through a temp file and a rename.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}
