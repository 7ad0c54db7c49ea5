package command

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"scatter/artifact/core"
)

// MaxOutput caps the output tail an Ack carries, per action.
const MaxOutput = 2048

// MaxAckSize bounds an encoded Ack; acks travel point to point over TCP.
const MaxAckSize = 64 << 10

// Ack is a host's answer to one command step, sent when the step finished.
type Ack struct {
	Deploy string `json:"deploy"`
	Step   int    `json:"step"`
	Host   string `json:"host"`
	Repo   string `json:"repo"`
	Kind   Kind   `json:"kind"`
	// Release is what the command named.
	Release core.ReleaseID `json:"release"`
	OK      bool           `json:"ok"`
	// Refused is set when the host would not act at all (an action it
	// does not define, a release it cannot stage, an expired command):
	// nothing ran.
	Refused bool `json:"refused,omitempty"`
	// Error says what failed, naming the phase and action.
	Error string `json:"error,omitempty"`
	// Unchanged: the release was already current, nothing restarted.
	Unchanged bool          `json:"unchanged,omitempty"`
	Duration  time.Duration `json:"duration"`
	// Current and Previous are the host's releases after the step.
	Current  core.ReleaseID `json:"current"`
	Previous core.ReleaseID `json:"previous"`
	Results  []Result       `json:"results,omitempty"`
	// Clock is the host's time when it sent the ack: the controller
	// compares it with its own to name clock skew when a host refuses a
	// command as expired or issued in the future.
	Clock time.Time `json:"clock,omitzero"`
}

// Result is one action's outcome within a step.
type Result struct {
	Phase    string        `json:"phase"` // "restart", "check", or a hook phase
	Action   string        `json:"action"`
	OK       bool          `json:"ok"`
	Exit     int           `json:"exit"` // exit status; -1 if it did not exit (timeout, signal, not a command)
	Duration time.Duration `json:"duration"`
	Error    string        `json:"error,omitempty"`
	Output   string        `json:"output,omitempty"` // the tail, at most MaxOutput bytes
}

// Failed returns the first failed result, if any.
func (a *Ack) Failed() (Result, bool) {
	for _, r := range a.Results {
		if !r.OK {
			return r, true
		}
	}
	return Result{}, false
}

// EncodeAck encodes an ack for the wire.
func EncodeAck(a *Ack) ([]byte, error) {
	b, err := json.Marshal(a)
	if err != nil {
		return nil, err
	}
	if len(b) > MaxAckSize {
		return nil, fmt.Errorf("ack of %d bytes exceeds %d", len(b), MaxAckSize)
	}
	return b, nil
}

// ErrBadAck marks an undecodable ack.
var ErrBadAck = errors.New("malformed ack")

// DecodeAck decodes and checks an ack from the wire. It never panics.
func DecodeAck(b []byte) (*Ack, error) {
	if len(b) > MaxAckSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrBadAck, len(b))
	}
	var a Ack
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadAck, err)
	}
	if a.Deploy == "" || a.Host == "" || a.Step < 0 {
		return nil, fmt.Errorf("%w: missing deploy, host or step", ErrBadAck)
	}
	return &a, nil
}
