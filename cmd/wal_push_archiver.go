package cmd

import (
	"errors"
	"path/filepath"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pgb-project/pgb/internal/archive"
	"github.com/pgb-project/pgb/internal/archive/lookahead"
	"github.com/pgb-project/pgb/internal/compress"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/spool"
)

// archiverCommandName is the hidden command wal-push starts as its background archiver.
const archiverCommandName = "_wal-push-archiver"

// archiverLogLimit bounds the archiver's log file (pg_wal/pgb/push/archiver.log).
const archiverLogLimit = 1 << 20

func walPushArchiverCommand() *cli.Command {
	return &cli.Command{
		Name:      archiverCommandName,
		Hidden:    true,
		Usage:     "internal: the background archiver wal-push starts; not for users",
		ArgsUsage: "PATH",
		Flags:     walPushFlags(),
		Action: action(1, "PATH", func(c *cli.Context, e *env) error {
			return e.walPushArchiver(c)
		}),
	}
}

// walPushArchiver runs the background archiver of the data directory wal-push works
// for, until it is idle. It exits 0 at once when another one runs.
func (e *env) walPushArchiver(c *cli.Context) error {
	ctx := c.Context
	e, err := e.one(c) // started by wal-push with --repo NAME when there are several
	if err != nil {
		return err
	}
	dd, err := spool.DataDir("", e.dataDir())
	if err != nil {
		return err
	}
	dir, err := spool.Open(dd, e.pushSpool())
	if err != nil {
		return err
	}
	sp := lookahead.Spool(dir)
	logw, err := sp.OpenLog(archiverLogLimit)
	if err != nil {
		return err
	}
	defer func() { _ = logw.Close() }() // the log is best effort
	e.stderr = logw
	e.log = newLogger(logw, e.cfg.LogLevel, e.cfg.LogFormat)
	// A long-lived process whose heap is a few large buffers without pointers (one
	// sealed segment in flight per worker): collecting often costs little and keeps
	// its memory near what is in flight.
	debug.SetGCPercent(20)
	debug.SetMemoryLimit(64 << 20)
	if err := e.archiverTestHook(); err != nil {
		return err
	}
	cluster, err := archive.ClusterFromDataDir(dd)
	if err != nil {
		e.log.Error("archiver", "error", err)
		return err
	}
	codec, err := e.codec()
	if err != nil {
		return usageError{err}
	}
	// Each segment's codec runs on one core: wal-push-concurrency segments at once use
	// about that many cores.
	codec = compress.WithConcurrency(codec, 1)
	st, err := e.openStore(ctx, true)
	if err != nil {
		e.log.Error("archiver", "error", err)
		return err
	}
	defer func() { _ = st.Close() }() // every write has completed or failed by now
	if e.wrapStore != nil {
		st = e.wrapStore(st)
	}
	// One set of sealing buffers for the whole run: each segment's Repo borrows from it.
	bufs := &repo.WALBuffers{}
	opt, err := e.repoOptions(codec)
	if err != nil {
		e.log.Error("archiver", "error", err)
		return err
	}
	opt.Buffers = bufs
	opt.KeyRing = &repo.KeyRing{} // a passphrase key opened, a recipient set recorded, once per run, not per segment
	a := &lookahead.Archiver{
		Spool: sp, WALDir: filepath.Join(dd, "pg_wal"), Cluster: &cluster,
		NewRepo:     func() *repo.Repo { return repo.New(st, opt) },
		Concurrency: e.cfg.WALPushConc, Timeout: e.cfg.WALTimeout, Log: e.log,
	}
	err = a.Run(ctx)
	if errors.Is(err, lookahead.ErrArchiverRunning) {
		return nil
	}
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru) // for the log line only
	e.log.Info("archiver exiting", "shipped", a.Shipped, "failed", a.Failed,
		"cpu_user", time.Duration(ru.Utime.Nano()), "cpu_system", time.Duration(ru.Stime.Nano()), "max_rss_kib", ru.Maxrss)
	if err != nil {
		e.log.Error("archiver", "error", err)
	}
	return err
}
