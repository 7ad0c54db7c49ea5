package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"time"

	"scatter/orchestrate/command"
	"scatter/orchestrate/config"
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
	cmd := exec.CommandContext(ctx, a.Command[0], a.Command[1:]...)
	cmd.Dir = e.dir
	cmd.Env = []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"SCATTER_REPO=" + e.repo,
		"SCATTER_DEPLOY=" + e.deploy,
		"SCATTER_PHASE=" + e.phase,
		"SCATTER_RELEASE=" + e.release,
		"SCATTER_RELEASE_DIR=" + e.releaseDir,
		"SCATTER_PREVIOUS=" + e.previous,
	}
	for k, v := range a.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	// Its own process group, so a timeout kills what it started too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: e.cred}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	out := &tail{max: command.MaxOutput}
	cmd.Stdout, cmd.Stderr = out, out
	err := cmd.Run()
	code := -1
	if cmd.ProcessState != nil {
		code = cmd.ProcessState.ExitCode()
	}
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && code >= 0 {
			err = fmt.Errorf("exit status %d", code)
		}
	}
	return code, out.String(), err
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

// tail keeps the last max bytes written to it.
type tail struct {
	max int
	buf []byte
	cut bool
}

func (t *tail) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
		t.cut = true
	}
	return len(p), nil
}

func (t *tail) String() string {
	if t.cut {
		return "…" + string(t.buf)
	}
	return string(t.buf)
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
