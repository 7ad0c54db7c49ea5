// Command scatter distributes releases peer to peer and rolls them out.
// This package only parses flags, loads keys and config, and wires the
// library packages together; each subcommand is an options struct and a
// run function that tests call directly.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"scatter/artifact"
	"scatter/artifact/keys"
	"scatter/orchestrate/config"
	"scatter/orchestrate/fleet"
	"scatter/orchestrate/rollout"
	"scatter/orchestrate/version"
)

// Exit codes. One place maps errors to them (exitCode).
const (
	exitOK      = 0
	exitFailure = 1 // anything not listed below
	exitUsage   = 2 // bad flags or arguments
	exitVerify  = 3 // a release failed verification: bad signature, missing or corrupt chunk
	// 4, 5 and 6: deploy outcomes, see deploy.go.
	exitUnhealthy   = 7 // status: the local daemon does not answer, or is not ready (not joined, data directory unreadable)
	exitStalled     = 8 // status: a fetch is stalled
	exitInterrupted = 130
)

// usageError marks errors in how the command was called.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// errVerify marks a verification failure whose details were already printed.
var errVerify = errors.New("verification failed")

func exitCode(err error) int {
	var ue usageError
	var de deployError
	var se statusError
	var ce *config.Error
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &se):
		return se.code
	case errors.As(err, &de) && de.unknown:
		return exitOutcomeUnknown
	case errors.As(err, &de) && de.result == rollout.RollbackFailed:
		return exitRollbackFailed
	case errors.As(err, &de) && de.result != rollout.Aborted:
		return exitDeployFailed
	case errors.Is(err, context.Canceled):
		return exitInterrupted
	case errors.As(err, &ue), errors.Is(err, fleet.ErrInvalid), errors.As(err, &ce),
		// urfave/cli's missing-flag error type is unexported; its text is stable.
		strings.HasPrefix(err.Error(), "Required flag"):
		return exitUsage
	case errors.Is(err, errVerify), errors.Is(err, artifact.ErrBadSignature), errors.Is(err, keys.ErrWrongKey),
		errors.Is(err, artifact.ErrChunkCorrupt), errors.Is(err, artifact.ErrChunkMissing):
		return exitVerify
	}
	return exitFailure
}

// interruptedError is an error that came after SIGINT or SIGTERM: it exits
// 130 and still says what the command was doing when it stopped.
type interruptedError struct{ err error }

func (e interruptedError) Error() string {
	if errors.Is(e.err, context.Canceled) {
		return "interrupted"
	}
	return "interrupted: " + e.err.Error()
}

func (e interruptedError) Unwrap() []error { return []error{context.Canceled, e.err} }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := newApp(os.Stdout, os.Stderr).RunContext(ctx, os.Args)
	if err != nil && !errors.Is(err, errVerify) {
		var de deployError
		if ctx.Err() != nil && !errors.As(err, &de) {
			err = interruptedError{err}
		}
		fmt.Fprintln(os.Stderr, "scatter:", err)
	}
	os.Exit(exitCode(err))
}

func newApp(stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:  "scatter",
		Usage: "peer-to-peer release distribution and deploy orchestration",
		Description: "scatter turns a release into signed, content-addressed chunks, ships it to every\n" +
			"target host BitTorrent-style, and rolls it out. Run 'scatter COMMAND --help' for details.",
		Writer:          stdout,
		ErrWriter:       stderr,
		HideHelpCommand: true,
		ExitErrHandler:  func(*cli.Context, error) {}, // main maps errors to exit codes
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return usageError{err.Error()}
		},
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "log-level", EnvVars: []string{"SCATTER_LOG_LEVEL"}, Usage: "log level: debug, info, warn, error", DefaultText: "info for seed, warn otherwise"},
			&cli.StringFlag{Name: "log-format", Value: "text", EnvVars: []string{"SCATTER_LOG_FORMAT"}, Usage: "log format on stderr: text or json (one object per line)"},
			&cli.BoolFlag{Name: "version", Aliases: []string{"V"}, Usage: "print the version and exit"},
			&cli.StringFlag{Name: "cpuprofile", Hidden: true, Usage: "write a CPU profile to this file"},
		},
		Action: func(c *cli.Context) error {
			if c.Bool("version") {
				return printVersion(c.App.Writer, false)
			}
			if c.NArg() > 0 {
				return usagef("unknown command %q; see scatter --help", c.Args().First())
			}
			return cli.ShowAppHelp(c)
		},
		Before: func(c *cli.Context) error {
			path := c.String("cpuprofile")
			if path == "" {
				return nil
			}
			f, err := os.Create(path)
			if err != nil {
				return err
			}
			return pprof.StartCPUProfile(f)
		},
		After: func(c *cli.Context) error {
			pprof.StopCPUProfile()
			return nil
		},
		Commands: []*cli.Command{
			versionCommand(),
			keygenCommand(),
			buildCommand(),
			verifyCommand(),
			materializeCommand(),
			releasesCommand(),
			gcCommand(),
			seedCommand(),
			clusterKeyCommand(),
			publishCommand(),
			statusCommand(),
			hostsCommand(),
			deployCommand(),
			rollbackCommand(),
			abortCommand(),
			torrentCommand(),
			benchCommand(),
			benchAppCommand(),
			generateCommand(),
		},
	}
	for _, c := range app.Commands {
		c.OnUsageError = app.OnUsageError
	}
	return app
}

// logger builds the logger that --log-level and --log-format ask for,
// writing to stderr. def is the command's level when --log-level is not
// given: info for the daemon, whose info lines are the events an operator
// follows, warn for the commands that print their own results.
func logger(c *cli.Context, def slog.Level) (*slog.Logger, error) {
	level := def
	if s := c.String("log-level"); s != "" {
		if err := level.UnmarshalText([]byte(s)); err != nil {
			return nil, usagef("--log-level: %v", err)
		}
	}
	opts := &slog.HandlerOptions{Level: level}
	switch f := c.String("log-format"); f {
	case "", "text":
		return slog.New(slog.NewTextHandler(c.App.ErrWriter, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(c.App.ErrWriter, opts)), nil
	default:
		return nil, usagef("--log-format: want text or json, got %q", f)
	}
}

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:      "version",
		Usage:     "print the version: module version, VCS revision and time, Go version",
		ArgsUsage: " ",
		Flags:     []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print it as one JSON object"}},
		Action: func(c *cli.Context) error {
			if _, err := args(c); err != nil {
				return err
			}
			return printVersion(c.App.Writer, c.Bool("json"))
		},
	}
}

func printVersion(w io.Writer, asJSON bool) error {
	in := version.Get()
	if asJSON {
		return json.NewEncoder(w).Encode(in)
	}
	_, err := fmt.Fprintln(w, in)
	return err
}

// args checks the number of positional arguments.
func args(c *cli.Context, names ...string) ([]string, error) {
	if c.NArg() != len(names) {
		return nil, usagef("%s: want %d argument(s) (%v), got %d; see --help", c.Command.Name, len(names), names, c.NArg())
	}
	return c.Args().Slice(), nil
}
