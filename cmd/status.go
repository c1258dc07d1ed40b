package cmd

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pgb-project/pgb/internal/config"
	"github.com/pgb-project/pgb/internal/restore"
	"github.com/pgb-project/pgb/internal/status"
)

// exitUnreachable is pgb status's answer "no": the target cannot be reached, or
// nothing at all is recoverable.
const exitUnreachable = 2

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show what the repository can recover to, or whether it can reach one target",
		Description: "Shows the recoverable window first — from the end of the oldest usable backup to the last\n" +
			"commit found in the archived WAL, cut by every gap — then how old the newest archived WAL is\n" +
			"(the data lost if the primary died now), the gaps, system identifier and PostgreSQL version,\n" +
			"each timeline (segments, where it branched), the backups (permanent, unusable and why) and the\n" +
			"restore points. WAL summaries are computed on first need and cached in the repository\n" +
			"(walsum/); status reads only those of the newest segments back to the last commit, at most 64\n" +
			"per window (past that it says the window's end was not looked up). A damaged segment cuts the\n" +
			"window like a missing one and makes only the backups that need it unusable.\n\n" +
			"--at TIMESTAMP | --name NAME | --lsn LSN | --xid XID asks whether pgb restore can reach that\n" +
			"point: from which backup, replaying which WAL, about how many bytes; if not, why (before the\n" +
			"first backup, in a gap, after the last archived commit) and the nearest reachable points.\n" +
			"An xid's commit is not looked up: --xid is never refused on the xids around it, and says so.\n" +
			"restore runs the very same check. --json prints the report as JSON (docs/status.md).\n\n" +
			"It shows the last successful pgb drill (when, backup, RTO, RPO) and the last drill if it failed\n" +
			"after that, and warns when no drill succeeded or the last success is older than --drill-max-age\n" +
			"(a warning line, and \"warnings\" in --json: the exit status stays 0).\n\n" +
			"Run in the data directory of the repository's cluster (or with --pgdata / PGDATA), it also shows\n" +
			"the archiver's backlog there (.ready files in pg_wal/archive_status: count, bytes, oldest) and\n" +
			"the segments wal-push-queue-max dropped that are not yet recorded in the repository.\n\n" +
			"Exit status: 0 the window is shown (and the target, if given, is reachable); 2 nothing is\n" +
			"recoverable, or the target cannot be reached (an unknown restore point, one off the followed\n" +
			"timeline); 1 the repository could not be read; 255 usage.",
		Flags: append(flags(config.KeyPGData),
			&cli.BoolFlag{Name: "json", Usage: "print the report as JSON (docs/status.md)"},
			&cli.StringFlag{Name: "at", Usage: "can pgb recover to `TIMESTAMP` (RFC 3339 or PostgreSQL's format, with a time zone)?"},
			&cli.StringFlag{Name: "name", Usage: "can pgb recover to the restore point `NAME`?"},
			&cli.StringFlag{Name: "lsn", Usage: "can pgb recover to `LSN`?"},
			&cli.StringFlag{Name: "xid", Usage: "can pgb recover to the commit of transaction `XID` (32-bit or full)? (its commit is not looked up)"},
			&cli.BoolFlag{Name: "exclusive", Usage: "the target is to stop just before the point (as restore --target-exclusive)"},
			&cli.StringFlag{Name: "timeline", Value: "latest", Usage: "the timeline to follow: latest or a number (as restore --target-timeline)"},
			&cli.StringFlag{Name: "drill-max-age", Value: "8d", Usage: "warn when the last successful pgb drill is older than `AGE` (e.g. 8d, 36h)"},
		),
		Action: action(0, "none", func(c *cli.Context, e *env) error {
			t, err := statusTarget(c)
			if err != nil {
				return err
			}
			maxAge, err := parseAge(c.String("drill-max-age"))
			if err != nil {
				return usagef("--drill-max-age %q: %v", c.String("drill-max-age"), err)
			}
			return e.status(c.Context, t, c.Bool("json"), maxAge)
		}),
	}
}

// statusTarget reads --at/--name/--lsn/--xid into restore's Target (nil: none).
func statusTarget(c *cli.Context) (*restore.Target, error) {
	t := restore.Target{Timeline: c.String("timeline"), Exclusive: c.Bool("exclusive"), Action: "pause"}
	n, err := readTargetPoint(c, &t, targetFlags{"at", "name", "lsn", "xid"})
	if err != nil {
		return nil, err
	}
	switch {
	case n > 1:
		return nil, usagef("give at most one of --at, --name, --lsn, --xid")
	case n == 0 && t.Exclusive:
		return nil, usagef("--exclusive goes with --at, --lsn or --xid")
	case n == 0:
		return nil, nil
	case t.Exclusive && t.Kind == restore.ToName:
		return nil, usagef("--exclusive goes with --at, --lsn or --xid")
	}
	if tl := t.Timeline; tl != "latest" {
		if _, err := strconv.ParseUint(tl, 10, 32); err != nil {
			return nil, usagef("--timeline %q: want latest or a timeline number", tl)
		}
	}
	return &t, nil
}

// parseAge reads an age: a number of days (8d) or a Go duration (36h, 90m).
func parseAge(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		d, err := strconv.ParseUint(n, 10, 16)
		if err != nil || d == 0 {
			return 0, fmt.Errorf("want a positive number of days (8d) or a duration (36h)")
		}
		return time.Duration(d) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("want a positive number of days (8d) or a duration (36h)")
	}
	return d, nil
}

func (e *env) status(ctx context.Context, t *restore.Target, asJSON bool, drillMaxAge time.Duration) error {
	rp, err := e.openRepo(ctx, false, nil)
	if err != nil {
		return err
	}
	defer func() { _ = rp.Close() }() // releases connections only: summaries are durable when written
	r, err := status.Gather(ctx, rp, status.Options{Now: time.Now(), Target: t, Log: e.log, Drills: true, DrillMaxAge: drillMaxAge,
		DataDir: e.queueDataDir()})
	if err != nil {
		return err
	}
	if asJSON {
		err = e.printJSON(r)
	} else {
		err = r.Write(e.stdout)
	}
	if err != nil {
		return err
	}
	switch {
	case r.Target != nil && !r.Target.Reachable:
		return withCode(exitUnreachable, fmt.Errorf("%s cannot be reached: %s", r.Target.Target, r.Target.Reason))
	case len(r.Windows) == 0:
		return withCode(exitUnreachable, fmt.Errorf("nothing in %s is recoverable", r.Repository))
	}
	return nil
}
