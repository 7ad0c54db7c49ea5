package fleet

import (
	"context"
	"fmt"
	"io"
	"syscall"
	"time"

	"scatter/artifact/datadir"
	"scatter/orchestrate/deploy"
)

// Abort interrupts the deploy of repo that holds its deploy lock, as Ctrl-C
// in its terminal would, and waits up to wait for it to end. It reports
// what it did to out.
func Abort(ctx context.Context, data datadir.Data, repo string, wait time.Duration, out io.Writer) error {
	path := data.Repo(repo).DeployLock()
	if !deploy.Held(path) {
		return fmt.Errorf("no deploy of %s is running", repo)
	}
	h, err := deploy.ReadHolder(path)
	if err != nil || h.PID <= 0 {
		return fmt.Errorf("a deploy of %s runs but its lock file does not say which process: %v", repo, err)
	}
	if err := syscall.Kill(h.PID, syscall.SIGINT); err != nil {
		return fmt.Errorf("abort deploy %s (pid %d): %w", h.Deploy, h.PID, err)
	}
	fmt.Fprintf(out, "abort sent to deploy %s by %s (pid %d)\n", h.Deploy, h.User, h.PID)
	deadline := time.Now().Add(wait)
	for deploy.Held(path) && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	if deploy.Held(path) {
		return fmt.Errorf("deploy %s still running after %v", h.Deploy, wait)
	}
	fmt.Fprintf(out, "deploy %s ended; its summary is in its terminal and the audit log\n", h.Deploy)
	return nil
}
