package cmd

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pgb-project/pgb/internal/backup"
	"github.com/pgb-project/pgb/internal/compress"
	"github.com/pgb-project/pgb/internal/config"
	"github.com/pgb-project/pgb/internal/pg"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/wal"
)

func backupPushCommand() *cli.Command {
	return &cli.Command{
		Name:  "backup-push",
		Usage: "take an online base backup (for cron: no prompts, one summary line)",
		Description: "Runs pg_backup_start, copies the data directory and every tablespace into compressed tar\n" +
			"parts uploaded in parallel, runs pg_backup_stop, waits (up to --archive-timeout) until the stop\n" +
			"WAL segment is in the repository, and writes the manifest last: until then the backup does not\n" +
			"exist for backup-list or restore. Progress goes to stderr only on a terminal. One backup per\n" +
			"repository at a time. Exits 0 only when the backup is complete and restorable.\n\n" +
			"The data directory read is the server's own (SHOW data_directory) unless --pgdata/PGDATA names\n" +
			"it; a directory whose global/pg_control does not show exactly the server's last checkpoint\n" +
			"(an old copy, or another copy that checkpointed later) is refused.\n\n" +
			"--permanent marks the new backup permanent (see pgb backup-mark): pgb delete never deletes it.\n\n" +
			"On a cluster with data checksums every relation page read is checked; pages that fail (twice, and\n" +
			"not written since the backup started) are listed in the manifest and the summary line, and the\n" +
			"backup is stored all the same. --fail-on-corrupt-page makes that exit 1.\n\n" +
			"With several repositories (repos): the backup goes into the first one --repo selects (all by\n" +
			"default) and is then copied into each other one, read back and verified, with the ancestors it\n" +
			"needs there: the data directory is read once (docs/multi-repo.md).",
		Flags: append(flags(config.KeyPGData, config.KeyPGDSN, config.KeyPrimaryDSN, config.KeyStandbyMaxLag, config.KeyCompression, config.KeyCompressionLevel,
			config.KeyPartSize, config.KeyConcurrency, config.KeyFast, config.KeyFailOnCorruptPage, config.KeyArchiveTimeout, config.KeyLockMaxAge, config.KeyLockWait,
			config.KeyFullEvery, config.KeyChecksumDelta),
			&cli.BoolFlag{Name: "permanent", Usage: "mark the backup permanent: pgb delete never deletes it"},
			&cli.BoolFlag{Name: "incremental", Usage: "take an incremental backup on the newest backup (a full one when none can be its base); overrides incremental in the config file or PGB_INCREMENTAL (off, on, auto)"},
			&cli.BoolFlag{Name: "full", Usage: "take a full backup, whatever incremental in the config file or PGB_INCREMENTAL says"}),
		Action: action(0, "none", func(c *cli.Context, e *env) error {
			switch {
			case c.Bool("incremental") && c.Bool("full"):
				return usageError{fmt.Errorf("--incremental and --full contradict each other: give one")}
			case c.Bool("incremental"):
				e.cfg.Incremental = backup.IncrementalOn
			case c.Bool("full"):
				e.cfg.Incremental = backup.IncrementalOff
			}
			return e.backupPushAll(c, c.Bool("permanent"))
		}),
	}
}

// backupPushAll is backup-push: into the one repository; with several (repos), into
// the first selected, reading the data directory once, then copied into each other
// one (backup.Copy: read back, verified, and written with that repository's own
// settings). When the first fails, the next one takes the backup. Where the copy
// cannot read the backup back (it is encrypted and this host has only recipients,
// no identity), that repository gets a backup of its own. Every repository is tried;
// the error names each that failed.
func (e *env) backupPushAll(c *cli.Context, permanent bool) error {
	ctx := c.Context
	if !e.cfg.Multi() || len(e.cfg.Selected) == 1 {
		return e.each(c, func(e *env) error { _, err := e.backupPush(ctx, permanent); return err })
	}
	var from *env
	var name string
	i := 0
	return e.each(c, func(ce *env) error {
		defer func() { i++ }()
		if from != nil {
			err := ce.copyBackup(ctx, from, name)
			switch {
			case errors.Is(err, errCannotReadBack):
				ce.log.Warn("the backup cannot be copied from "+from.cfg.RepoName+" (its objects are encrypted and no identity is given to read them back): taking a backup of this repository's own", "backup", name)
			case errors.Is(err, backup.ErrChainNotThere):
				ce.log.Warn("the backup's base is not in this repository and cannot be copied there (its WAL is not there: the repository was added later): taking a backup of this repository's own", "backup", name, "why", err)
			default:
				return err
			}
			_, err = ce.backupPush(ctx, permanent)
			return err
		}
		n, err := ce.backupPush(ctx, permanent)
		if n != "" { // stored (a backup with damaged pages fails with --fail-on-corrupt-page, stored all the same)
			from, name = ce, n
		} else if i+1 < len(e.cfg.Selected) {
			ce.log.Warn("the backup failed in this repository: the next one takes it", "error", err)
		}
		return err
	})
}

// errCannotReadBack: a backup's objects in a repository are encrypted and no key here
// decrypts them, so it cannot be copied from there.
var errCannotReadBack = errors.New("the backup cannot be read back to be copied")

// copyBackup copies backup name from the repository of from into e's, with the
// ancestors e's lacks, and prints one line for each.
func (e *env) copyBackup(ctx context.Context, from *env, name string) error {
	if err := e.canEncrypt(); err != nil {
		return err
	}
	none, _ := compress.New("none", 0) // the source is only read
	src, err := from.openRepo(ctx, false, none)
	if err != nil {
		return err
	}
	defer func() { _ = src.Close() }() // read-only
	if src.Encrypting() && !src.CanDecrypt() {
		return errCannotReadBack
	}
	dst, err := e.openRepo(ctx, true, nil)
	if err != nil {
		return err
	}
	defer func() { _ = dst.Close() }() // every write has completed or failed by now
	start := time.Now()
	copied, err := backup.Copy(ctx, src, dst, name, backup.CopyOptions{Concurrency: e.cfg.Concurrency, ArchiveTimeout: e.cfg.ArchiveTimeout,
		LockMaxAge: e.cfg.LockMaxAge, LockWait: e.cfg.LockWait, Log: e.log})
	for _, c := range copied {
		if !c.Complete {
			continue
		}
		if c.Already {
			_, _ = fmt.Fprintf(e.stdout, "backup %s is already in this repository\n", c.Name)
			continue
		}
		_, _ = fmt.Fprintf(e.stdout, "backup %s complete (copied from repository %s, without reading the data directory again): stored %s, in %s\n",
			c.Name, from.cfg.RepoName, human(c.Stored), time.Since(start).Round(time.Millisecond))
	}
	if errors.Is(err, backup.ErrReadBack) && errors.Is(err, repo.ErrNoKey) {
		return errCannotReadBack
	}
	if err != nil {
		return fmt.Errorf("backup-push: copy of backup %s from repository %s: %w", name, from.cfg.RepoName, err)
	}
	return nil
}

func (e *env) backupPush(ctx context.Context, permanent bool) (string, error) {
	codec, err := e.codec()
	if err != nil {
		return "", usageError{err}
	}
	if err := e.canEncrypt(); err != nil {
		return "", err
	}
	conn, err := pg.Connect(ctx, e.cfg.PGDSN)
	if err != nil {
		return "", err
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }() // ends the session: nothing is pending on it
	var primary backup.Primary
	if e.cfg.PrimaryDSN != "" {
		primary = lazyPrimary{dsn: e.cfg.PrimaryDSN}
	}
	rp, err := e.openRepo(ctx, true, codec)
	if err != nil {
		return "", err
	}
	defer func() { _ = rp.Close() }() // releases connections only: every write has completed or failed by now
	p := &backup.Pusher{Repo: rp, Src: conn, Log: e.log, Opt: backup.Options{
		DataDir: e.cfg.PGData, Fast: e.cfg.Fast, PartSize: e.cfg.PartSize, Concurrency: e.cfg.Concurrency,
		ArchiveTimeout: e.cfg.ArchiveTimeout, Progress: progress(e.stderr, "backup"),
		LockMaxAge: e.cfg.LockMaxAge, LockWait: e.cfg.LockWait, Permanent: permanent,
		Incremental: e.cfg.Incremental, FullEvery: e.cfg.FullEvery, ChecksumDelta: e.cfg.ChecksumDelta,
		Primary: primary, StandbyMaxLag: e.cfg.StandbyMaxLag,
	}}
	start := time.Now()
	m, err := p.Run(ctx)
	if m != nil {
		defer func() { _ = m.Close() }() // its file list, a temporary file
	}
	if err != nil {
		if m != nil {
			return m.Name, fmt.Errorf("backup-push: %w", err) // complete, not marked permanent
		}
		return "", fmt.Errorf("backup-push: %w", err)
	}
	d := time.Since(start)
	r := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	e.log.Debug("backup timings", "total", r(d), "start", r(p.Stats.Start), "walk", r(p.Stats.Walk), "copy", r(p.Stats.Copy),
		"stop", r(p.Stats.Stop), "wait_wal", r(p.Stats.WaitWAL), "manifest", r(p.Stats.Manifest))
	// The backup is stored: failing to print the summary is no reason to fail.
	kind := "full backup"
	if m.Incremental() {
		kind = fmt.Sprintf("incremental backup on %s: %d files unchanged, %d as changed pages, %d whole",
			m.Parent, p.Stats.Unchanged.Load(), p.Stats.Paged.Load(), p.Stats.Whole.Load())
	}
	_, _ = fmt.Fprintf(e.stdout, "backup %s complete (%s): %s in %d files, stored %s (%s, ratio %.2f), %d part(s), %s (copy %s, %.0f MB/s), LSN %s to %s\n",
		m.Name, kind, human(m.Size), m.FileCount, human(m.StoredSize), m.Compression, ratio(m.StoredSize, m.Size), len(m.Parts),
		d.Round(time.Millisecond), p.Stats.Copy.Round(time.Millisecond), backup.Rate(m.Size, p.Stats.Copy)/(1<<20), m.StartLSN, m.StopLSN)
	if m.CorruptPages > 0 {
		err := fmt.Errorf("backup %s is stored, but %d page(s) failed their data checksum: %s (pgb verify --backup %s lists them; the database's copies are damaged: find the cause, e.g. the disk, and repair from a backup taken before the damage or by recovery)",
			m.Name, m.CorruptPages, corruptSample(m.Corrupt), m.Name)
		_, _ = fmt.Fprintf(e.stdout, "WARNING: %s\n", err)
		if e.cfg.FailOnCorruptPage {
			return m.Name, err
		}
	}
	return m.Name, nil
}

// corruptSample names the first damaged pages: "base/5/16384 block 5 (and 3 more)".
func corruptSample(list []repo.CorruptPages) string {
	if len(list) == 0 || len(list[0].Blocks) == 0 {
		return "the list was not kept"
	}
	s := fmt.Sprintf("%s block %d", list[0].Path, list[0].Blocks[0])
	more := len(list[0].Blocks) - 1
	for _, c := range list[1:] {
		more += len(c.Blocks)
	}
	if more > 0 {
		s += fmt.Sprintf(" (and %d more listed)", more)
	}
	return s
}

func ratio(stored, size int64) float64 {
	if size == 0 {
		return 1
	}
	return float64(stored) / float64(size)
}

// lazyPrimary is the primary of --primary-dsn, connected for each question: the backup
// may copy for hours, longer than an idle connection lives (idle_session_timeout, a
// pooler, a failover).
type lazyPrimary struct{ dsn string }

func (l lazyPrimary) with(ctx context.Context, fn func(c *pg.Conn) error) error {
	c, err := pg.ConnectTo(ctx, l.dsn, "--primary-dsn / PGB_PRIMARY_DSN")
	if err != nil {
		return err
	}
	defer func() { _ = c.Close(context.WithoutCancel(ctx)) }() // questions only: nothing pending
	return fn(c)
}

func (l lazyPrimary) InRecovery(ctx context.Context) (in bool, err error) {
	err = l.with(ctx, func(c *pg.Conn) (err error) { in, err = c.InRecovery(ctx); return err })
	return in, err
}

func (l lazyPrimary) SystemID(ctx context.Context) (id uint64, err error) {
	err = l.with(ctx, func(c *pg.Conn) (err error) { id, err = c.SystemID(ctx); return err })
	return id, err
}

func (l lazyPrimary) CurrentLSN(ctx context.Context) (lsn wal.LSN, err error) {
	err = l.with(ctx, func(c *pg.Conn) (err error) { lsn, err = c.CurrentLSN(ctx); return err })
	return lsn, err
}

func (l lazyPrimary) SwitchWAL(ctx context.Context) (name string, err error) {
	err = l.with(ctx, func(c *pg.Conn) (err error) { name, err = c.SwitchWAL(ctx); return err })
	return name, err
}

func (l lazyPrimary) Checkpoint(ctx context.Context) (at wal.LSN, err error) {
	err = l.with(ctx, func(c *pg.Conn) (err error) { at, err = c.Checkpoint(ctx); return err })
	return at, err
}
