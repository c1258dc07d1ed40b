package cmd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pgb-project/pgb/internal/atomicfile"
	"github.com/pgb-project/pgb/internal/config"
	"github.com/pgb-project/pgb/internal/metrics"
	"github.com/pgb-project/pgb/internal/restore"
	"github.com/pgb-project/pgb/internal/status"
	"github.com/pgb-project/pgb/internal/statushtml"
	"github.com/pgb-project/pgb/internal/storage"
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
			"--prom FILE also writes the report as Prometheus metrics (window start and end, newest WAL\n" +
			"and its age, gaps, last backup, drills; docs/metrics.md), atomically, also when a repository\n" +
			"cannot be read (pgb_repository_up 0). From cron:\n" +
			"  */5 * * * *  pgb status --prom /var/lib/prometheus/node-exporter/pgb.prom > /dev/null\n" +
			"pgb metrics serves the same over HTTP.\n\n" +
			"--html FILE also draws the report as one self-contained HTML page (no external assets; works\n" +
			"offline): per repository, the recoverable window on a time axis ending at the last archived\n" +
			"commit, the gaps in red, and each timeline's backups and restore points, the drills, with the\n" +
			"exact times on hover and in a table.\n\n" +
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
			&cli.StringFlag{Name: "html", Usage: "also draw the status as one self-contained HTML page in `FILE`: the window on a time axis, gaps, backups, restore points, drills (docs/status.md)"},
			&cli.StringFlag{Name: "prom", Usage: "also write the status as Prometheus metrics to `FILE`, for node_exporter's textfile collector (atomically; every repository; docs/metrics.md)"},
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
			// With several repositories, one that cannot reach the target (or anything)
			// is no failure while another can: restore picks that one.
			var reports []repoReport
			var prom []metrics.Repo
			other := false // a failure other than "cannot be reached"
			err = e.eachThen(c, func(ce *env) error {
				r, label, err := ce.status(c.Context, t, c.Bool("json"), maxAge)
				if r != nil {
					reports = append(reports, repoReport{ce.cfg.RepoName, r})
				}
				prom = append(prom, ce.metricsOf(r, label, err))
				var coded codedError
				if err != nil && (!errors.As(err, &coded) || coded.code != exitUnreachable) {
					other = true
				}
				return err
			}, func() (string, any) { return combinedWindows(reports) })
			// Both files are written whatever else failed; a failure to write one
			// does not keep the other from being written.
			var ferr []error
			if f := c.String("html"); f != "" {
				page := statushtml.Page{Now: time.Now(), Version: c.App.Version}
				for _, m := range prom {
					if m.Report != nil {
						page.Reports = append(page.Reports, m.Report)
					} else {
						page.Failed = append(page.Failed, statushtml.Failure{Repository: m.URL, Err: oneLine(m.Err.Error())})
					}
				}
				if herr := writeStatusHTML(f, page); herr != nil {
					ferr = append(ferr, fmt.Errorf("--html %s: %w", f, herr))
				}
			}
			if f := c.String("prom"); f != "" {
				if perr := metrics.WriteFile(f, prom); perr != nil {
					ferr = append(ferr, fmt.Errorf("--prom %s: %w", f, perr))
				}
			}
			if len(ferr) > 0 {
				return errors.Join(append([]error{err}, ferr...)...)
			}
			if err != nil && e.cfg.Multi() && !other && anyReaches(reports) {
				return nil // each report says what its repository cannot reach
			}
			return err
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

// gatherStatus reads e's repository's status report. label names the repository as
// the report does (with an S3 or GCS endpoint: "s3://bucket/prefix at URL"), also when
// it could not be read: the metrics' repo label stays the same either way.
func (e *env) gatherStatus(ctx context.Context, t *restore.Target, drillMaxAge time.Duration) (r *status.Report, label string, err error) {
	label = e.cfg.Repo
	if loc, lerr := storage.ParseLocation(e.cfg.Repo); lerr == nil {
		label = loc.String()
	}
	rp, err := e.openRepo(ctx, false, nil)
	if err != nil {
		return nil, label, err
	}
	defer func() { _ = rp.Close() }() // releases connections only: summaries are durable when written
	r, err = status.Gather(ctx, rp, status.Options{Now: time.Now(), Target: t, Log: e.log, Drills: true, DrillMaxAge: drillMaxAge,
		DataDir: e.queueDataDir()})
	return r, rp.String(), err
}

func (e *env) status(ctx context.Context, t *restore.Target, asJSON bool, drillMaxAge time.Duration) (*status.Report, string, error) {
	r, label, err := e.gatherStatus(ctx, t, drillMaxAge)
	if err != nil {
		return nil, label, err
	}
	r, err = e.printStatus(r, asJSON)
	return r, label, err
}

// printStatus prints r and says whether it reaches its target, or anything.
func (e *env) printStatus(r *status.Report, asJSON bool) (*status.Report, error) {
	var err error
	if asJSON {
		err = e.printJSON(r)
	} else {
		err = r.Write(e.stdout)
	}
	if err != nil {
		return r, err
	}
	switch {
	case r.Target != nil && !r.Target.Reachable:
		return r, withCode(exitUnreachable, fmt.Errorf("%s cannot be reached: %s", r.Target.Target, r.Target.Reason))
	case len(r.Windows) == 0:
		return r, withCode(exitUnreachable, fmt.Errorf("nothing in %s is recoverable", r.Repository))
	}
	return r, nil
}

// anyReaches reports whether one of reports has a window and reaches its target.
func anyReaches(reports []repoReport) bool {
	for _, rr := range reports {
		if len(rr.r.Windows) > 0 && (rr.r.Target == nil || rr.r.Target.Reachable) {
			return true
		}
	}
	return false
}

// repoReport is the status of one of several repositories.
type repoReport struct {
	name string
	r    *status.Report
}

// combinedSpan is a stretch of time that some of several repositories can each
// recover to any point of, alone.
type combinedSpan struct {
	From  time.Time `json:"from"`
	To    time.Time `json:"to"`
	Repos []string  `json:"repositories"`
}

// combinedWindows is what several repositories can recover to together: the union of
// their windows (a point in it is in the window of one of them, which restore picks),
// as text and as the spans of the --json document's "combined".
func combinedWindows(reports []repoReport) (string, any) {
	var spans []combinedSpan
	for _, rr := range reports {
		for _, w := range rr.r.Windows {
			spans = append(spans, combinedSpan{From: w.Start.Time, To: w.EndTime(), Repos: []string{rr.name}})
		}
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].From.Before(spans[j].From) })
	var out []combinedSpan
	for _, sp := range spans {
		if n := len(out); n > 0 && !sp.From.After(out[n-1].To) {
			last := &out[n-1]
			if sp.To.After(last.To) {
				last.To = sp.To
			}
			for _, name := range sp.Repos {
				if !slices.Contains(last.Repos, name) {
					last.Repos = append(last.Repos, name)
				}
			}
			continue
		}
		out = append(out, sp)
	}
	var b strings.Builder
	if len(out) == 0 {
		b.WriteString("Recoverable: NOTHING in any repository\n")
	}
	for i, sp := range out {
		if i == 0 {
			b.WriteString("Recoverable window of the repositories together (restore picks one that reaches the target):\n")
		} else {
			b.WriteString("  after a gap in every repository, a new window:\n")
		}
		fmt.Fprintf(&b, "  from %s\n  to   %s  (%s)\n", sp.From.Local().Format(time.RFC3339), sp.To.Local().Format(time.RFC3339), strings.Join(sp.Repos, ", "))
	}
	if out == nil {
		out = []combinedSpan{}
	}
	return b.String(), map[string]any{"windows": out}
}

// metricsOf is what the metrics say of e's repository, labelled label: its report, or
// the error that kept it from being read.
func (e *env) metricsOf(r *status.Report, label string, err error) metrics.Repo {
	m := metrics.Repo{URL: label, Report: r, Gathered: time.Now(),
		RetentionPromise: time.Duration(e.cfg.RetainDays) * 24 * time.Hour}
	if r == nil {
		m.Err = err
	}
	return m
}

// writeStatusHTML draws page in file, atomically.
func writeStatusHTML(file string, page statushtml.Page) error {
	f, err := atomicfile.Create(file, 0o644)
	if err != nil {
		return err
	}
	if err := statushtml.Write(f, page); err != nil {
		f.Abort()
		return err
	}
	return f.Commit()
}
