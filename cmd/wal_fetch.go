package cmd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pgb-project/pgb/internal/archive"
	"github.com/pgb-project/pgb/internal/compress"
	"github.com/pgb-project/pgb/internal/config"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/spool"
)

func walFetchCommand() *cli.Command {
	return &cli.Command{
		Name:      "wal-fetch",
		Usage:     "restore one WAL file (restore_command = 'pgb wal-fetch %f %p')",
		ArgsUsage: "NAME DEST",
		Description: "Fetches the archived WAL file NAME, verifies its checksum and writes it atomically to DEST.\n" +
			"A segment must decode to exactly the segment size its own header records (a power of two,\n" +
			"1 MiB to 1 GiB), a .history file to at most 1 MiB (as restore reads it), a .backup file to\n" +
			"at most 1 MiB: any other object is refused as corrupt before DEST is written.\n\n" +
			"Exit status, as PostgreSQL reads it:\n" +
			"  0    DEST holds the verified file.\n" +
			"  1    NAME is not in the archive (the end of the archive); nothing was written.\n" +
			"       Also any other failure on a standby (standby.signal in the working directory, which is\n" +
			"       the data directory under restore_command; --pgdata is not looked at), which retries by itself.\n" +
			"  255  any other failure during archive recovery (repository unreachable after retries or\n" +
			"       for longer than --wal-timeout, corrupt object, checksum mismatch, disk full), and a\n" +
			"       usage error (unknown flag, missing argument, bad setting) on a standby too: PostgreSQL\n" +
			"       stops recovery instead of ending it early and promoting with committed transactions missing.\n" +
			"       Also, on a standby too, NAME missing from a repository that belongs to another cluster\n" +
			"       than the working directory's global/pg_control, or a segment NAME whose header names another\n" +
			"       cluster: a wrong --repo is never the end of the archive.\n" +
			"  130, 143  interrupted by SIGINT, SIGTERM (above 125 too: recovery stops).\n\n" +
			"Prefetch (--wal-fetch-prefetch, default 8; 0 = off): for a segment, when the working directory\n" +
			"(or else --pgdata/PGDATA, used for nothing else here) is a data directory, a background process\n" +
			"fetches the next segments (following the repository's timeline history files) into\n" +
			"pg_wal/pgb/fetch, and exits when no request came for 10 seconds, keeping the segments still\n" +
			"ahead of the last request (up to --wal-fetch-prefetch of them). A wal-fetch that finds its\n" +
			"segment being written waits for it a quarter of --wal-timeout at most (2 seconds at most), then\n" +
			"fetches it by itself with a full --wal-timeout of its own. A spooled segment is served only\n" +
			"when it came from this repository and its size and checksum match the stored object's; \"not in\n" +
			"the archive\" always comes from asking the repository itself, and a prefetch failure is never\n" +
			"reported: wal-fetch then fetches by itself. See docs/wal-fetch.md.\n\n" +
			"With several repositories (repos), wal-fetch tries each one --repo selects (all by default), in\n" +
			"that order, and falls through to the next when NAME is not in one, or one cannot be read\n" +
			"(unreachable, a damaged object): exit 0 when any one has it. Exit 1 (the end of the archive) only\n" +
			"when every one answered that NAME is not there: when one could not answer, the exit status is\n" +
			"that failure's (255 in archive recovery). Another cluster's repository or a missing key stops\n" +
			"recovery at once. Only the first repository is prefetched from (docs/multi-repo.md).",
		Flags: flags(config.KeyWALTimeout, config.KeyWALFetchPrefetch, config.KeyPGData),
		Action: func(c *cli.Context) error {
			// Every failure, a misconfiguration included, goes through fetchExit: a
			// restore_command that cannot work must stop recovery, not end it.
			if err := exactArgs(c, 2, "NAME DEST"); err != nil {
				return fetchExit(nil, c.Args().First(), err)
			}
			e, err := load(c)
			if err != nil {
				return fetchExit(nil, c.Args().First(), err)
			}
			return fetchExit(e, c.Args().First(), e.walFetchAll(c, c.Args().Get(0), c.Args().Get(1)))
		},
	}
}

// walFetchAll is wal-fetch: from the one repository, or from the first of those
// selected of repos that has NAME, in their order. ErrNotArchived only when every one
// said NAME is not there: a repository that could not answer may hold it, so its
// failure is the outcome then (recovery stops, rather than end early); another
// cluster's repository or a key that cannot decrypt is that outcome first (it stops
// recovery on a standby too). A usage mistake or an interruption ends the search at
// once.
func (e *env) walFetchAll(c *cli.Context, name, dest string) error {
	if !e.cfg.Multi() {
		return e.walFetch(c, name, dest)
	}
	health := newFetchHealth()
	var failed, fatal error
	for i, r := range health.order(e.cfg.Selected) {
		child := e.forRepo(r)
		if i > 0 {
			child.cfg.WALFetchPrefetch = 0 // one prefetcher, for the first repository
		}
		err := child.walFetch(c, name, dest)
		var ue usageError
		switch {
		case err == nil:
			health.answered(r.Name)
			return nil
		case errors.Is(err, archive.ErrNotArchived):
			health.answered(r.Name)
			continue
		case errors.As(err, &ue), c.Err() != nil:
			return fmt.Errorf("repository %s: %w", r.Name, err)
		case errors.Is(err, repo.ErrForeignCluster), errors.Is(err, repo.ErrNoKey), errors.Is(err, repo.ErrWrongKey):
			// Never works, but another repository may serve the file: the search goes
			// on, and this is the outcome if none does.
			health.answered(r.Name)
			if fatal == nil {
				fatal = fmt.Errorf("repository %s: %w", r.Name, err)
			}
			continue
		}
		e.log.Warn("wal-fetch: this repository failed: trying the next", "repo", r.Name, "file", name, "error", err)
		health.failed(r.Name)
		if failed == nil {
			failed = fmt.Errorf("repository %s: %w (and no other repository has it)", r.Name, err)
		}
	}
	switch {
	case fatal != nil:
		return fatal
	case failed != nil:
		return failed
	}
	return fmt.Errorf("%w in any of %s", archive.ErrNotArchived, strings.Join(config.Names(e.cfg.Selected), ", "))
}

func (e *env) walFetch(c *cli.Context, name, dest string) (err error) {
	ctx, cancel := archive.WithDeadline(c.Context, e.cfg.WALTimeout)
	defer cancel()
	defer func() { err = archive.Explain(ctx, err) }()
	oneShotMemory()
	none, _ := compress.New("none", 0) // wal-fetch writes nothing: the compression setting does not matter
	rp, err := e.openRepo(ctx, false, none)
	if err != nil {
		return err
	}
	defer func() { _ = rp.Close() }() // releases connections only: wal-fetch writes nothing to the store
	// PostgreSQL runs restore_command in the data directory: the working directory, never
	// --pgdata, says which cluster fetches (a config file's pgdata may name another).
	wd, err := os.Getwd()
	if err != nil {
		wd = "."
	}
	a := &archive.Archive{Repo: rp, Log: e.log, DataDir: wd}
	sp := e.prefetchSpool(wd, name)
	if sp.dir != "" {
		sum, ok := a.TakeSpooled(ctx, sp.dir, name, dest)
		if !ok && archive.AwaitInFlight(ctx, sp.dir, name, awaitBudget(ctx)) {
			sum, ok = a.TakeSpooled(ctx, sp.dir, name, dest)
		}
		if ok {
			e.log.Debug("fetched from the prefetch spool", "file", name, "bytes", sum.Size)
			e.prefetchAfter(ctx, a, sp, name, sum.Size)
			return nil
		}
		// The direct fetch gets a deadline of its own: what the spool took (a prefetcher
		// stuck on this very segment) never eats into the repository's time.
		var fcancel context.CancelFunc
		ctx, fcancel = archive.WithDeadline(c.Context, e.cfg.WALTimeout)
		defer fcancel()
	}
	sum, err := a.Fetch(ctx, name, dest)
	if err != nil {
		return err
	}
	e.log.Debug("fetched", "file", name, "bytes", sum.Size)
	if sp.dir != "" {
		e.prefetchAfter(ctx, a, sp, name, sum.Size)
	}
	return nil
}

// awaitBudget is how long wal-fetch waits for the prefetcher to finish the segment it
// asks for: a small share of what is left of its deadline, prefetchAwait at most.
func awaitBudget(ctx context.Context) time.Duration {
	d := prefetchAwait
	if dl, ok := ctx.Deadline(); ok {
		d = min(d, time.Until(dl)/4)
	}
	return max(d, 0)
}

// fetchExit maps a wal-fetch outcome onto the exit status PostgreSQL expects.
func fetchExit(e *env, name string, err error) error {
	var ue usageError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ue):
		// A usage error exits 255 on a standby too: a restore_command that can never
		// work must not pass for "not yet archived".
		return usageError{fmt.Errorf("%w (exit %d stops recovery: fix restore_command and start PostgreSQL again)", err, exitUsage)}
	case errors.Is(err, archive.ErrNotArchived):
		e.log.Debug("not in the archive", "file", name)
		return withCode(exitError, errSilent)
	case errors.Is(err, repo.ErrForeignCluster), errors.Is(err, repo.ErrNoKey), errors.Is(err, repo.ErrWrongKey):
		// A wrong repository, or a key that cannot decrypt the WAL, never works: stop
		// recovery, on a standby too (retrying would only fall further behind).
		return withCode(exitRecoveryMustStop, fmt.Errorf("wal-fetch %s: %w (exit %d stops recovery: fix restore_command and start PostgreSQL again)", name, err, exitRecoveryMustStop))
	case standby():
		return withCode(exitError, fmt.Errorf("wal-fetch %s: %w (standby: PostgreSQL will retry)", name, err))
	default:
		return withCode(exitRecoveryMustStop, fmt.Errorf("wal-fetch %s: %w (exit %d stops recovery rather than end it early: fix the cause and start PostgreSQL again)", name, err, exitRecoveryMustStop))
	}
}

// standby reports whether the data directory asks for standby mode, where PostgreSQL
// retries restore_command by itself. It looks only at the working directory, which is
// the data directory under restore_command: never at --pgdata or a config file's
// pgdata, which may name another cluster on this host (a standby beside a drill restore).
func standby() bool {
	_, err := os.Stat("standby.signal")
	return err == nil
}

// fetchDemotion is how long a repository that failed a wal-fetch (unreachable, a
// damaged object) is asked after the others: recovery fetches segment after segment,
// and one that hangs until wal-timeout each time would hold it back for as long per
// segment although another repository has them all.
const fetchDemotion = time.Minute

// fetchHealth remembers, across wal-fetch calls of one data directory, the
// repositories that failed lately: a file per repository in pg_wal/pgb/fetch-failing,
// its time the failure's. It only changes the order: every repository is still asked
// before a file is called not archived. Without a data directory (or a spool that
// cannot be opened) it remembers nothing.
type fetchHealth struct{ dir string }

func newFetchHealth() fetchHealth {
	wd, err := os.Getwd()
	if err != nil {
		return fetchHealth{}
	}
	dd, err := spool.DataDir(wd, "") // restore_command runs in the data directory
	if err != nil {
		return fetchHealth{}
	}
	dir, err := spool.Open(dd, "fetch-failing")
	if err != nil {
		return fetchHealth{}
	}
	return fetchHealth{dir: dir}
}

// order is rs with those that failed within fetchDemotion moved last, each group in
// its order.
func (h fetchHealth) order(rs []config.Repository) []config.Repository {
	if h.dir == "" {
		return rs
	}
	var ok, late []config.Repository
	for _, r := range rs {
		if fi, err := os.Lstat(filepath.Join(h.dir, r.Name)); err == nil && time.Since(fi.ModTime()) < fetchDemotion {
			late = append(late, r)
			continue
		}
		ok = append(ok, r)
	}
	return append(ok, late...)
}

// failed records that the repository name failed now.
func (h fetchHealth) failed(name string) {
	if h.dir == "" {
		return
	}
	p := filepath.Join(h.dir, name)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return // remembering is best effort
	}
	_ = f.Close()
	now := time.Now()
	_ = os.Chtimes(p, now, now)
}

// answered forgets a failure of the repository name: it answered.
func (h fetchHealth) answered(name string) {
	if h.dir != "" {
		_ = os.Remove(filepath.Join(h.dir, name)) // absent: nothing to forget
	}
}
