package cmd

import (
	"errors"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/pgb-project/pgb/internal/archive"
	"github.com/pgb-project/pgb/internal/spool"
)

// afterPush is wal-push's last word on the push of path, which ended with err. A
// failure goes through wal-push-queue-max, which may drop the segment (nil: exit 0,
// the drop logged and recorded); a usage mistake or an interruption never does. A
// success publishes the drops still recorded only in the data directory as gap
// records in the repository; failing that, the push still succeeded (the segment is
// durable) and the records wait for the next one, with a warning.
func (e *env) afterPush(c *cli.Context, path string, err error) error {
	var usage usageError
	if err != nil && (errors.As(err, &usage) || c.Err() != nil || e.cfg.WALPushQueueMax <= 0) {
		return err
	}
	dir := e.queueDataDir()
	if err != nil {
		host, _ := os.Hostname()
		q := &archive.QueueMax{Limit: e.cfg.WALPushQueueMax, DataDir: dir, Host: host, Version: c.App.Version, Log: e.log}
		return q.ApplyAfterFailure(path, err)
	}
	if dir == "" || !archive.HasPendingDrops(dir) {
		return nil
	}
	ctx, cancel := archive.WithDeadline(c.Context, e.cfg.WALTimeout)
	defer cancel()
	rp, perr := e.openRepo(ctx, false, nil)
	if perr == nil {
		defer func() { _ = rp.Close() }() // every write has completed or failed by now
		_, perr = archive.PublishDrops(ctx, rp, dir, e.log)
	}
	if perr != nil {
		e.log.Warn("dropped WAL is not yet recorded in the repository: the next wal-push records it", "error", archive.Explain(ctx, perr))
	}
	return nil
}

// queueDataDir is the data directory whose pg_wal wal-push-queue-max counts and keeps
// its drop records in: the working directory when it is one (archive_command runs
// there), else --pgdata; "" when neither is.
func (e *env) queueDataDir() string {
	wd, err := os.Getwd()
	if err != nil {
		wd = ""
	}
	dir, err := spool.DataDir(wd, e.cfg.PGData)
	if err != nil {
		return ""
	}
	return dir
}
