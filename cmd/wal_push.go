package cmd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/pgb-project/pgb/internal/archive"
	"github.com/pgb-project/pgb/internal/archive/lookahead"
	"github.com/pgb-project/pgb/internal/compress"
	"github.com/pgb-project/pgb/internal/config"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/spool"
)

func walPushFlags() []cli.Flag {
	return flags(config.KeyPGData, config.KeyCompression, config.KeyCompressionLevel, config.KeyWALTimeout, config.KeyWALPushConc, config.KeyWALPushQueueMax)
}

func walPushCommand() *cli.Command {
	return &cli.Command{
		Name:      "wal-push",
		Usage:     "archive one WAL file (archive_command = 'pgb wal-push %p')",
		ArgsUsage: "PATH",
		Description: "Compresses the WAL segment, .partial, .backup or .history file at PATH and stores it in the\n" +
			"repository; exits 0 only once it is durable there. Pushing a file the repository already holds\n" +
			"with identical content succeeds, once the stored copy is durable (a filesystem repository fsyncs\n" +
			"it again: the push that wrote it may have been killed first); different content under the same\n" +
			"name fails and leaves the stored object untouched. The first push binds the repository to this\n" +
			"cluster (system identifier and PostgreSQL version, from global/pg_control); pushes from another\n" +
			"cluster are refused.\n\n" +
			"--wal-push-queue-max SIZE drops WAL rather than fill pg_wal: when a push fails and the segments\n" +
			"waiting in pg_wal/archive_status exceed SIZE, the segment is dropped (logged as an error, recorded\n" +
			"as a gap in the repository by the next push that succeeds) and wal-push exits 0. Point-in-time\n" +
			"recovery across a dropped segment is impossible; pgb status and pgb restore say so.\n\n" +
			"Look-ahead (--wal-push-concurrency above 1, the default): for a segment in the data directory's\n" +
			"pg_wal that PostgreSQL has marked ready, wal-push has a background archiver (one per data\n" +
			"directory, started when none runs, exiting when idle) ship it and the next ready segments,\n" +
			"wal-push-concurrency at once, and record each one in pg_wal/pgb/push once it is durable. The call\n" +
			"for a recorded segment checks the record (same file, same repository, the object there with its\n" +
			"recorded size) and exits 0 without reading the segment. An archiver's failure fails the call for\n" +
			"that segment (PostgreSQL retries it); when no archiver runs, the call ships its segment itself.\n" +
			".history, .partial and .backup files are always shipped by the call itself. See docs/wal-push.md.\n\n" +
			"With several repositories (repos), the file is stored in each one --repo selects (all by\n" +
			"default), at once, each with its own look-ahead archiver (pg_wal/pgb/push-NAME); wal-push exits 0\n" +
			"only when every one holds it, so a repository that is down fails archiving and PostgreSQL retries\n" +
			"until it is back: none silently misses WAL (docs/multi-repo.md).",
		Flags: walPushFlags(),
		Action: action(1, "PATH", func(c *cli.Context, e *env) error {
			return e.walPushAll(c, c.Args().First())
		}),
	}
}

// walPushAll is wal-push: into the one repository, or each one selected of repos, at
// once; an error unless every one holds the file. A repository's failure does not stop
// the others: what they stored stays (a retry finds it there, an identical duplicate).
func (e *env) walPushAll(c *cli.Context, path string) error {
	if !e.cfg.Multi() {
		return e.walPush(c, path)
	}
	if e.cfg.WALPushQueueMax > 0 {
		return usagef("wal-push-queue-max is not supported with several repositories (repos): it would drop WAL from every one for the fault of one; remove it, or archive to one repository")
	}
	errs := make([]error, len(e.cfg.Selected))
	var wg sync.WaitGroup
	for i, r := range e.cfg.Selected {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := e.forRepo(r).walPush(c, path); err != nil {
				errs[i] = fmt.Errorf("repository %s: %w", r.Name, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// pushSpool is the name of the look-ahead's directory in pg_wal/pgb: push for the one
// repository, push-NAME for each of repos (each has its own archiver and records).
func (e *env) pushSpool() string {
	if e.cfg.RepoName != "" {
		return "push-" + e.cfg.RepoName
	}
	return "push"
}

func (e *env) walPush(c *cli.Context, path string) (err error) {
	defer func() { err = e.afterPush(c, path, err) }() // wal-push-queue-max; publishes recorded drops
	ctx, cancel := archive.WithDeadline(c.Context, e.cfg.WALTimeout)
	defer cancel()
	defer func() { err = archive.Explain(ctx, err) }()
	oneShotMemory()
	codec, err := e.codec()
	if err != nil {
		return usageError{err}
	}
	if err := e.canEncrypt(); err != nil {
		return err
	}
	var cluster *archive.Cluster
	dir := e.dataDir()
	if dir != "" {
		cl, err := archive.ClusterFromDataDir(dir)
		if err != nil {
			return err
		}
		cluster = &cl
	}
	// One segment at a time: let the codec use every core for it.
	rp, err := e.openRepo(ctx, true, compress.WithConcurrency(codec, runtime.GOMAXPROCS(0)))
	if err != nil {
		return err
	}
	defer func() { _ = rp.Close() }() // releases connections only: every write has completed or failed by now
	fg := e.lookAhead(c, dir, rp, path)
	if fg != nil {
		done, err := e.pushAhead(ctx, fg, path)
		if err != nil {
			return pushFailed(err)
		}
		if done {
			return nil
		}
	}
	a := &archive.Archive{Repo: rp, Log: e.log}
	res, err := a.Push(ctx, path, cluster)
	if err != nil {
		return pushFailed(err)
	}
	e.log.Debug("archived", "file", res.File.Name, "bytes", res.Size, "stored", res.Stored,
		"compression", res.Compressed, "duplicate", res.Duplicate, "duration", res.Duration)
	if fg != nil {
		// So that an archiver does not ship it again; the push is durable already.
		if _, err := fg.Spool.RecordPush(ctx, rp, res); err != nil {
			e.log.Warn("archived, but could not record it for the background archiver", "file", res.File.Name, "error", err)
		}
	}
	return nil
}

// pushFailed is the one way wal-push fails: err becomes the command's one-line error
// and a non-zero exit, so that PostgreSQL keeps the file and retries it.
func pushFailed(err error) error {
	return fmt.Errorf("wal-push: %w", err)
}

// lookAhead returns the look-ahead of this call, or nil when it does not apply: look-ahead
// off (wal-push-concurrency 1), no data directory, or a file that is not a ready segment
// in its pg_wal.
func (e *env) lookAhead(c *cli.Context, dataDir string, rp *repo.Repo, path string) *lookahead.Foreground {
	if e.cfg.WALPushConc < 2 || dataDir == "" {
		return nil
	}
	dd, err := spool.DataDir("", dataDir)
	if err != nil {
		return nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil
	}
	fg := &lookahead.Foreground{WALDir: filepath.Join(dd, "pg_wal"), Repo: rp, Start: e.archiverStarter(c), Log: e.log}
	if !fg.Applies(abs) {
		return nil
	}
	sp, err := spool.Open(dd, e.pushSpool())
	if err != nil {
		e.log.Warn("look-ahead off for this call: pushing the segment itself", "error", err)
		return nil
	}
	fg.Spool = lookahead.Spool(sp)
	return fg
}

// pushAhead ships the segment at path through the background archiver. done says it
// is durable in the repository; false with no error: the call ships it itself.
func (e *env) pushAhead(ctx context.Context, fg *lookahead.Foreground, path string) (done bool, err error) {
	if ok, err := fg.Recorded(ctx, path); ok || err != nil {
		return ok, err
	}
	err = fg.Await(ctx, path)
	if errors.Is(err, lookahead.ErrArchiverGone) {
		e.log.Debug("shipping the segment in this call", "file", filepath.Base(path), "reason", err)
		return false, nil
	}
	return err == nil, err
}

// archiverStarter returns how this wal-push starts a background archiver: pgb itself,
// with this call's settings (the same arguments, environment and working directory)
// and the hidden command archiverCommandName, in a session of its own, stdio on
// /dev/null (it logs to pg_wal/pgb/push/archiver.log).
func (e *env) archiverStarter(c *cli.Context) func() (<-chan struct{}, error) {
	return func() (<-chan struct{}, error) {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		args, _ := c.App.Metadata["args"].([]string)
		placed, err := placeFlags(c.App, args)
		if err != nil || len(placed) < 2 || placed[1] != c.Command.Name {
			return nil, fmt.Errorf("cannot rebuild the command line %q for the archiver", args)
		}
		rest := placed[2:]
		if e.cfg.RepoName != "" {
			rest = withRepoFlag(allFlags(c.App.Commands), rest, e.cfg.RepoName) // the archiver works for this repository alone
		}
		cmd := exec.Command(exe, append([]string{archiverCommandName}, rest...)...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		exited := make(chan struct{})
		go func() {
			_ = cmd.Wait() // its outcome is in its log; this only reaps it
			close(exited)
		}()
		return exited, nil
	}
}

// withRepoFlag is the arguments of a command (flags, then operands) with every --repo
// flag replaced by one --repo=name, first; known says which flags take a value (nil:
// every flag is written --flag=value).
func withRepoFlag(known map[string]bool, args []string, name string) []string {
	out := []string{"--" + config.KeyRepo + "=" + name}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" || !strings.HasPrefix(a, "-") {
			return append(out, args[i:]...)
		}
		flag, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		takesValue := known[flag]
		if flag == config.KeyRepo {
			if !hasValue {
				i++ // its value
			}
			continue
		}
		out = append(out, a)
		if takesValue && !hasValue && i+1 < len(args) {
			i++
			out = append(out, args[i])
		}
	}
	return out
}
