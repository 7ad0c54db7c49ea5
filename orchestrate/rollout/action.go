package rollout

import (
	"fmt"
	"time"
)

// Kind is what an Action asks the controller to do.
type Kind int

// Kinds start at 1 so that a zero Action is recognisably empty.
const (
	// Stage asks Hosts to fetch and materialize Release without switching
	// to it.
	Stage Kind = iota + 1
	// Promote asks Hosts to switch current to Release, run the restart
	// action and then the checks; its ack is OK only if all of that
	// succeeded.
	Promote
	// Check asks Hosts to run their checks again against what they run.
	Check
	// Rollback asks Hosts to switch current back to Release (their From
	// release), restart and check.
	Rollback
	// Phase tells the controller that a phase begins, for progress and the
	// audit log; nothing is sent to hosts.
	Phase
	// Done ends the deploy with Result and Reason; it is the last action.
	Done
)

func (k Kind) String() string {
	switch k {
	case Stage:
		return "stage"
	case Promote:
		return "promote"
	case Check:
		return "check"
	case Rollback:
		return "rollback"
	case Phase:
		return "phase"
	case Done:
		return "done"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// ToHosts reports whether actions of kind k are commands for hosts (and so
// carry a Step that acks name).
func (k Kind) ToHosts() bool { return k >= Stage && k <= Rollback }

// Action is one thing the controller must do, in the order returned.
type Action struct {
	Kind Kind
	// Step identifies one command wave: every Stage, Promote, Check and
	// Rollback that is not a Resend has a new Step, counting from 1; acks
	// name it. 0 for Phase and Done.
	Step int
	// Resend marks the same command (same Step, Kind and Release) sent
	// again, to the hosts of the wave that have not acked yet.
	Resend bool
	// Hosts the command goes to, in Plan.Hosts order. For Phase: the hosts
	// the phase concerns. The slice belongs to the caller.
	Hosts []string
	// Release is Plan.To for Stage, Promote and Check, and for Rollback
	// the From release of every host in Hosts (rollbacks are grouped by
	// From, one Step per group).
	Release string
	// Phase names the phase the action belongs to: "stage", "canary",
	// "observe", "batch 1".."batch N" or "rollback". For Done, the phase
	// the deploy ended in.
	Phase string
	// Result is the outcome; Done only.
	Result Result
	// Reason is one sentence for people: for Done the summary ("2 hosts
	// failed in batch 2 (limit 1); rolled back 9 hosts"), for Phase what
	// the phase is about (may be empty).
	Reason string
}

// Ack is a host's answer to a command, sent when the command has finished
// (never on receipt). The controller keeps the rich result (exit status,
// output) itself; the Machine needs only the verdict.
type Ack struct {
	Host  string
	Step  int
	OK    bool
	Error string // why not OK, for HostState; optional
}

// Result is how a deploy ended.
type Result int

// Results start at 1 so that a zero Result never reads as Success.
const (
	// Success: every batch ran and failures stayed within the limit.
	Success Result = iota + 1
	// RolledBack: failures went beyond the limit (or a canary failed) and
	// every host that was sent a Promote and has a From release is back on
	// it.
	RolledBack
	// Failed: the deploy stopped before promoting anything, e.g. more
	// hosts failed to stage than the limit allows.
	Failed
	// Aborted: Abort was called; with OnAbortRollback the rollback
	// succeeded, with OnAbortHalt hosts were left as they were.
	Aborted
	// RollbackFailed: some host's Rollback failed or timed out.
	RollbackFailed
)

func (r Result) String() string {
	switch r {
	case Success:
		return "success"
	case RolledBack:
		return "rolled back"
	case Failed:
		return "failed"
	case Aborted:
		return "aborted"
	case RollbackFailed:
		return "rollback failed"
	}
	return fmt.Sprintf("Result(%d)", int(r))
}

// HostStatus is where one host stands in the deploy.
type HostStatus int

const (
	HostPending        HostStatus = iota // nothing known yet: staging, or not reached
	HostStaged                           // acked Stage OK (or SkipStage); not promoted
	HostPromoting                        // sent a Promote, no answer yet
	HostPromoted                         // promoted and healthy: Promote (and any later Check) acked OK
	HostFailed                           // a Stage, Promote or Check acked not OK
	HostUnreachable                      // no ack before the timeout
	HostRollingBack                      // sent a Rollback, no answer yet
	HostRolledBack                       // Rollback acked OK: back on From
	HostRollbackFailed                   // Rollback acked not OK or timed out
	HostNoRollback                       // needed a rollback but has no From release: left as it is
)

func (s HostStatus) String() string {
	switch s {
	case HostPending:
		return "pending"
	case HostStaged:
		return "staged"
	case HostPromoting:
		return "promoting"
	case HostPromoted:
		return "promoted"
	case HostFailed:
		return "failed"
	case HostUnreachable:
		return "unreachable"
	case HostRollingBack:
		return "rolling back"
	case HostRolledBack:
		return "rolled back"
	case HostRollbackFailed:
		return "rollback failed"
	case HostNoRollback:
		return "no rollback target"
	}
	return fmt.Sprintf("HostStatus(%d)", int(s))
}

// HostState is one host's part in the deploy, as far as the Machine knows.
type HostState struct {
	Name  string
	From  string // the release it ran before the deploy ("" if none)
	State HostStatus
	// Phase and Error say where and why the host failed or went
	// unreachable on the way forward ("" if it did not). They stay when
	// the host is later rolled back, so a summary can still say why.
	Phase string
	Error string
	// Late is set (and stays set) when an ack arrived after the host had
	// been marked unreachable. If the host had not moved on since, State
	// shows that ack's verdict (promoted, failed, rolled back...), while
	// Phase and Error (or RollbackError) still record the timeout that
	// the deploy's decisions were based on.
	Late bool
	// RollbackError says why the host's rollback failed.
	RollbackError string
}

// Counts summarises the hosts for live progress. Staged and Promoted count
// hosts that ever got there; the others count hosts in that state now.
type Counts struct {
	Hosts          int // len(Plan.Hosts)
	Staged         int // acked Stage OK, ever (all hosts with SkipStage)
	Promoted       int // acked Promote OK, ever, late acks included
	Healthy        int // now HostPromoted
	Failed         int // now HostFailed
	Unreachable    int // now HostUnreachable
	RolledBack     int // now HostRolledBack
	RollbackFailed int // now HostRollbackFailed
	// Failures is the number of failures counted against the limit so
	// far: staging and batch failures and timeouts, not canaries. It never
	// goes down, not even when a late ack turns out OK.
	Failures int
	// FailureLimit is the limit Failures is compared with now: the staging
	// limit until staging ends, then the batch limit (or still the
	// staging limit if every staged host went to the canary pool).
	FailureLimit int
}

// noAck is the error recorded for a host that timed out.
func noAck(d time.Duration) string { return fmt.Sprintf("no ack within %s", d) }
