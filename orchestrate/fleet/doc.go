// Package fleet is what the deploy host does to the fleet, as library
// calls: publish a release (prepare hooks, build, torrents, announcement),
// plan a deploy or rollback (which hosts, which release, in which order),
// run it under the repo's deploy lock with an audit log, record what the
// fleet was deployed to so that status can flag drift, and abort a running
// deploy. `scatter publish`, `deploy`, `rollback`, `abort` and `status` each
// parse their flags and call one function here; the bench harness and the
// test clusters build releases with the same Build.
//
// The rules of a rollout (canaries, batches, failure limit, rollback) are
// package rollout's; package deploy drives them over gossip. This package
// wires those to the local daemon (its control socket, package host) and
// to the deploy host's files under the data directory (package datadir).
package fleet

import "errors"

// ErrInvalid marks a request that cannot be carried out as asked: a config
// for another repo, a release that is not retained or is ambiguous, a bad
// size. The CLI exits 2 for it.
var ErrInvalid = errors.New("invalid request")

// invalidError is an ErrInvalid with its own message.
type invalidError struct{ msg string }

func (e invalidError) Error() string        { return e.msg }
func (e invalidError) Is(target error) bool { return target == ErrInvalid }
