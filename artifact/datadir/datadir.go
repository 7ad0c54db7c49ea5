// Package datadir names every path under a host's data directory. It is the
// one place that joins those names: the store, the swarm, the agent, the
// deploy controller, the bench harness and the CLI all ask it, so the layout
// on disk is written down once and a later change touches one file.
//
// A data directory holds one directory per repo and a few files of the host
// itself:
//
//	<data>/control.sock              the daemon's control socket
//	<data>/commands.seen             command sequence numbers already run
//	<data>/.reserve                  space freed for a rollback when the disk is full
//	<data>/members                   the gossip members seen alive, to rejoin after a restart
//	<data>/host.key                  the host's own ed25519 key (0600)
//	<data>/roster                    the newest deploy-signed roster seen
//	<data>/<repo>/                   one repo (see Repo)
//
// A repo directory is also its chunk store: the store's own names (packs,
// manifests, tmp, lock) sit beside the swarm's and the agent's. Existing data
// directories were laid out with exactly these names, so they keep working.
//
// The package imports nothing of ours but the value types, so every other
// package may use it.
package datadir

import (
	"path/filepath"

	"scatter/artifact/core"
)

// Default is the data directory when none is given: the one the package
// creates (packaging/), owned by the scatter user.
const Default Data = "/var/lib/scatter"

// Data is a host's data directory.
type Data string

// Dir is the directory itself.
func (d Data) Dir() string { return string(d) }

// Repo is the directory of one repo. The caller validates the name
// (artifact.ValidName): a name with a slash or dots must never reach here.
func (d Data) Repo(name string) Repo { return Repo(filepath.Join(string(d), name)) }

// ControlSocket is the daemon's control socket (a Unix socket).
func (d Data) ControlSocket() string { return filepath.Join(string(d), "control.sock") }

// CommandsSeen records the command sequence numbers the agent has run, so a
// replayed command is refused after a restart too.
func (d Data) CommandsSeen() string { return filepath.Join(string(d), "commands.seen") }

// Reserve is space the daemon keeps in reserve on the data directory's
// file system and frees when the disk is full, so that a rollback to a
// release the host retains can still write its few small records.
func (d Data) Reserve() string { return filepath.Join(string(d), ".reserve") }

// Members remembers the gossip members this host has seen alive, name and
// address, so that a restarted daemon rejoins them (membership.Config.KnownFile).
func (d Data) Members() string { return filepath.Join(string(d), "members") }

// HostKey is the host's own ed25519 private key (PEM, mode 0600), created
// on the daemon's first start: it signs what the host says about itself.
func (d Data) HostKey() string { return filepath.Join(string(d), "host.key") }

// Roster is the newest deploy-signed roster the host has seen, kept so that
// a restarted daemon refuses an older one.
func (d Data) Roster() string { return filepath.Join(string(d), "roster") }

// Repo is one repo's directory: its chunk store, its torrents and
// announcements, its staged release trees, the links the agent switches, and
// on the deploy host its config, lock and audit log.
type Repo string

// Dir is the repo directory itself; the chunk store opens here.
func (r Repo) Dir() string { return string(r) }

func (r Repo) join(name ...string) string {
	return filepath.Join(append([]string{string(r)}, name...)...)
}

// Store: content-addressed chunks and manifests.

// Packs holds the pack files of chunk bytes.
func (r Repo) Packs() string { return r.join("packs") }

// Pack is one pack file.
func (r Repo) Pack(name string) string { return r.join("packs", name) }

// Manifests holds one signed manifest per release.
func (r Repo) Manifests() string { return r.join("manifests") }

// Manifest is the signed manifest of one release.
func (r Repo) Manifest(id core.ReleaseID) string { return r.join("manifests", id.String()) }

// Tmp holds files being written before their atomic rename; what is left
// there with no writer alive is a crashed writer's.
func (r Repo) Tmp() string { return r.join("tmp") }

// StoreLock is the store's writer lock file (flock).
func (r Repo) StoreLock() string { return r.join("lock") }

// Swarm: what a release travels as.

// Torrents holds the info bytes of each release's torrents.
func (r Repo) Torrents() string { return r.join("torrents") }

// Torrent is the info bytes of one release's torrent of one kind ("full" or
// "delta").
func (r Repo) Torrent(id core.ReleaseID, kind string) string {
	return r.join("torrents", id.String()+"."+kind)
}

// Announcements holds the signed announcement of each known release, so a
// restarted daemon knows them again.
func (r Repo) Announcements() string { return r.join("announcements") }

// Announcement is the signed announcement of one release.
func (r Repo) Announcement(id core.ReleaseID) string { return r.join("announcements", id.String()) }

// Partial holds the pieces of fetches in progress.
func (r Repo) Partial() string { return r.join("partial") }

// Staged trees and the links that name them.

// Releases holds one materialized, read-only tree per staged release.
func (r Repo) Releases() string { return r.join("releases") }

// Release is the staged tree of one release.
func (r Repo) Release(id core.ReleaseID) string { return r.join("releases", id.String()) }

// ReleaseRecord is what materialize saw of each file of the staged tree of
// one release when it wrote it (TreeRecord of the tree).
func (r Repo) ReleaseRecord(id core.ReleaseID) string { return TreeRecord(r.Release(id)) }

// TreeRecord names the record of a materialized tree: a hidden sibling,
// <parent>/.<name>.files, so that it is not part of the tree. Trees
// materialized anywhere (scatter materialize DEST) have one too.
func TreeRecord(tree string) string {
	tree = filepath.Clean(tree)
	return filepath.Join(filepath.Dir(tree), "."+filepath.Base(tree)+".files")
}

// ReleaseLinkTarget is what a link in the repo directory holds for a
// release: relative, so a data directory can move.
func ReleaseLinkTarget(id core.ReleaseID) string { return filepath.Join("releases", id.String()) }

// Names of the links the agent switches in a repo directory.
const (
	CurrentLink  = "current"  // -> releases/<id>, what runs
	PreviousLink = "previous" // -> releases/<id>, what ran before
)

// Link is a link in the repo directory (CurrentLink, PreviousLink).
func (r Repo) Link(name string) string { return r.join(name) }

// PromotePending marks a promote whose switch happened but whose restart has
// not finished.
func (r Repo) PromotePending() string { return r.join(".promote-pending") }

// DeployStep records the newest step of the newest deploy run on this host.
func (r Repo) DeployStep() string { return r.join(".deploy-step") }

// The deploy host's files.

// Config is the repo's installed deploy config (scatter.yaml).
func (r Repo) Config() string { return r.join("scatter.yaml") }

// Deployed records the release the last deploy brought the targets to.
func (r Repo) Deployed() string { return r.join("deployed") }

// Audit is the deploy audit log, one JSON object a line.
func (r Repo) Audit() string { return r.join("audit.jsonl") }

// DeployLock is held by the one deploy of this repo in progress.
func (r Repo) DeployLock() string { return r.join("deploy.lock") }

// PartialFile is one file of a fetch in progress: the pieces received so far
// (suffix "partial") or the map of pieces already moved into the store
// ("done"), of one release's torrent of one kind.
func (r Repo) PartialFile(id core.ReleaseID, kind, suffix string) string {
	return r.join("partial", id.String()+"."+kind+"."+suffix)
}

// LinkTemp is where a new link is made before it is renamed over the old
// one, so the name always resolves to a complete release.
func (r Repo) LinkTemp(name string) string { return r.join("." + name + ".new") }

// Data is the data directory the repo directory is in.
func (r Repo) Data() Data { return Data(filepath.Dir(filepath.Clean(string(r)))) }
