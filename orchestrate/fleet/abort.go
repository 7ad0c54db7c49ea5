package fleet

import (
	"context"
	"fmt"
	"io"
	"time"

	"scatter/artifact/datadir"
	"scatter/orchestrate/host"
)

// Abort interrupts the deploy of repo that holds its deploy lock, as Ctrl-C
// in its terminal would, and waits up to wait for it to end. It asks the
// origin daemon, which holds the lock for that deploy and tells it over
// its lease: no process is signalled, whoever runs it. It reports what it
// did to out.
func Abort(ctx context.Context, data datadir.Data, repo string, wait time.Duration, out io.Writer) error {
	ctl := host.DialControl(data.Dir())
	h, err := ctl.Abort(ctx, repo)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "abort sent to deploy %s by %s (pid %d)\n", h.Deploy, h.User, h.PID)
	deadline := time.Now().Add(wait)
	for {
		st, err := ctl.LockState(ctx, repo)
		if err != nil {
			return err
		}
		if !st.Held || st.Holder.Deploy != h.Deploy {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("deploy %s still running after %v", h.Deploy, wait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	fmt.Fprintf(out, "deploy %s ended; its summary is in its terminal and the audit log\n", h.Deploy)
	return nil
}
