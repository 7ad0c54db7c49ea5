// Package rollout is the decision logic of a rolling deploy: stage a
// release everywhere, promote it to a canary pool, watch the canaries,
// promote the rest in batches, and roll back when too many hosts fail.
//
// It is a pure, deterministic state machine in the manner of etcd raft: a
// Machine does no I/O, starts no goroutine, reads no clock and draws no
// random number. Inputs (Start, Ack, Tick, Abort), each carrying the
// current time, go in; Actions come out. The deploy controller (package
// orchestrate/deploy) owns one Machine in one goroutine, turns the host actions
// into signed commands over gossip, feeds the hosts' acks back in, and
// calls Tick about once a second. Equal inputs give equal actions, so the
// tests drive the whole deploy with a fake clock in milliseconds.
//
// # Vocabulary
//
//   - plan: one deploy, its hosts in rollout order and its tolerances
//     (Plan). The zero value of each optional field means a default.
//   - step: one command wave, e.g. "promote release R on these 7 hosts".
//     Each has a new Step number; acks name it. A resend repeats a step to
//     the hosts that have not acked, with the same Step.
//   - ack: a host's answer to a step, sent when the work has finished (a
//     Promote ack is OK only if current was switched, the restart action
//     ran and the checks passed).
//   - phase: a named part of the deploy: "stage", "canary", "observe",
//     "batch 1".."batch N", "rollback". A Phase action marks the start of
//     each, for progress and the audit log.
//   - failure: a host that acked not OK or did not ack before the timeout
//     (unreachable). Staging and batch failures count against the failure
//     limit; a canary failure stops the deploy by itself.
//   - size: a number of hosts, "3" or "25%" of some total (Size); a
//     percentage rounds up.
//
// # The rules
//
// Stage. One Stage action to every host, bounded by StageTimeout. Hosts
// that fail or time out are failures and are left out of promotion. If
// there are more of them than FailureLimit.Of(len(Hosts)) the deploy ends
// Failed with nothing promoted; likewise if there are more than the batch
// limit (below) and some host would be promoted in a batch, since the
// batches could never start. SkipStage skips the phase (the release is
// already staged, as in a rollback to a retained release).
//
// Canary. The canary pool is the first Canary hosts, in Hosts order, among
// those that staged: a host that failed staging is replaced by the next,
// so the pool keeps its size. One Promote goes to the pool (ActionTimeout).
// When every canary has answered or timed out: any failure rolls back; if
// all passed and Observe > 0, phase "observe" waits Observe (measured by
// Tick) and then a Check goes to the canaries, and again any failure rolls
// back. Observe 0 skips the wait and the check.
//
// Batches. The other staged hosts go in batches of
// max(1, Batch.Of(number of them)), in Hosts order, one at a time: a batch
// starts only when every host of the previous one has answered or timed
// out. Failures accumulate across staging and batches; the batch limit is
// FailureLimit.Of(len(Hosts) - Canary). As soon as failures exceed it no
// new batch starts and Promote is no longer re-sent, but the batch in
// flight is allowed to finish (a host may be half way through a restart),
// and then the deploy rolls back. After the last batch within the limit
// the deploy ends with Success.
//
// Rollback. Every host that was sent a Promote, canaries, failed and
// unreachable hosts included, gets a Rollback to its From release; hosts
// are grouped by From, one step per group, all sent at once. A host
// without a From release gets none: its state becomes HostNoRollback and
// the Reason says so, but that alone does not make the rollback fail. If
// every rollback acks OK the result is RolledBack (Aborted when an abort
// caused it); if any fails or times out, RollbackFailed.
//
// Abort. No new phase or batch starts after Abort, and Promote is not
// re-sent. Before any Promote (that is, before Start or during staging)
// the deploy ends Aborted at once, because staging touches nothing a host
// runs. Otherwise the wave in flight finishes first (acks or timeouts);
// then OnAbortRollback rolls back as above and OnAbortHalt ends Aborted
// with every host left as it is. While observing the canaries nothing is
// in flight, so the abort acts at once. The first cause to stop the deploy
// wins: an abort after the limit was passed does not turn the coming
// rollback into a halt (the result is RolledBack), failures seen after an
// abort with OnAbortHalt do not start a rollback, and an abort during a
// rollback changes nothing.
//
// Retries and timeouts. Commands travel over gossip, which may lose them.
// Every RetryEvery after the last send the step is re-sent (Resend) to the
// hosts that have not acked, until the timeout, which counts from the
// first send. At the timeout a silent host is marked unreachable.
//
// Late acks. A host marked unreachable may still answer: the message was
// slow, not lost. Decisions are never taken back: the host stays counted
// as a failure, and a batch or rollback that has started goes on. But the
// host's state records the answer (HostState.Late) if the host has not
// moved on since (e.g. been sent a Rollback). A host that turns out to have
// been promoted late needs no special case: it was sent a Promote, so any
// rollback already includes it. The controller must deliver a host's
// commands in Step order for this to hold on the host (a Rollback must not
// overtake the Promote it undoes).
//
// Ignored input. Acks for unknown steps, from hosts a step was not sent
// to, or repeated, and any input before Start or after Done, return nil.
// Done is the last action, emitted exactly once; afterwards acks still
// update host states (for the summary) but return nothing.
package rollout
