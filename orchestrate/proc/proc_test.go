package proc

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestRunExitAndTail(t *testing.T) {
	r, err := Run(context.Background(), Spec{
		Argv: []string{"/bin/sh", "-c", `printf 'abcdefghij'; echo "$FOO" >&2; exit 3`},
		Env:  []string{"FOO=bar"}, MaxOutput: 6,
	})
	if err == nil || err.Error() != "exit status 3" || r.Exit != 3 {
		t.Fatalf("got %+v, %v; want exit status 3", r, err)
	}
	// stdout and stderr share one tail: the last 6 bytes of "abcdefghij" "bar\n".
	if r.Output != "…ijbar\n" {
		t.Fatalf("output %q, want the last 6 bytes after …", r.Output)
	}
}

func TestRunEnvIsNotInherited(t *testing.T) {
	t.Setenv("SCATTER_PROC_SECRET", "leaked")
	r, err := Run(context.Background(), Spec{Argv: []string{"/bin/sh", "-c", `echo "[$SCATTER_PROC_SECRET]"`}, MaxOutput: 100})
	if err != nil || r.Output != "[]\n" {
		t.Fatalf("got %q, %v; want an empty variable", r.Output, err)
	}
}

// A cancelled context kills the whole process group, grandchildren that
// hold the output pipe included, so Run returns.
func TestRunCancelKillsGroup(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	done := make(chan struct{})
	var r Result
	var err error
	go func() {
		r, err = Run(ctx, Spec{Argv: []string{"/bin/sh", "-c", "sleep 60 & sleep 60"}, MaxOutput: 10})
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
	if err == nil || r.Exit != -1 || ctx.Err() == nil {
		t.Fatalf("got %+v, %v; want a killed process", r, err)
	}
}

func TestRunNoArgv(t *testing.T) {
	if _, err := Run(context.Background(), Spec{}); err == nil || !strings.Contains(err.Error(), "no command") {
		t.Fatalf("err %v", err)
	}
}
