package cmd

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pgb-project/pgb/internal/config"
	"github.com/pgb-project/pgb/internal/drill"
	"github.com/pgb-project/pgb/internal/extract"
	"github.com/pgb-project/pgb/internal/restore"
)

// exitLoadFailed: pgb extract recovered and dumped the tables, but the load into the
// live database failed or did not end cleanly (the message says whether its one
// transaction was rolled back, committed, or is still in progress).
const exitLoadFailed = 3

// repeated is a flag value given once per occurrence (no comma splitting: a quoted
// table name may hold a comma).
type repeated []string

func (r *repeated) Set(s string) error { *r = append(*r, s); return nil }
func (r *repeated) String() string     { return strings.Join(*r, " ") }

func extractCommand() *cli.Command {
	return &cli.Command{
		Name:  "extract",
		Usage: "get tables back as they were at a point in time, into the live database or a SQL file, without rolling the database back",
		Description: "Recovers a throwaway copy to the target as pgb drill does (the same restore, a private server\n" +
			"in --scratch, archiving off), promotes it there, dumps the --table(s) with the copy's own\n" +
			"pg_dump (plain SQL: the table, its indexes, constraints, owned sequences, triggers, grants and\n" +
			"rows; --data-only: the rows), and loads the dump into the live database (--into DSN, with psql\n" +
			"in one transaction: all of it or nothing) or writes it to a new file (--dump FILE). Then it\n" +
			"stops the copy and removes the scratch directory, also on failure and on SIGINT/SIGTERM.\n\n" +
			"A target is required: --before-event XID (the xid pgb events prints for a DROP, TRUNCATE or\n" +
			"mass DELETE, 32-bit or 64-bit: stop just before that transaction commits) or --target-time,\n" +
			"--target-name, --target-lsn, --target-xid (with --target-exclusive to stop before it).\n\n" +
			"--into refuses, before restoring anything, a table that exists in the live database: --rename-to\n" +
			"NEW loads the copy beside it (its indexes and sequences renamed too: a name starting with the\n" +
			"table's gets NEW in place of that prefix, orders_pkey -> NEW_pkey; any other gets NEW_ in front),\n" +
			"--data-only adds back the rows it lacks (whole rows compared: rows still there are not doubled,\n" +
			"a row whose key a live row holds with other values is left alone and counted; the live\n" +
			"sequences are left as they are; the columns must match). Views, functions and\n" +
			"other tables' foreign keys to the table are not recreated. A partitioned table comes with its\n" +
			"partitions; an inheritance parent needs its children given too; an unlogged table is refused\n" +
			"(its rows are in no backup). See docs/extract.md.\n\n" +
			"Exit status: 0 done; 3 the tables were recovered and dumped but the load into --into failed\n" +
			"or did not end cleanly (--load-timeout, a lost connection; the message says whether its one\n" +
			"transaction was rolled back, committed or is still in progress); 1 could not extract (no backup, recovery did not reach the target, no\n" +
			"such table there, a name collision, …); 255 a usage error; 130/143 interrupted (after cleaning up).",
		Flags: append(flags(config.KeyConcurrency),
			&cli.GenericFlag{Name: "table", Value: &repeated{}, Usage: "extract `SCHEMA.NAME` (repeatable; NAME alone: schema public; as in SQL, unquoted names are folded to lower case, \"Double Quoted\" ones are taken as is)"},
			&cli.StringFlag{Name: "database", Value: "postgres", Usage: "the `DB` the tables are in"},
			&cli.StringFlag{Name: "before-event", Usage: "extract as it was just before transaction `XID` committed (the xid pgb events prints)"},
			&cli.StringFlag{Name: "target-time", Usage: "extract as it was at `TIMESTAMP`"},
			&cli.StringFlag{Name: "target-name", Usage: "extract as it was at the restore point `NAME`"},
			&cli.StringFlag{Name: "target-lsn", Usage: "extract as it was at `LSN`"},
			&cli.StringFlag{Name: "target-xid", Usage: "extract as it was once transaction `XID` committed"},
			&cli.BoolFlag{Name: "target-exclusive", Usage: "stop just before the --target-time, --target-lsn or --target-xid"},
			&cli.StringFlag{Name: "into", Usage: "load into the live database at `DSN` (a libpq connection string or URI)"},
			&cli.StringFlag{Name: "dump", Usage: "write the SQL to `FILE` (a new file; load it with psql -X -v ON_ERROR_STOP=1 --single-transaction -f FILE)"},
			&cli.StringFlag{Name: "rename-to", Usage: "give the (one) table the name `NEW`, in its schema, with its indexes and sequences"},
			&cli.BoolFlag{Name: "data-only", Usage: "the rows only: with --into, those the table that exists in the live database lacks"},
			&cli.BoolFlag{Name: "no-owner", Usage: "leave out ownership and grants: the tables belong to the --into user"},
			&cli.StringFlag{Name: "scratch", Usage: "recover the copy in `DIR` (absent or empty; default a new temporary directory), removed afterwards"},
			&cli.BoolFlag{Name: "keep", Usage: "leave the copy running and the scratch directory (not after a signal), and say how to connect"},
			&cli.DurationFlag{Name: "timeout", Value: time.Hour, Usage: "longest wait for recovery to reach the target"},
			&cli.DurationFlag{Name: "load-timeout", Value: time.Hour, Usage: "longest the load into --into may take (0: no limit); past it the load is stopped and pgb says whether its transaction committed"},
			&cli.StringFlag{Name: "pg-bin", Usage: "`DIR` of the PostgreSQL binaries (postgres, pg_dump, psql; default: searched by the backup's major version)"},
			&cli.StringFlag{Name: "owner", Usage: "when run as root, the OS `USER` the copy runs as"},
			&cli.StringFlag{Name: "user", Usage: "database `USER` to connect to the copy as (default: the copy's OS user name)"},
		),
		Action: action(0, "none", func(c *cli.Context, e *env) error { return e.first().extract(c) }),
	}
}

func extractOptions(c *cli.Context) (extract.Options, error) {
	opt := extract.Options{Database: c.String("database"), Into: c.String("into"), Dump: c.String("dump"),
		RenameTo: c.String("rename-to"), DataOnly: c.Bool("data-only"), NoOwner: c.Bool("no-owner"),
		LoadTimeout: c.Duration("load-timeout")}
	if r, ok := c.Generic("table").(*repeated); ok {
		for _, s := range *r {
			t, err := extract.ParseTable(s)
			if err != nil {
				return opt, usagef("--table: %v", err)
			}
			opt.Tables = append(opt.Tables, t)
		}
	}
	t, err := extractTarget(c)
	if err != nil {
		return opt, err
	}
	if t.Kind != restore.ToEnd {
		opt.Drill.Target = &t
	}
	if c.String("owner") != "" && os.Geteuid() != 0 {
		return opt, usagef("--owner needs root")
	}
	if err := opt.Validate(); err != nil {
		return opt, usageError{err}
	}
	return opt, nil
}

// extractTarget reads --before-event or one --target-*.
func extractTarget(c *cli.Context) (restore.Target, error) {
	t := restore.Target{Action: "pause", Timeline: "latest", Exclusive: c.Bool("target-exclusive")}
	n, err := readTargetPoint(c, &t, targetFlags{"target-time", "target-name", "target-lsn", "target-xid"})
	if err != nil {
		return t, err
	}
	if v := c.String("before-event"); v != "" {
		x, err := strconv.ParseUint(v, 10, 64)
		if err != nil || uint32(x) < 3 {
			return t, usagef("--before-event %q is not a transaction id (the xid pgb events prints)", v)
		}
		if t.Exclusive {
			return t, usagef("--before-event already stops just before the transaction: leave out --target-exclusive")
		}
		t.Kind, t.XID, t.Exclusive, n = restore.ToXID, x, true, n+1
	}
	if n > 1 {
		return t, usagef("give one of --before-event, --target-time, --target-name, --target-lsn, --target-xid")
	}
	if t.Exclusive && (t.Kind == restore.ToEnd || t.Kind == restore.ToName) {
		return t, usagef("--target-exclusive applies to --target-time, --target-lsn and --target-xid only")
	}
	return t, nil
}

func (e *env) extract(c *cli.Context) error {
	ctx := c.Context
	opt, err := extractOptions(c)
	if err != nil {
		return err
	}
	opt.Events = e.stderr
	opt.Drill = drill.Options{Target: opt.Drill.Target, Scratch: c.String("scratch"), Keep: c.Bool("keep"),
		Timeout: c.Duration("timeout"), PGBin: c.String("pg-bin"), Owner: c.String("owner"), User: c.String("user"),
		Concurrency: e.cfg.Concurrency, Log: e.log, Events: e.stderr, AfterStart: drillTestHook(),
		OwnerWarning: e.serverCannotRead}
	if isTTY(e.stderr) {
		opt.Drill.Progress = e.stderr
	}
	if opt.Drill.RestoreCommand, _, err = e.restoreCommand(e.ownRepo()); err != nil {
		return err
	}
	rp, err := e.openRepo(ctx, false, nil)
	if err != nil {
		return err
	}
	defer func() { _ = rp.Close() }() // releases connections only: extract writes nothing to the repository
	res, err := extract.Run(ctx, rp, opt)
	if res != nil {
		for _, l := range res.Summary() {
			_, _ = fmt.Fprintln(e.stdout, l)
		}
		if rep := res.Report; rep != nil && rep.Kept != nil {
			_, _ = fmt.Fprintf(e.stdout, "the copy keeps running: %s\n  stop it: %s\n", rep.Kept.Connect, rep.Kept.Stop)
		}
	}
	if errors.Is(err, extract.ErrLoad) {
		return withCode(exitLoadFailed, err)
	}
	return err
}
