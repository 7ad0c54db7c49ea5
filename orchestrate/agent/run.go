package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"time"

	"scatter/orchestrate/command"
	"scatter/orchestrate/config"
	"scatter/orchestrate/proc"
)

// DefaultActionTimeout bounds an action whose config gives no timeout.
const DefaultActionTimeout = 60 * time.Second

// env is what an action sees of the step it runs in.
type env struct {
	repo, deploy, phase string
	release, previous   string // release IDs
	releaseDir, dir     string // the release's tree; the working directory
	cred                *syscall.Credential
}

// run performs one named action and reports its outcome. It never
// returns an error: a failure is a Result with OK false.
func run(ctx context.Context, phase string, a config.Action, e env) command.Result {
	timeout := a.Timeout
	if timeout <= 0 {
		timeout = DefaultActionTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	r := command.Result{Phase: phase, Action: a.Name, Exit: -1}
	var err error
	switch {
	case len(a.Command) > 0:
		r.Exit, r.Output, err = runCommand(ctx, a, e)
	case a.HTTP != nil:
		r.Output, err = runHTTP(ctx, a.HTTP)
	case a.TCP != "":
		var c net.Conn
		c, err = (&net.Dialer{}).DialContext(ctx, "tcp", a.TCP)
		if err == nil {
			c.Close()
		}
	default:
		err = errors.New("action defines nothing to do")
	}
	r.Duration = time.Since(start)
	if err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			err = fmt.Errorf("timed out after %v: %w", timeout, err)
		}
		r.Error = err.Error()
	} else {
		r.OK = true
	}
	return r
}

func runCommand(ctx context.Context, a config.Action, e env) (int, string, error) {
	if fi, err := os.Stat(e.dir); err != nil || !fi.IsDir() {
		return -1, "", fmt.Errorf("working directory %s does not exist", e.dir)
	}
	env := []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"SCATTER_REPO=" + e.repo,
		"SCATTER_DEPLOY=" + e.deploy,
		"SCATTER_PHASE=" + e.phase,
		"SCATTER_RELEASE=" + e.release,
		"SCATTER_RELEASE_DIR=" + e.releaseDir,
		"SCATTER_PREVIOUS=" + e.previous,
	}
	for k, v := range a.Env {
		env = append(env, k+"="+v)
	}
	r, err := proc.Run(ctx, proc.Spec{Argv: a.Command, Dir: e.dir, Env: env, Cred: e.cred, MaxOutput: command.MaxOutput})
	return r.Exit, r.Output, err
}

func runHTTP(ctx context.Context, c *config.HTTPCheck) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", fmt.Errorf("read body: %w", err)
	}
	snippet := string(body)
	if len(snippet) > command.MaxOutput {
		snippet = snippet[:command.MaxOutput]
	}
	want := c.Status
	if want == 0 {
		want = http.StatusOK
	}
	if resp.StatusCode != want {
		return snippet, fmt.Errorf("GET %s: status %d, want %d", c.URL, resp.StatusCode, want)
	}
	if c.Contains != "" && !strings.Contains(string(body), c.Contains) {
		return snippet, fmt.Errorf("GET %s: body does not contain %q", c.URL, c.Contains)
	}
	return "", nil
}

// credential resolves the user actions run as. Running as another user
// needs root; an unprivileged daemon may only name itself.
func credential(name string) (*syscall.Credential, error) {
	if name == "" {
		return nil, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("action user: %w", err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	if int(uid) == os.Geteuid() {
		return nil, nil
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("action user %s: the daemon runs as uid %d and cannot switch users; run it as %s, or use a sudoers rule inside the action", name, os.Geteuid(), name)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}
