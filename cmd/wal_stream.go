package cmd

import (
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pgb-project/pgb/internal/archive"
	"github.com/pgb-project/pgb/internal/config"
	"github.com/pgb-project/pgb/internal/repo"
	"github.com/pgb-project/pgb/internal/walstream"
)

func walStreamCommand() *cli.Command {
	return &cli.Command{
		Name:  "wal-stream",
		Usage: "stream WAL into the repository as PostgreSQL writes it (RPO 0 with --synchronous)",
		Description: "Connects to PostgreSQL (--pg-dsn) with the physical replication protocol, like a standby,\n" +
			"through a physical replication slot (--slot, created when missing, so the server keeps WAL\n" +
			"for the stream while it is down), and stores WAL in the repository as it arrives: a completed\n" +
			"segment exactly as wal-push stores it (an identical duplicate of one archive_command pushed\n" +
			"is no conflict), the segment being written as immutable chunks every --flush-interval or\n" +
			"--flush-bytes. wal-fetch serves a segment that only has chunks zero-padded after its last\n" +
			"streamed byte, so recovery replays up to it. It runs until SIGTERM or SIGINT, which store\n" +
			"what was received first; a lost connection or a failing store is retried, from what is\n" +
			"durable in the repository. A timeline switch (a promoted standby) is followed.\n\n" +
			"The position reported to PostgreSQL as flushed is always what is durable in the repository.\n" +
			"--synchronous stores received WAL as soon as none more is waiting; with\n" +
			"synchronous_standby_names naming --application-name (pgb), a commit returns only once its WAL\n" +
			"is in the repository: RPO 0, at the cost of one store per commit (docs/wal-stream.md).\n\n" +
			"With several repositories (repos), WAL is stored in each one selected, and is durable once\n" +
			"every one holds it.",
		Flags: append(flags(config.KeyPGDSN, config.KeyCompression, config.KeyCompressionLevel),
			&cli.StringFlag{Name: "slot", Value: "pgb", EnvVars: []string{"PGB_SLOT"}, Usage: "physical replication slot to stream through (created when missing)"},
			&cli.StringFlag{Name: "application-name", Value: "pgb", EnvVars: []string{"PGB_APPLICATION_NAME"}, Usage: "application_name of the stream: what synchronous_standby_names names"},
			&cli.DurationFlag{Name: "flush-interval", Value: time.Second, EnvVars: []string{"PGB_FLUSH_INTERVAL"}, Usage: "store received WAL at least this often"},
			&cli.StringFlag{Name: "flush-bytes", Value: "16MiB", EnvVars: []string{"PGB_FLUSH_BYTES"}, Usage: "store received WAL once this much waits (the default, a whole default segment, leaves it to --flush-interval: a segment filled within the interval is stored whole only)"},
			&cli.BoolFlag{Name: "synchronous", EnvVars: []string{"PGB_SYNCHRONOUS"}, Usage: "store received WAL as soon as none more waits, for synchronous replication (RPO 0)"},
			&cli.DurationFlag{Name: "status-interval", Value: 10 * time.Second, Usage: "tell the server the stream's position at least this often"},
		),
		Action: action(0, "none", func(c *cli.Context, e *env) error {
			return e.walStream(c)
		}),
	}
}

func (e *env) walStream(c *cli.Context) error {
	ctx := c.Context
	if err := walstream.ValidSlotName(c.String("slot")); err != nil {
		return usageError{err}
	}
	flushBytes, err := config.ParseSize(c.String("flush-bytes"))
	if err != nil || flushBytes < 1 || flushBytes > 1<<30 {
		return usagef("--flush-bytes %q: a size from 1 byte to 1GiB, such as 1MiB", c.String("flush-bytes"))
	}
	if c.Duration("flush-interval") <= 0 || c.Duration("status-interval") <= 0 {
		return usagef("--flush-interval and --status-interval must be positive durations, such as 1s")
	}
	envs := e.selected()
	var archives []*archive.Archive
	defer func() {
		for _, a := range archives {
			_ = a.Repo.Close() // every store has completed or failed by now
		}
	}()
	for _, x := range envs {
		var r *repo.Repo
		r, err = x.openRepo(ctx, true, nil)
		if err != nil {
			if x.cfg.RepoName != "" {
				return fmt.Errorf("repository %s: %w", x.cfg.RepoName, err)
			}
			return err
		}
		archives = append(archives, &archive.Archive{Repo: r, Log: x.log})
	}
	s := &walstream.Streamer{
		Archives: archives,
		Log:      e.log,
		Opt: walstream.Options{
			DSN:            e.cfg.PGDSN,
			Slot:           c.String("slot"),
			AppName:        c.String("application-name"),
			FlushInterval:  c.Duration("flush-interval"),
			FlushBytes:     int(flushBytes),
			Synchronous:    c.Bool("synchronous"),
			StatusInterval: c.Duration("status-interval"),
			MaxBackoff:     30 * time.Second,
			ReceiveTimeout: time.Minute,
		},
	}
	return s.Run(ctx)
}
