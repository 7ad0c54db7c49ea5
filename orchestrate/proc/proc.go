// Package proc runs the child processes scatter starts on a host: a target's
// named actions (restart, checks, hooks; package agent) and the deploy
// host's prepare hooks (package fleet). It is the one runner, so both get
// the same bounds: the child gets its own process group, cancelling the
// context (a timeout, Ctrl-C) kills the whole group, and Run returns at most
// WaitDelay after the kill even if a grandchild keeps the output pipe open.
// Only the tail of the output is kept.
package proc

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"syscall"
	"time"
)

// WaitDelay bounds how long Run waits for the output to close after the
// process group was killed.
const WaitDelay = 2 * time.Second

// Spec is one process to run. Argv is run without a shell.
type Spec struct {
	Argv []string
	Dir  string   // working directory; "" means the caller's
	Env  []string // the whole environment: nothing is inherited
	// Cred runs the process as another user (needs root); nil: as the caller.
	Cred *syscall.Credential
	// MaxOutput is how many bytes of combined stdout and stderr to keep,
	// the last ones; 0 keeps nothing.
	MaxOutput int
}

// Result is how a process ended.
type Result struct {
	// Exit is the exit status; -1 if the process did not exit on its own
	// (killed, or never started).
	Exit int
	// Output is the tail of stdout and stderr, prefixed with "…" if cut.
	Output string
}

// Run runs the process to its end or until ctx is done. The error says
// why it did not succeed: "exit status N", a start failure, or how it was
// killed; the caller checks ctx to tell a timeout.
func Run(ctx context.Context, s Spec) (Result, error) {
	if len(s.Argv) == 0 {
		return Result{Exit: -1}, errors.New("no command to run")
	}
	cmd := exec.CommandContext(ctx, s.Argv[0], s.Argv[1:]...)
	cmd.Dir = s.Dir
	cmd.Env = s.Env
	if cmd.Env == nil {
		cmd.Env = []string{}
	}
	// Its own process group, so a timeout kills what it started too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: s.Cred}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = WaitDelay
	out := &Tail{Max: s.MaxOutput}
	cmd.Stdout, cmd.Stderr = out, out
	err := cmd.Run()
	r := Result{Exit: -1, Output: out.String()}
	if cmd.ProcessState != nil {
		r.Exit = cmd.ProcessState.ExitCode()
	}
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && r.Exit >= 0 {
			err = fmt.Errorf("exit status %d", r.Exit)
		}
	}
	return r, err
}

// Tail keeps the last Max bytes written to it.
type Tail struct {
	Max int
	buf []byte
	cut bool
}

func (t *Tail) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.Max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
		t.cut = true
	}
	return len(p), nil
}

func (t *Tail) String() string {
	if t.cut {
		return "…" + string(t.buf)
	}
	return string(t.buf)
}
