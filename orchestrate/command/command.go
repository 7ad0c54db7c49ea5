// Package command is the deploy host's word to the fleet and the fleet's
// answer: signed commands and unsigned acknowledgements.
//
// A Command names a repo, a kind (stage, promote, check, rollback), a
// release and the named actions to run; it never carries a command line.
// What a name does is defined by each target's own config (package
// config). Commands are signed with the deploy key (domain-separated from
// the key's other uses), carry a deploy ID, a sequence number and an
// expiry, and a Guard on each host refuses an unsigned, wrongly signed,
// replayed or expired one.
//
// An Ack answers one command step from one host, sent when the action has
// finished (never on receipt), with its result: which sub-step failed, the
// exit status, the duration and the tail of the output. Acks are
// authenticated only by the gossip cluster key: hosts hold no signing key.
//
// Vocabulary: a step is one wave of a rollout (stage everyone, promote
// batch 2, …); the controller may send a step several times (retries), each
// time as a new command with a new sequence number and the same step, and a
// host that already finished the step answers with its recorded ack
// instead of acting twice.
package command

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	"scatter/artifact/core"
	"scatter/artifact/keys"
)

// Kind is what a command asks of a host.
type Kind string

// Command kinds.
const (
	// Stage: have the release staged under releases/<id> (fetching it if
	// need be), running the stage hooks; ack when staged or failed.
	Stage Kind = "stage"
	// Promote: switch current to the release, run the restart action
	// (Restart) and the checks, with the hooks around each phase.
	Promote Kind = "promote"
	// Check: run the checks against what runs now.
	Check Kind = "check"
	// Rollback: like Promote, to the release the host ran before.
	Rollback Kind = "rollback"
)

// Hook phases, in the order they run around promote, restart and check.
const (
	BeforeStage   = "before_stage"
	AfterStage    = "after_stage"
	BeforePromote = "before_promote"
	AfterPromote  = "after_promote"
	BeforeRestart = "before_restart"
	AfterRestart  = "after_restart"
	BeforeCheck   = "before_check"
	AfterCheck    = "after_check"
)

// HookPhases lists every hook phase.
var HookPhases = []string{BeforeStage, AfterStage, BeforePromote, AfterPromote, BeforeRestart, AfterRestart, BeforeCheck, AfterCheck}

// Command is the signed body.
type Command struct {
	Deploy string `json:"deploy"` // deploy ID
	Seq    uint64 `json:"seq"`    // unique per deploy: replay protection
	Step   int    `json:"step"`   // rollout step; retries reuse it
	// Controller is the member name acks go to.
	Controller string    `json:"controller"`
	Issued     time.Time `json:"issued"`
	Expires    time.Time `json:"expires"`

	Repo    string         `json:"repo"`
	Kind    Kind           `json:"kind"`
	Release core.ReleaseID `json:"release"`
	Hosts   []string       `json:"hosts"` // the targets; others ignore the command
	// Restart asks for the host's "restart" action after the switch.
	Restart bool `json:"restart,omitempty"`
	// Force promotes and restarts even when the release is already current.
	Force  bool                `json:"force,omitempty"`
	Checks []string            `json:"checks,omitempty"` // action names
	Hooks  map[string][]string `json:"hooks,omitempty"`  // phase -> action names
	// Timeout bounds the whole step on the host (stage: the fetch).
	Timeout time.Duration `json:"timeout"`
}

// Actions lists every action name the command asks for, in run order
// (duplicates kept), so a host can refuse an unknown one before running any.
func (c *Command) Actions() []string {
	var out []string
	add := func(phase string) { out = append(out, c.Hooks[phase]...) }
	switch c.Kind {
	case Stage:
		add(BeforeStage)
		add(AfterStage)
	case Promote, Rollback:
		add(BeforePromote)
		add(AfterPromote)
		if c.Restart {
			add(BeforeRestart)
			out = append(out, "restart")
			add(AfterRestart)
		}
		fallthrough
	case Check:
		add(BeforeCheck)
		out = append(out, c.Checks...)
		add(AfterCheck)
	}
	return out
}

// For reports whether host is one of the command's targets.
func (c *Command) For(host string) bool {
	for _, h := range c.Hosts {
		if h == host {
			return true
		}
	}
	return false
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// Validate checks the body's shape (not its signature or freshness).
func (c *Command) Validate() error {
	switch {
	case c.Deploy == "" || len(c.Deploy) > 64:
		return errors.New("deploy ID missing or longer than 64 bytes")
	case c.Seq == 0:
		return errors.New("sequence number missing")
	case c.Controller == "":
		return errors.New("controller missing")
	case !nameRE.MatchString(c.Repo):
		return fmt.Errorf("bad repo name %q", c.Repo)
	case c.Expires.IsZero() || c.Issued.IsZero() || !c.Expires.After(c.Issued):
		return errors.New("issue and expiry times missing or out of order")
	case len(c.Hosts) == 0:
		return errors.New("no target hosts")
	case c.Timeout <= 0:
		return errors.New("timeout missing")
	}
	switch c.Kind {
	case Stage, Promote, Rollback:
		if c.Release.IsZero() {
			return fmt.Errorf("%s without a release", c.Kind)
		}
	case Check:
	default:
		return fmt.Errorf("unknown kind %q", c.Kind)
	}
	for phase, names := range c.Hooks {
		if !isPhase(phase) {
			return fmt.Errorf("unknown hook phase %q", phase)
		}
		for _, n := range names {
			if !nameRE.MatchString(n) {
				return fmt.Errorf("bad action name %q", n)
			}
		}
	}
	for _, n := range c.Checks {
		if !nameRE.MatchString(n) {
			return fmt.Errorf("bad check name %q", n)
		}
	}
	return nil
}

func isPhase(p string) bool {
	for _, q := range HookPhases {
		if p == q {
			return true
		}
	}
	return false
}

// Wire form: magic | signature (64) | JSON body.
const (
	magic = "SCATCMD1"
	// signContext separates command signatures from the deploy key's
	// manifest and announcement signatures.
	signContext = "scatter command v1\x00"
	// MaxSize bounds an encoded command: it must fit one gossip broadcast
	// (membership.Config.MaxMessageSize, 1024 by default, less the kind byte).
	MaxSize = 1000
	// MaxLifetime bounds Expires-Issued, so a Guard need remember a command
	// for at most this long.
	MaxLifetime = time.Hour
)

// Errors from Guard.Open, for errors.Is.
var (
	ErrMalformed = errors.New("malformed command")
	ErrSignature = errors.New("command signature does not verify")
	ErrExpired   = errors.New("command expired")
	ErrReplay    = errors.New("command replayed")
)

// Sign encodes and signs c with the deploy key: an ed25519.PrivateKey in
// hand, or a signer that asks the origin daemon, which keeps the key (it
// checks what it signs with ParseSigningRequest).
func Sign(c *Command, priv crypto.Signer) ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("sign command: %w", err)
	}
	body, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	if n := len(magic) + ed25519.SignatureSize + len(body); n > MaxSize {
		return nil, fmt.Errorf("sign command: %d bytes exceeds %d (too many target hosts in one command?)", n, MaxSize)
	}
	out, err := keys.SealEnvelope(priv, magic, signContext, body)
	if err != nil {
		return nil, fmt.Errorf("sign command: %w", err)
	}
	if len(out) > MaxSize {
		return nil, fmt.Errorf("sign command: %d bytes exceeds %d (too many target hosts in one command?)", len(out), MaxSize)
	}
	return out, nil
}

// SignContext starts every message a command signature covers; the body
// follows it. The origin daemon signs such a message only after
// ParseSigningRequest accepts it.
const SignContext = signContext

// ParseSigningRequest decodes and validates the body of a message to be
// signed (the bytes after SignContext), as Open would after verifying.
func ParseSigningRequest(body []byte) (*Command, error) {
	if len(magic)+ed25519.SignatureSize+len(body) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes exceeds %d", ErrMalformed, len(body), MaxSize)
	}
	return decodeBody(body)
}

// decodeBody decodes and validates a command's signed body, strictly.
func decodeBody(body []byte) (*Command, error) {
	var c Command
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return &c, nil
}

// Open checks b's signature against the trusted key and decodes and
// validates the body. It neither checks freshness nor remembers anything:
// that is the Guard's job. It never panics (FuzzOpen).
func Open(b []byte, trusted ed25519.PublicKey) (*Command, error) {
	if len(b) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes exceeds %d", ErrMalformed, len(b), MaxSize)
	}
	body, err := keys.OpenEnvelope(b, magic, signContext, trusted)
	if errors.Is(err, keys.ErrEnvelopeHeader) {
		return nil, fmt.Errorf("%w: bad header", ErrMalformed)
	} else if err != nil {
		return nil, fmt.Errorf("%w (trusted key %s)", ErrSignature, keys.Fingerprint(trusted))
	}
	return decodeBody(body)
}
