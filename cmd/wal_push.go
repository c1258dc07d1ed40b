package cmd

import (
	"fmt"
	"runtime"

	"github.com/urfave/cli/v2"

	"github.com/pgb-project/pgb/internal/archive"
	"github.com/pgb-project/pgb/internal/compress"
	"github.com/pgb-project/pgb/internal/config"
)

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
			"recovery across a dropped segment is impossible; pgb status and pgb restore say so.",
		Flags: flags(config.KeyPGData, config.KeyCompression, config.KeyCompressionLevel, config.KeyWALTimeout, config.KeyWALPushQueueMax),
		Action: action(1, "PATH", func(c *cli.Context, e *env) error {
			return e.walPush(c, c.Args().First())
		}),
	}
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
	var cluster *archive.Cluster
	if dir := e.dataDir(); dir != "" {
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
	a := &archive.Archive{Repo: rp, Log: e.log}
	res, err := a.Push(ctx, path, cluster)
	if err != nil {
		return fmt.Errorf("wal-push: %w", err)
	}
	e.log.Debug("archived", "file", res.File.Name, "bytes", res.Size, "stored", res.Stored,
		"compression", res.Compressed, "duplicate", res.Duplicate, "duration", res.Duration)
	return nil
}
