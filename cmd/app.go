// Package cmd is pgb's command line: it parses flags, loads the configuration, and
// calls the engine in internal/. It holds no engine logic.
package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/urfave/cli/v2"

	"github.com/pgb-project/pgb/internal/config"
	"github.com/pgb-project/pgb/internal/crypt"
	"github.com/pgb-project/pgb/internal/storage"
)

// Build describes the binary.
type Build struct {
	Version string
	Commit  string
}

// Main runs pgb with args (args[0] is the program name) and returns the exit code.
// SIGINT and SIGTERM cancel ctx; a command they interrupt exits 130 or 143.
func Main(ctx context.Context, args []string, build Build) int {
	ctx, stop := withSignals(ctx)
	defer stop()
	return runWith(ctx, args, build, os.Stdout, os.Stderr, spawnDetached)
}

// run runs pgb in this process, as tests do: it never starts a background process.
func run(ctx context.Context, args []string, build Build, stdout, stderr io.Writer) (code int) {
	return runWith(ctx, args, build, stdout, stderr, nil)
}

// runWith runs pgb; spawn starts a detached pgb (wal-fetch's prefetcher), nil: none.
func runWith(ctx context.Context, args []string, build Build, stdout, stderr io.Writer, spawn spawnFunc) (code int) {
	defer func() {
		// A bug must never exit with Go's panic status 2, which restore_command would
		// take for "not in the archive": report it and use the status that stops recovery.
		if p := recover(); p != nil {
			// Nowhere else to report a failed write to stderr; the exit code still tells.
			_, _ = fmt.Fprintf(stderr, "pgb: internal error (please report): %v\n%s", p, debug.Stack())
			code = exitRecoveryMustStop
		}
	}()
	app := newApp(build, stdout, stderr)
	app.Metadata = map[string]any{"args": args, "spawn": spawn}
	placed, err := placeFlags(app, args)
	if err == nil {
		keepFlagsOf(app, placed)
		err = app.RunContext(ctx, placed)
	}
	return exitCode(interruptedError(ctx, err), stderr, logFormatFromArgs(args))
}

func newApp(build Build, stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:    "pgb",
		Usage:   "PostgreSQL backup and point-in-time recovery",
		Version: build.Version + commitSuffix(build.Commit),
		Description: "pgb archives every WAL segment PostgreSQL completes (archive_command = 'pgb wal-push %p'),\n" +
			"takes online base backups (pgb backup-push, from cron), and restores to any point in time:\n" +
			"pgb restore --pgdata DIR --target-time|--target-name|--target-lsn|--target-xid …, replaying WAL\n" +
			"through restore_command = 'pgb wal-fetch %f %p'. Repositories: a directory, s3:// or gs://.\n\n" +
			"Every setting is a flag, an environment variable and a key in the YAML config file\n" +
			"(--config / PGB_CONFIG, default " + config.DefaultFile + " when present).\n" +
			"Precedence: flag > environment > config file > default. Flags go before or after the command\n" +
			"name (pgb --config F wal-fetch %f %p); after wins when both are given.\n\n" +
			"Exit status: 0 done; 1 failed (wal-fetch: see pgb wal-fetch --help); 255 usage error (unknown\n" +
			"command or flag, missing argument, bad setting): above 125, so that a mistyped restore_command\n" +
			"stops recovery instead of ending it early; 130 / 143 interrupted by SIGINT / SIGTERM.",
		Writer:                 stdout,
		ErrWriter:              stderr,
		HideHelpCommand:        true,
		HideVersion:            true, // --version is the version command (placeFlags)
		UseShortOptionHandling: false,
		ExitErrHandler:         func(*cli.Context, error) {}, // exit codes are decided in exit.go only
		Commands: []*cli.Command{
			walPushCommand(),
			walPushArchiverCommand(),
			walFetchCommand(),
			checkCommand(),
			backupPushCommand(),
			backupListCommand(),
			backupMarkCommand(),
			deleteCommand(),
			backupFetchCommand(),
			restorePointCommand(),
			walStreamCommand(),
			restoreCommand(),
			verifyCommand(),
			eventsCommand(),
			statusCommand(),
			drillCommand(),
			extractCommand(),
			prefetcherCommand(),
			keygenCommand(),
			rotatePassphraseCommand(),
			versionCommand(build),

			metricsCommand(),
			completionCommand(),
			manCommand(),
		},
	}
	app.OnUsageError = onUsageError("", &cli.Command{Flags: app.Flags})
	setUsageErrors("", app.Commands)
	return app
}

// keepFlagsOf drops the flags of every command but the one args run (args as
// placeFlags leaves them: the command name first). urfave/cli formats the help text of
// every flag of every command when it sets the app up, a tenth of the CPU of a
// wal-push call, which PostgreSQL starts once per WAL segment. The command run keeps
// its flags and its help; "pgb help CMD" and "pgb --help" name no command here and keep
// them all.
func keepFlagsOf(app *cli.App, args []string) {
	if len(args) < 2 {
		return
	}
	run := findCommand(app.Commands, args[1])
	if run == nil {
		return
	}
	for _, c := range app.Commands {
		if c != run {
			c.Flags = nil
		}
	}
}

func commitSuffix(c string) string {
	if c == "" {
		return ""
	}
	return " (" + c + ")"
}

// commonKeys are the settings every command takes.
var commonKeys = []string{config.KeyConfig, config.KeyRepo, config.KeyRepos, config.KeyLogLevel, config.KeyLogFormat,
	config.KeyStorageTimeout, config.KeyStorageRetries, config.KeyAllowReadableConfig}

// flags builds the flags of a command: the common settings, every repository
// backend's settings, plus keys.
func flags(keys ...string) []cli.Flag {
	all := append(append(append([]string(nil), commonKeys...), config.RepoKeys()...), keys...)
	sort.Strings(all)
	out := make([]cli.Flag, 0, len(all))
	for _, k := range all {
		s, ok := config.Lookup(k)
		if !ok {
			panic("unknown setting " + k) // programming error, caught by tests
		}
		usage := s.Usage
		if s.Secret {
			usage += " (prefer the environment or the config file: flags show in ps)"
		}
		if s.Kind == config.Bool {
			out = append(out, &cli.BoolFlag{Name: s.Key, Usage: usage, EnvVars: s.Env, Category: s.Category})
			continue
		}
		if s.NoFlag {
			panic("setting " + k + " has no flag") // programming error, caught by tests
		}
		out = append(out, settingFlag{StringFlag: &cli.StringFlag{
			Name:        s.Key,
			Usage:       usage,
			EnvVars:     s.Env,
			Value:       s.Default,
			DefaultText: s.Default,
			Category:    s.Category,
		}, names: []string{s.Key}})
	}
	return out
}

// settingFlag is a setting's string flag with its names computed once. urfave/cli's
// own Names runs a regular expression on every call, and every flag lookup (IsSet,
// loading the configuration) calls it for each flag of the command: that cost a fifth of
// the CPU of a wal-push call, which PostgreSQL starts once per WAL segment.
type settingFlag struct {
	*cli.StringFlag
	names []string
}

// Names returns the flag's names.
func (f settingFlag) Names() []string { return f.names }

// env is what a command runs with.
type env struct {
	cfg    config.Config
	log    *slog.Logger
	stdout io.Writer
	stderr io.Writer
	// wrapStore, if set, wraps the store openRepo opens (a test hook of pgb delete).
	wrapStore func(storage.Store) storage.Store
	// spawn starts a detached pgb process (wal-fetch's prefetcher); nil: never.
	spawn spawnFunc

	keysOnce sync.Once // encryptionKeys
	keys     *crypt.Keys
	keysErr  error
}

// load resolves the configuration of the command being run.
func load(c *cli.Context) (*env, error) {
	src := func(key string) (string, bool) {
		if s, _ := config.Lookup(key); s.NoFlag {
			for _, e := range s.Env {
				if v, ok := os.LookupEnv(e); ok && v != "" {
					return v, true
				}
			}
			return "", false
		}
		if !hasFlag(c, key) || !c.IsSet(key) {
			return "", false
		}
		if s, _ := config.Lookup(key); s.Kind == config.Bool {
			return strconv.FormatBool(c.Bool(key)), true
		}
		return c.String(key), true
	}
	cfg, err := config.Load(src)
	if err != nil {
		return nil, usageError{err}
	}
	stderr := c.App.ErrWriter
	e := &env{cfg: cfg, log: newLogger(stderr, cfg.LogLevel, cfg.LogFormat), stdout: c.App.Writer, stderr: stderr}
	e.spawn, _ = c.App.Metadata["spawn"].(spawnFunc)
	for _, w := range cfg.Warnings {
		e.log.Warn(w)
	}
	for _, s := range config.All() {
		if s.Secret && hasFlag(c, s.Key) && flagGiven(c, s.Key) {
			e.log.Warn("a secret was given on the command line, where other users can see it in ps; use the environment or the config file", "flag", "--"+s.Key)
		}
	}
	return e, nil
}

func hasFlag(c *cli.Context, key string) bool {
	for _, f := range c.Command.Flags {
		for _, n := range f.Names() {
			if n == key {
				return true
			}
		}
	}
	return false
}

// flagGiven reports whether the flag itself (not its environment variable) was used.
func flagGiven(c *cli.Context, key string) bool {
	args, _ := c.App.Metadata["args"].([]string)
	for _, a := range args {
		if a == "--"+key || strings.HasPrefix(a, "--"+key+"=") {
			return true
		}
	}
	return false
}

func newLogger(w io.Writer, level, format string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: l}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// logFormatFromArgs finds --log-format early, for errors that happen before the
// configuration is loaded.
func logFormatFromArgs(args []string) string {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--log-format="); ok {
			return v
		}
		if a == "--log-format" && i+1 < len(args) {
			return args[i+1]
		}
	}
	return os.Getenv("PGB_LOG_FORMAT")
}

// usageError marks errors in how pgb was called.
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// exactArgs checks the number of positional arguments.
func exactArgs(c *cli.Context, n int, names string) error {
	if c.NArg() != n {
		return usagef("%s wants %d argument(s): %s (got %d); see pgb %s --help", c.Command.Name, n, names, c.NArg(), c.Command.Name)
	}
	return nil
}

var errSilent = errors.New("failure already reported")

// action builds a command's Action: it checks the positional arguments, loads the
// configuration and calls fn.
func action(nargs int, names string, fn func(c *cli.Context, e *env) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		if err := exactArgs(c, nargs, names); err != nil {
			return err
		}
		e, err := load(c)
		if err != nil {
			return err
		}
		return fn(c, e)
	}
}
