package fleet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"scatter/artifact"
	"scatter/artifact/datadir"
	"scatter/artifact/keys"
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
	KeyFile                string // the deploy private key
	ConfigFile             string // the repo's scatter.yaml; "": SRC/scatter.yaml if SRC has one
	Builder                string // recorded in the manifest
	Log                    *slog.Logger
	HookOutput             io.Writer // where prepare hooks are named as they start; nil: nowhere
}

// Publish builds a release on the deploy host and hands it to the local
// origin daemon, which announces and seeds it. The daemon is asked first,
// so a missing one is reported before minutes of build. If the repo has a
// scatter.yaml, its prepare hooks run first, in SRC; a failing hook stops
// the publish with its output, and nothing is published. The file is then
// saved as the repo's config on the deploy host, where deploy reads it.
func Publish(ctx context.Context, o PublishOptions) (*Built, error) {
	key, err := keys.LoadPrivate(o.KeyFile)
	if err != nil {
		return nil, err
	}
	ctl := host.DialControl(o.Data.Dir())
	if _, err := ctl.Status(ctx); err != nil {
		return nil, err // no daemon: say so before spending minutes on a build
	}
	cfgFile, dcfg, err := publishConfig(o.ConfigFile, o.Src, o.Repo)
	if err != nil {
		return nil, err
	}
	if dcfg != nil {
		if err := runPrepare(ctx, dcfg, o.Src, o.HookOutput); err != nil {
			return nil, err
		}
	}
	b, err := Build(ctx, o.Data, o.Src, key, artifact.BuildOptions{
		Repo: o.Repo, Version: o.Version, Message: o.Message, Builder: o.Builder, Log: o.Log,
	})
	if err != nil {
		return nil, err
	}
	if err := ctl.Announce(ctx, b.Announcement); err != nil {
		return nil, err
	}
	if cfgFile != "" {
		// What `scatter deploy` reads by default: the config of the newest
		// published release.
		if err := copyFile(cfgFile, o.Data.Repo(o.Repo).Config()); err != nil {
			return nil, fmt.Errorf("save scatter.yaml for deploy: %w", err)
		}
	}
	return b, nil
}

// publishConfig finds and loads the repo's scatter.yaml for publish:
// explicit, or SRC/scatter.yaml when SRC is a directory that has one.
func publishConfig(explicit, src, repo string) (string, *config.Deploy, error) {
	path := explicit
	if path == "" {
		path = filepath.Join(src, "scatter.yaml")
		if fi, err := os.Stat(path); err != nil || !fi.Mode().IsRegular() {
			return "", nil, nil
		}
	}
	d, err := config.LoadDeploy(path)
	if err != nil {
		return "", nil, err
	}
	if d.Repo != repo {
		return "", nil, invalidError{fmt.Sprintf("%s is for repo %q, not %q", path, d.Repo, repo)}
	}
	return path, d, nil
}

// runPrepare runs the deploy host's prepare hooks in the source directory,
// in order; the first failure stops the publish with the hook's output.
func runPrepare(ctx context.Context, d *config.Deploy, src string, log io.Writer) error {
	if log == nil {
		log = io.Discard
	}
	for _, argv := range d.Prepare {
		fmt.Fprintf(log, "prepare: %s\n", strings.Join(argv, " "))
		hctx, cancel := context.WithTimeout(ctx, PrepareTimeout)
		r, err := proc.Run(hctx, proc.Spec{Argv: argv, Dir: src, Env: os.Environ(), MaxOutput: prepareOutput})
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

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.WriteFile(dst+".tmp", b, 0o644); err != nil {
		return err
	}
	return os.Rename(dst+".tmp", dst)
}
