package rollout

import (
	"errors"
	"fmt"
	"time"
)

// OnAbort says what an abort does once the wave in flight has finished.
type OnAbort int

const (
	// OnAbortRollback rolls back every host that was sent a Promote. It is
	// the zero value and so the default.
	OnAbortRollback OnAbort = iota
	// OnAbortHalt stops where the deploy is and leaves every host as it is,
	// for an operator who wants to look before anything else changes.
	OnAbortHalt
)

func (o OnAbort) String() string {
	switch o {
	case OnAbortRollback:
		return "rollback"
	case OnAbortHalt:
		return "halt"
	}
	return fmt.Sprintf("OnAbort(%d)", int(o))
}

// MarshalText implements encoding.TextMarshaler: "rollback" or "halt".
func (o OnAbort) MarshalText() ([]byte, error) {
	if o != OnAbortRollback && o != OnAbortHalt {
		return nil, fmt.Errorf("on abort: unknown value %d", int(o))
	}
	return []byte(o.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler; "" means rollback.
func (o *OnAbort) UnmarshalText(b []byte) error {
	switch string(b) {
	case "", "rollback":
		*o = OnAbortRollback
	case "halt":
		*o = OnAbortHalt
	default:
		return fmt.Errorf("on abort %q: want rollback or halt", b)
	}
	return nil
}

// Defaults for the zero values of Plan's fields.
const (
	DefaultStageTimeout  = 30 * time.Minute // fetching and materializing a multi-GB release
	DefaultActionTimeout = 5 * time.Minute  // switch current, restart, run the checks
	DefaultRetryEvery    = 2 * time.Second
)

// defaultBatch is the batch size used when Plan.Batch is the zero value.
var defaultBatch = Size{N: 25, Percent: true}

// Plan is one rolling deploy: which release goes to which hosts, in what
// order and with what tolerance. The zero value of each optional field
// means the default named in its comment. New copies the Plan; the caller
// may reuse it afterwards.
type Plan struct {
	// Deploy is the deploy ID, used only in messages.
	Deploy string
	// To is the release being deployed, an opaque ID. Required.
	To string
	// Hosts are the selected hosts in rollout order: the canary pool comes
	// from the front, then the batches in order. Required; names must be
	// unique and non-empty.
	Hosts []string
	// From maps a host to the release it runs now, its rollback target.
	// A host missing from the map or mapped to "" has no previous release
	// and is never sent a Rollback (see HostNoRollback). Keys that are not
	// in Hosts are ignored.
	From map[string]string
	// Canary is the size of the canary pool: the first Canary hosts, in
	// Hosts order, that staged. 0 means no canary phase. More than
	// len(Hosts) means all of them.
	Canary int
	// Batch is the size of each batch of non-canary hosts, taken of the
	// number of non-canary hosts that staged, at least 1 host. The zero
	// value (which is also what "0" parses to) means 25%.
	Batch Size
	// FailureLimit is how many failures are tolerated: staging stops with
	// Failed when more than FailureLimit.Of(len(Hosts)) hosts fail to
	// stage, and batches stop (and roll back) when more than
	// FailureLimit.Of(number of non-canary hosts) hosts have failed,
	// counting staging failures too. 0 tolerates none. Any canary failure
	// stops the deploy whatever the limit.
	FailureLimit Size
	// Observe is how long to watch the canary pool after it passes before
	// checking it again (a Check action). 0 skips the wait and the check.
	Observe time.Duration
	// StageTimeout bounds a Stage action: a host that has not acked this
	// long after the first send is unreachable. 0 means
	// DefaultStageTimeout.
	StageTimeout time.Duration
	// ActionTimeout bounds Promote, Check and Rollback actions the same
	// way. 0 means DefaultActionTimeout.
	ActionTimeout time.Duration
	// RetryEvery is how often an action is re-sent (Resend) to the hosts
	// that have not acked it, until its timeout. 0 means
	// DefaultRetryEvery.
	RetryEvery time.Duration
	// OnAbort says what Abort does; the default rolls back.
	OnAbort OnAbort
	// SkipStage skips the Stage phase because every host already holds To,
	// as when rolling back to a retained release.
	SkipStage bool
}

// Validate reports every problem in p, joined, without changing p.
func (p Plan) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("rollout plan: "+format, args...))
	}
	if p.To == "" {
		bad("no release to deploy (To is empty)")
	}
	if len(p.Hosts) == 0 {
		bad("no hosts")
	}
	seen := make(map[string]bool, len(p.Hosts))
	for i, h := range p.Hosts {
		switch {
		case h == "":
			bad("host %d has an empty name", i)
		case seen[h]:
			bad("host %q is listed twice", h)
		}
		seen[h] = true
	}
	if p.Canary < 0 {
		bad("negative canary pool size %d", p.Canary)
	}
	if err := p.Batch.check(); err != nil {
		bad("batch size %s: %w", p.Batch, err)
	}
	if err := p.FailureLimit.check(); err != nil {
		bad("failure limit %s: %w", p.FailureLimit, err)
	}
	for _, d := range []struct {
		name string
		d    time.Duration
	}{
		{"observe", p.Observe},
		{"stage timeout", p.StageTimeout},
		{"action timeout", p.ActionTimeout},
		{"retry interval", p.RetryEvery},
	} {
		if d.d < 0 {
			bad("negative %s %s", d.name, d.d)
		}
	}
	if p.OnAbort != OnAbortRollback && p.OnAbort != OnAbortHalt {
		bad("unknown on-abort value %d", int(p.OnAbort))
	}
	return errors.Join(errs...)
}

// withDefaults returns a copy of p with defaults filled in and its slice
// and map copied, so the caller's later changes cannot reach the Machine.
func (p Plan) withDefaults() Plan {
	if p.Batch == (Size{}) {
		p.Batch = defaultBatch
	}
	if p.StageTimeout == 0 {
		p.StageTimeout = DefaultStageTimeout
	}
	if p.ActionTimeout == 0 {
		p.ActionTimeout = DefaultActionTimeout
	}
	if p.RetryEvery == 0 {
		p.RetryEvery = DefaultRetryEvery
	}
	p.Canary = min(p.Canary, len(p.Hosts))
	hosts := make([]string, len(p.Hosts))
	copy(hosts, p.Hosts)
	p.Hosts = hosts
	from := make(map[string]string, len(hosts))
	for _, h := range hosts {
		if f := p.From[h]; f != "" {
			from[h] = f
		}
	}
	p.From = from
	return p
}
