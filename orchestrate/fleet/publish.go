package fleet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	"scatter/artifact"
	"scatter/artifact/datadir"
	"scatter/orchestrate/config"
	"scatter/orchestrate/host"
	"scatter/orchestrate/proc"
)

// PrepareTimeout bounds one prepare hook.
const PrepareTimeout = 30 * time.Minute

// prepareOutput is how much of a failed prepare hook's output is shown.
const prepareOutput = 4096

// PublishOptions describe one `scatter publish`.
type PublishOptions struct {
	Data                   datadir.Data // the origin daemon's data directory
	Src                    string       // a directory or tarball
	Repo, Version, Message string
	// ConfigFile is a scatter.yaml the operator names for this publish; it
	// is installed as the repo's config once the publish succeeds. "": the
	// repo's installed config (DATA/<repo>/scatter.yaml), if any. A
	// scatter.yaml inside SRC is never used unless named here.
	ConfigFile string
	// HookOutput is where prepare hooks are named as they start, and where
	// a scatter.yaml in SRC that was not used is reported; nil: nowhere.
	HookOutput io.Writer
}

// Published is a release the origin daemon built and announced.
type Published = host.PublishResult

// Publish builds a release on the deploy host and hands it to the local
// origin daemon, which announces and seeds it. The daemon is asked first,
// so a missing one is reported before the hooks run.
//
// Nothing from the source tree runs or configures anything unasked: the
// prepare hooks and the deploy settings come from the repo's installed
// config or from the file the operator names (ConfigFile), never from
// SRC/scatter.yaml. A SRC/scatter.yaml that differs from the config in use
// is reported, not obeyed. The hooks run in SRC with a minimal environment
// (HookEnv); a failing hook stops the publish with its output, and nothing
// is published.
//
// The key stays in the daemon: this process reads SRC (as the deploying
// user) and streams it to the daemon as a tar stream; the daemon builds it
// into its store, signs and announces it. A named ConfigFile is installed
// by the daemon once the release is announced.
func Publish(ctx context.Context, o PublishOptions) (*Published, error) {
	ctl := host.DialControl(o.Data.Dir())
	if _, err := ctl.Status(ctx); err != nil {
		return nil, err // no daemon: say so before running hooks
	}
	pc, err := publishConfig(o)
	if err != nil {
		return nil, err
	}
	out := o.HookOutput
	if out == nil {
		out = io.Discard
	}
	if pc.ignored != "" {
		fmt.Fprintln(out, pc.ignored)
	}
	if pc.cfg != nil {
		if err := runPrepare(ctx, pc.cfg, o, out); err != nil {
			return nil, err
		}
	}
	fi, err := os.Stat(o.Src)
	if err != nil {
		return nil, fmt.Errorf("publish: source: %w", err)
	}
	var body io.Reader
	if fi.IsDir() {
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(artifact.TarTree(ctx, pw, o.Src)) }()
		defer pr.Close()
		body = pr
	} else {
		f, err := os.Open(o.Src)
		if err != nil {
			return nil, fmt.Errorf("publish: source: %w", err)
		}
		defer f.Close()
		body = f
	}
	res, err := ctl.Publish(ctx, o.Repo, o.Version, o.Message, body)
	if err != nil {
		return nil, fmt.Errorf("publish %s: %w", o.Src, err)
	}
	if o.ConfigFile != "" {
		// Named by the operator: what `scatter deploy` reads from now on.
		if err := ctl.InstallConfig(ctx, o.Repo, pc.raw); err != nil {
			return res, fmt.Errorf("install %s as the config of %s: %w", o.ConfigFile, o.Repo, err)
		}
	}
	return res, nil
}

// chosenConfig is the deploy config a publish obeys, and what it did not.
type chosenConfig struct {
	path string         // "" when the repo has none
	cfg  *config.Deploy // nil when the repo has none
	// ignored reports a SRC/scatter.yaml that differs from the config in
	// use; "" when there is none or it is the same.
	ignored string
	raw     []byte // the file's bytes
}

// publishConfig picks the repo's deploy config for a publish: the file the
// operator named, else the repo's installed one, else none. A scatter.yaml
// in SRC is only compared with it.
func publishConfig(o PublishOptions) (chosenConfig, error) {
	var pc chosenConfig
	pc.path = o.ConfigFile
	if pc.path == "" {
		pc.path = o.Data.Repo(o.Repo).Config()
		if _, err := os.Stat(pc.path); errors.Is(err, os.ErrNotExist) {
			pc.path = ""
		}
	}
	var used []byte
	if pc.path != "" {
		b, err := os.ReadFile(pc.path)
		if err != nil {
			return pc, fmt.Errorf("load deploy config: %w", err)
		}
		d, err := config.ParseDeploy(pc.path, b)
		if err != nil {
			return pc, err
		}
		if d.Repo != o.Repo {
			return pc, invalidError{fmt.Sprintf("%s is for repo %q, not %q", pc.path, d.Repo, o.Repo)}
		}
		pc.cfg, used, pc.raw = d, b, b
	}
	inSrc := filepath.Join(o.Src, "scatter.yaml")
	if fi, err := os.Lstat(inSrc); err != nil || !fi.Mode().IsRegular() || sameFile(inSrc, pc.path) {
		return pc, nil
	}
	b, err := os.ReadFile(inSrc)
	if err != nil || bytes.Equal(b, used) {
		return pc, nil
	}
	what := "the repo has no installed config"
	if pc.path != "" {
		what = "it differs from the config in use, " + pc.path
	}
	pc.ignored = fmt.Sprintf("note: %s was not used (%s): its prepare hooks did not run and its settings do not apply; "+
		"to use it, review it and name it: scatter publish --config %s …", inSrc, what, inSrc)
	return pc, nil
}

func sameFile(a, b string) bool {
	if b == "" {
		return false
	}
	fa, err1 := os.Stat(a)
	fb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(fa, fb)
}

// HookPath is the PATH prepare hooks run with: the system's directories,
// not the deploying user's.
const HookPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// HookEnv is the whole environment of a prepare hook: PATH (HookPath),
// HOME and USER of the deploying user, LANG, and SCATTER_REPO,
// SCATTER_VERSION and SCATTER_SRC. Nothing else of the caller's
// environment is passed on (no SSH agent, no credentials in variables).
func HookEnv(repo, version, src string) []string {
	home, name := "/", ""
	if u, err := user.Current(); err == nil {
		home, name = u.HomeDir, u.Username
	}
	lang := os.Getenv("LANG")
	if lang == "" || strings.ContainsAny(lang, "\n=") {
		lang = "C.UTF-8"
	}
	return []string{"PATH=" + HookPath, "HOME=" + home, "USER=" + name, "LOGNAME=" + name, "LANG=" + lang,
		"SCATTER_REPO=" + repo, "SCATTER_VERSION=" + version, "SCATTER_SRC=" + src}
}

// runPrepare runs the deploy host's prepare hooks in the source directory,
// in order; the first failure stops the publish with the hook's output.
func runPrepare(ctx context.Context, d *config.Deploy, o PublishOptions, log io.Writer) error {
	src, err := filepath.Abs(o.Src)
	if err != nil {
		return err
	}
	env := HookEnv(o.Repo, o.Version, src)
	for _, argv := range d.Prepare {
		fmt.Fprintf(log, "prepare: %s\n", strings.Join(argv, " "))
		hctx, cancel := context.WithTimeout(ctx, PrepareTimeout)
		r, err := proc.Run(hctx, proc.Spec{Argv: argv, Dir: src, Env: env, MaxOutput: prepareOutput})
		cancel()
		if err != nil {
			if errors.Is(hctx.Err(), context.DeadlineExceeded) {
				err = fmt.Errorf("timed out after %v: %w", PrepareTimeout, err)
			}
			return fmt.Errorf("prepare hook %q failed (%w); nothing was published; its output:\n%s", strings.Join(argv, " "), err, r.Output)
		}
	}
	return nil
}
