package cmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pgb-project/pgb/internal/atomicfile"
	"github.com/pgb-project/pgb/internal/config"
	"github.com/pgb-project/pgb/internal/drill"
	"github.com/pgb-project/pgb/internal/repo"
)

// exitDrillFailed: the drill ran, and recovery did not reach the target or a check failed.
const exitDrillFailed = 3

func drillCommand() *cli.Command {
	return &cli.Command{
		Name:  "drill",
		Usage: "prove that recovery works: restore into a scratch directory, start PostgreSQL, check, measure RTO and RPO",
		Description: "Restores what pgb restore would (the newest backup, to the end of the archive; or --target,\n" +
			"--target-xid, --backup; --target-exclusive and --target-timeline as for restore) through the same code, with archiving off, into --scratch (default: a new temporary\n" +
			"directory; an existing one must be empty), starts a private PostgreSQL of the backup's major\n" +
			"version on it (no TCP: a unix socket in the scratch directory; as root, as the scratch\n" +
			"directory's owner, --owner, or the backed-up data directory's owner), waits up to --timeout for\n" +
			"recovery to reach the target (promoted at the end of the archive; paused at a target), then\n" +
			"checks: a connection to every database, amcheck (pg_amcheck when it is installed next to the\n" +
			"server, else the amcheck extension's bt_index_check on a sample of 200 indexes per database;\n" +
			"on a copy paused at a target, read-only, only the databases where amcheck is installed),\n" +
			"and each --check-sql statement, all within --check-timeout\n" +
			"(the check running then fails, the rest are not run). It reports the RTO (restore,\n" +
			"replay, total to a queryable database, bytes, throughput) and the RPO (the last commit\n" +
			"recovered, pg_last_xact_replay_timestamp(), against the last archived commit of the backup's\n" +
			"window as pgb status showed it when the drill began, or against a time target; the newest\n" +
			"archived WAL's age). The server is stopped and the\n" +
			"scratch directory removed always, on failure and on SIGINT/SIGTERM too, unless --keep (the server\n" +
			"then keeps running, also after a failed drill, and the report says how to connect and stop it).\n" +
			"A pgb killed outright (SIGKILL) cannot stop its server: the next drill warns about a server\n" +
			"left on a $TMPDIR/pgb-drill-* directory and says how to stop it (docs/drill.md).\n\n" +
			"--check-sql FILE: SQL statements, each ending with a line that ends in ';'; lines of '--'\n" +
			"comments between statements are skipped. Each runs in database postgres and passes when it\n" +
			"returns a row whose first column is not false or NULL.\n\n" +
			"Every drill that ran or tried to (passed, failed, or unable to run) is recorded in the repository,\n" +
			"last (drills/); an interrupted one is not. --prom FILE writes pgb_drill_success, _timestamp_seconds,\n" +
			"_last_success_timestamp_seconds, _rto_seconds, … for node_exporter's textfile collector,\n" +
			"atomically, also when the drill failed (docs/drill.md).\n\n" +
			"Exit status: 0 the target was reached and every check passed; 3 the drill ran and failed\n" +
			"(recovery stopped short, timed out, or a check failed: the report says which); 1 the drill\n" +
			"could not run, or its record could not be written; 255 a usage error; 130/143 interrupted\n" +
			"(after cleaning up).",
		Flags: append(flags(config.KeyConcurrency),
			&cli.StringFlag{Name: "target", Usage: "recover to `TARGET`: latest (the end of the archive), a timestamp, an LSN (X/Y) or a restore point's name"},
			&cli.StringFlag{Name: "target-xid", Usage: "recover to transaction `XID` (as pgb restore: the 32-bit form pgb events shows, or the full one)"},
			&cli.BoolFlag{Name: "target-exclusive", Usage: "stop just before the time, LSN or transaction target instead of just after"},
			&cli.StringFlag{Name: "target-timeline", Usage: "follow timeline `TL`: latest (default), current or a number"},
			&cli.StringFlag{Name: "backup", Usage: "restore this backup (`NAME`) instead of the newest that reaches the target"},
			&cli.StringFlag{Name: "scratch", Usage: "restore into `DIR` (absent or empty, no comma in its path; default a new temporary directory), removed afterwards"},
			&cli.DurationFlag{Name: "timeout", Value: time.Hour, Usage: "longest wait for recovery to reach the target"},
			&cli.DurationFlag{Name: "check-timeout", Value: time.Hour, Usage: "longest time for the checks, all together (the one running then fails)"},
			&cli.StringFlag{Name: "pg-bin", Usage: "`DIR` of the PostgreSQL server binaries (default: searched by the backup's major version)"},
			&cli.StringFlag{Name: "owner", Usage: "when run as root, the OS `USER` the server runs as"},
			&cli.StringFlag{Name: "user", Usage: "database `USER` to connect as, a superuser (default: the server's OS user name; a cluster whose superuser has another name needs it)"},
			&cli.StringFlag{Name: "check-sql", Usage: "run the statements of `FILE` as checks (see above)"},
			&cli.BoolFlag{Name: "keep", Usage: "leave the server running and the scratch directory (not after a signal), and say how to connect"},
			&cli.BoolFlag{Name: "json", Usage: "print the report as JSON (docs/drill.md)"},
			&cli.StringFlag{Name: "report", Usage: "also write the JSON report to `FILE` (with repos: one per repository, its name before the extension: report.offsite.json)"},
			&cli.StringFlag{Name: "prom", Usage: "also write the result as Prometheus metrics to `FILE` (textfile collector; written atomically, also when the drill fails; with repos: one per repository, pgb.offsite.prom)"},
		),
		Action: action(0, "none", func(c *cli.Context, e *env) error {
			return e.each(c, func(e *env) error { return e.drill(c) })
		}),
	}
}

func (e *env) drill(c *cli.Context) error {
	ctx := c.Context
	t, err := drill.ParseTargetFlags(drill.TargetFlags{Target: c.String("target"), XID: c.String("target-xid"),
		Exclusive: c.Bool("target-exclusive"), Timeline: c.String("target-timeline")})
	if err != nil {
		return usageError{err}
	}
	if c.String("owner") != "" && os.Geteuid() != 0 {
		return usagef("--owner needs root")
	}
	opt := drill.Options{Backup: c.String("backup"), Target: &t, Scratch: c.String("scratch"), Keep: c.Bool("keep"),
		Timeout: c.Duration("timeout"), CheckTimeout: c.Duration("check-timeout"), PGBin: c.String("pg-bin"), Owner: c.String("owner"), User: c.String("user"),
		Concurrency: e.cfg.Concurrency, Log: e.log, Events: e.stderr, AfterStart: drillTestHook(),
		BeforeStart:  drillBeforeStartHook(e.stderr),
		OwnerWarning: e.serverCannotRead}
	if isTTY(e.stderr) {
		opt.Progress = e.stderr
	}
	if f := c.String("check-sql"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return usagef("--check-sql: %v", err)
		}
		if opt.Checks, err = drill.ParseCheckSQL(string(b)); err != nil {
			return usagef("--check-sql %s: %v", f, err)
		}
	}
	if opt.RestoreCommand, _, err = e.restoreCommand(e.ownRepo()); err != nil {
		return err
	}
	rp, err := e.openRepo(ctx, false, nil)
	if err != nil {
		return err
	}
	defer func() { _ = rp.Close() }() // releases connections only: the drill record is durable when written
	rep, err := drill.Run(ctx, rp, opt)
	if ctx.Err() != nil { // interrupted: it proved nothing either way, so nothing is recorded
		if rep != nil {
			if perr := e.printDrill(c, rep); perr != nil {
				e.log.Error(perr.Error())
			}
		}
		return err
	}
	if rep == nil { // it could not even start (e.g. --scratch not empty): a failed drill all the same
		now := time.Now().UTC()
		rep = &drill.Report{Started: now, Finished: now, Error: err.Error(), Checks: []drill.CheckResult{}, Warnings: []string{}}
	}
	// Recorded last, once the report is complete, passed or failed; a drill whose
	// record could not be written prints its report and fails.
	rerr := drill.Save(ctx, rp, rep, c.App.Version)
	if f := e.perRepoFile(c.String("prom")); f != "" {
		if perr := e.writeProm(ctx, f, rp, rep); perr != nil && rerr == nil {
			rerr = perr
		}
	}
	if perr := e.printDrill(c, rep); perr != nil && rerr == nil {
		rerr = perr
	}
	if err == nil {
		err = rerr
	} else if rerr != nil {
		e.log.Error(rerr.Error())
	}
	if errors.Is(err, drill.ErrFailed) {
		return withCode(exitDrillFailed, err)
	}
	return err
}

func (e *env) printDrill(c *cli.Context, rep *drill.Report) error {
	if f := e.perRepoFile(c.String("report")); f != "" {
		if err := writeReport(f, rep); err != nil {
			return fmt.Errorf("--report %s: %w", f, err)
		}
	}
	if c.Bool("json") {
		return e.printJSON(rep)
	}
	if rep.Backup.Name == "" {
		return nil // no backup chosen: the error line says it all
	}
	return rep.Write(e.stdout)
}

// writeProm writes the --prom file: the drill's metrics, with the repository's newest
// successful drill when this one failed.
func (e *env) writeProm(ctx context.Context, file string, rp *repo.Repo, rep *drill.Report) error {
	p := drill.Prom{Repo: rp.String()}
	var rerr error
	if !rep.OK {
		d, err := rp.RecentDrills(ctx, 1)
		if err != nil {
			rerr = fmt.Errorf("--prom %s: the last successful drill could not be read (written as 0): %w", file, err)
		} else if last := d.LastSuccess(); last != nil {
			p.LastSuccess = &last.Finished
		}
	}
	f, err := atomicfile.Create(file, 0o644)
	if err != nil {
		return fmt.Errorf("--prom %s: %w", file, err)
	}
	defer f.Abort()
	if err := drill.WriteProm(f, rep, p); err != nil {
		return fmt.Errorf("--prom %s: %w", file, err)
	}
	if err := f.Commit(); err != nil {
		return fmt.Errorf("--prom %s: %w", file, err)
	}
	return rerr
}

// writeReport writes rep as JSON to file, whole or not at all.
func writeReport(file string, rep *drill.Report) error {
	f, err := atomicfile.Create(file, 0o644)
	if err != nil {
		return err
	}
	defer f.Abort()
	enc := json.NewEncoder(f)
	enc.SetIndent("", "  ")
	if err := enc.Encode(rep); err != nil {
		return err
	}
	return f.Commit()
}
