package cmd

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pgb-project/pgb/internal/archive"
	"github.com/pgb-project/pgb/internal/compress"
	"github.com/pgb-project/pgb/internal/config"
	"github.com/pgb-project/pgb/internal/spool"
	"github.com/pgb-project/pgb/internal/wal"
)

// prefetchKeys are the settings wal-fetch hands on to its prefetcher.
func prefetchKeys() []string {
	keys := append(append([]string(nil), commonKeys...), config.RepoKeys()...)
	return append(keys, config.KeyWALTimeout, config.KeyWALFetchPrefetch)
}

// Prefetcher timing: how long it waits without a request before exiting, and how often
// it looks for one.
const (
	prefetchIdle = 10 * time.Second
	prefetchPoll = 5 * time.Millisecond // without inotify; with it, 20 times less often
	// prefetchAwait bounds how long wal-fetch waits for the prefetcher to finish
	// writing the very segment it asks for, before fetching it itself (a quarter of
	// what is left of wal-timeout when that is less): a prefetcher stuck on it must not
	// delay recovery much.
	prefetchAwait = 2 * time.Second
)

// prefetchWorkers is how many segments the prefetcher fetches at once.
const prefetchWorkers = 2

// spawnFunc starts pgb with args, detached, in the working directory dir.
type spawnFunc func(args, environ []string, dir string) error

// spawnDetached starts this pgb executable in its own session, with its standard
// streams on /dev/null, and does not wait for it.
func spawnDetached(args, environ []string, dir string) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	c := exec.Command(exe, args...)
	c.Env, c.Dir = environ, dir
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := c.Start(); err != nil {
		return err
	}
	return c.Process.Release()
}

// fetchSpool is where wal-fetch's prefetch lives for one call; dir "" when off.
type fetchSpool struct {
	dataDir, dir string
}

// prefetchSpool opens the prefetch spool for a fetch of name, or returns the zero
// fetchSpool when prefetch does not apply: prefetch 0, not a segment, no data
// directory (the working directory, else --pgdata/PGDATA; never a config file's
// pgdata, which may name another cluster), or a spool that cannot be opened (logged).
func (e *env) prefetchSpool(wd, name string) fetchSpool {
	if e.cfg.WALFetchPrefetch <= 0 || e.spawn == nil {
		return fetchSpool{}
	}
	if f, err := wal.Parse(name); err != nil || f.Kind != wal.Segment {
		return fetchSpool{}
	}
	dataDir, err := spool.DataDir(wd, e.cfg.Given[config.KeyPGData])
	if err != nil {
		return fetchSpool{}
	}
	dir, err := spool.Open(dataDir, "fetch")
	if err != nil {
		e.log.Warn("prefetch off for this call", "err", err)
		return fetchSpool{}
	}
	return fetchSpool{dataDir: dataDir, dir: dir}
}

// prefetchAfter tells the prefetcher that name (size bytes) was asked for, and starts
// one when none runs. Failures are logged: the segment itself is already in DEST.
func (e *env) prefetchAfter(ctx context.Context, a *archive.Archive, sp fetchSpool, name string, size int64) {
	err := archive.SignalWant(sp.dir, archive.Want{Name: name, SegSize: size, Repo: a.Repo.String()})
	if err == nil {
		var running bool
		if running, err = archive.PrefetcherRunning(sp.dir); err == nil && !running {
			err = e.startPrefetcher(sp.dataDir)
		}
	}
	if err != nil && ctx.Err() == nil {
		e.log.Warn("prefetch not started", "err", err)
	}
}

// startPrefetcher runs "pgb _prefetch DATADIR" detached, with the settings of this
// call: those given by flag or environment as flags (the config file travels with
// --config), secrets given by flag in the environment, never on a command line.
func (e *env) startPrefetcher(dataDir string) error {
	flags, secrets := config.PassOn(e.cfg, prefetchKeys())
	if e.cfg.RepoName != "" {
		flags = withRepoFlag(nil, flags, e.cfg.RepoName) // the prefetcher works for this repository alone
	}
	environ := os.Environ()
	for _, k := range secrets {
		if s, ok := config.Lookup(k); ok && len(s.Env) > 0 {
			environ = append(environ, s.Env[0]+"="+e.cfg.Given[k])
		}
	}
	wd, err := os.Getwd()
	if err != nil {
		wd = dataDir
	}
	args := append(append([]string{"_prefetch"}, flags...), dataDir) // absolute: never taken for a flag
	return e.spawn(args, environ, wd)
}

func prefetcherCommand() *cli.Command {
	return &cli.Command{
		Name:      "_prefetch",
		Hidden:    true,
		Usage:     "wal-fetch's background prefetcher (started by wal-fetch, not by users)",
		ArgsUsage: "DATADIR",
		Flags:     flags(config.KeyWALTimeout, config.KeyWALFetchPrefetch),
		Action: action(1, "DATADIR", func(c *cli.Context, e *env) error {
			e, err := e.one(c) // started by wal-fetch with --repo NAME when there are several
			if err != nil {
				return err
			}
			return e.prefetch(c.Context, c.Args().First())
		}),
	}
}

// prefetch runs the prefetcher of dataDir's spool until it is idle. It logs to
// prefetcher.log in the spool (its standard streams are /dev/null), at most
// archive.PrefetchLogMax bytes per run.
func (e *env) prefetch(ctx context.Context, dataDir string) error {
	dir, err := spool.Open(dataDir, "fetch")
	if err != nil {
		return err
	}
	logf, err := os.OpenFile(dir+"/"+archive.LogFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	defer func() { _ = logf.Close() }() // the log is best effort
	if fi, err := logf.Stat(); err == nil && fi.Size() > archive.PrefetchLogMax/2 {
		_ = logf.Truncate(0) // a new run starts a new log rather than grow it
	}
	e.log = newLogger(&limitWriter{w: logf, n: archive.PrefetchLogMax}, e.cfg.LogLevel, e.cfg.LogFormat).With("pid", os.Getpid())
	none, _ := compress.New("none", 0) // the prefetcher writes nothing to the repository
	rp, err := e.openRepo(ctx, false, none)
	if err != nil {
		e.log.Error("prefetcher: cannot open the repository", "err", err)
		return err
	}
	defer func() { _ = rp.Close() }() // read-only
	p := &archive.Prefetcher{
		Archive: &archive.Archive{Repo: rp, Log: e.log, DataDir: dataDir},
		Dir:     dir, Depth: e.cfg.WALFetchPrefetch, Workers: prefetchWorkers,
		Idle: prefetchIdle, Poll: prefetchPoll, Timeout: e.cfg.WALTimeout,
	}
	e.log.Debug("prefetcher started", "dir", dir, "depth", p.Depth)
	err = p.Run(ctx)
	if errors.Is(err, archive.ErrPrefetcherRunning) {
		return nil
	}
	if err != nil {
		e.log.Error("prefetcher stopped", "err", err)
	}
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru) // for the log only
	e.log.Info("prefetcher exits", "cpu_user", time.Duration(ru.Utime.Nano()), "cpu_sys", time.Duration(ru.Stime.Nano()))
	return err
}

// limitWriter passes on at most n bytes, then drops the rest.
type limitWriter struct {
	w io.Writer
	n int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.n <= 0 {
		return len(p), nil
	}
	q := p
	if int64(len(q)) > l.n {
		q = q[:l.n]
	}
	k, err := l.w.Write(q)
	l.n -= int64(k)
	if err != nil {
		return k, err
	}
	return len(p), nil
}
