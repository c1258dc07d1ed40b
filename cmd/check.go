package cmd

import (
	"context"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/pgb-project/pgb/internal/check"
	"github.com/pgb-project/pgb/internal/config"
	"github.com/pgb-project/pgb/internal/pg"
	"github.com/pgb-project/pgb/internal/repo"
)

func checkCommand() *cli.Command {
	return &cli.Command{
		Name:  "check",
		Usage: "check the archiving path end to end",
		Description: "Connects to PostgreSQL, reports archive_mode and archive_command (FAIL unless it calls pgb\n" +
			"wal-push with %p), checks that the repository is reachable, writable and belongs to this\n" +
			"cluster (on S3 also which s3-checksum the store needs and whether it enforces conditional\n" +
			"writes), then forces a WAL switch and waits (up to --archive-timeout) until that segment is in\n" +
			"the repository; it fails at once when pg_stat_archiver shows archive_command failing for that\n" +
			"segment (see the PostgreSQL log for why). Prints one ok/FAIL line per step; exits 1 on any\n" +
			"failure.",
		Flags: append(flags(config.KeyPGDSN, config.KeyArchiveTimeout),
			&cli.BoolFlag{Name: "json", Usage: "print one JSON document: passed, and each step's name, status (ok, warn, fail) and message"}),
		Action: action(0, "none", func(c *cli.Context, e *env) error {
			return e.each(c, func(e *env) error { return e.check(c.Context, c.Bool("json")) })
		}),
	}
}

// check runs the steps (internal/check) and prints one line per step as it is decided.
// Its writes are not checked: the exit status carries the verdict, and there is
// nowhere better to report a broken stdout.
func (e *env) check(ctx context.Context, asJSON bool) error {
	onStep := e.printStep
	if asJSON {
		onStep = nil
	}
	res := check.Run(ctx, check.Deps{
		Connect: func(ctx context.Context) (check.DB, error) {
			conn, err := pg.Connect(ctx, e.cfg.PGDSN)
			if err != nil {
				return nil, err // not a typed nil in an interface
			}
			return conn, nil
		},
		OpenRepo: func(ctx context.Context) (*repo.Repo, error) { return e.openRepo(ctx, true, nil) },
	}, check.Options{
		ArchiveTimeout: e.cfg.ArchiveTimeout,
		S3Conditional:  e.cfg.S3.Conditional,
		S3Checksum:     e.cfg.S3.Checksum,
		OnStep:         onStep,
	})
	if asJSON {
		n := res.Failed()
		if err := e.printJSON(struct {
			Passed bool `json:"passed"`
			Failed int  `json:"failed"`
			check.Result
		}{n == 0, n, res}); err != nil {
			return err
		}
		if n > 0 {
			return withCode(exitError, errSilent)
		}
		return nil
	}
	if n := res.Failed(); n > 0 {
		_, _ = fmt.Fprintf(e.stdout, "check FAILED (%d problem(s))\n", n)
		return withCode(exitError, errSilent)
	}
	_, _ = fmt.Fprintln(e.stdout, "check passed: WAL reaches the repository")
	return nil
}

func (e *env) printStep(s check.Step) {
	switch s.Status {
	case check.OK:
		_, _ = fmt.Fprintln(e.stdout, "ok    "+s.Message)
	case check.Warn:
		_, _ = fmt.Fprintln(e.stdout, "WARN  "+s.Message)
	default:
		_, _ = fmt.Fprintln(e.stdout, "FAIL  "+oneLine(s.Message))
	}
}
